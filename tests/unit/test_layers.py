"""The package's layers import downwards only (docs/development.md).

Every ``import`` in ``app/`` is read with ``ast`` (deferred imports inside functions included), so a
new arrow pointing up fails here before it tangles the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"

# What each layer may import from the package; ``settings``, ``errors`` and ``logs`` serve every one.
SHARED = frozenset({"settings", "errors", "logs"})
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset({"core", "errors"}),
    "aws": frozenset({"aws", "core"}) | SHARED,
    "sinks": frozenset({"sinks", "core", "aws.secrets", "aws.clients"}) | SHARED,
    "drain": frozenset({"drain", "sinks", "aws", "core"}) | SHARED,
    "lambda_handler": frozenset({"drain", "sinks", "aws", "core"}) | SHARED,
    "commands": frozenset({"commands", "drain", "sinks", "aws", "core", "local", "generator"}) | SHARED,
    "local": frozenset({"local"}),
    "settings": frozenset({"errors"}),
    "errors": frozenset(),
    "logs": frozenset(),
}
# Pure code: no network clients of any kind.
CORE_FORBIDDEN_LIBRARIES = frozenset({"boto3", "botocore", "datadog", "urllib3", "http", "socket"})


def package_imports(path: Path) -> set[str]:
    """The ``app.*`` modules and top-level libraries ``path`` imports, without the ``app.`` prefix."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def layer_of(path: Path) -> str:
    """``app/core/metrics.py`` is in ``core``; ``app/settings.py`` is its own layer."""
    parts = path.relative_to(APP).with_suffix("").parts
    return parts[0]


def permitted(module: str, allowed: frozenset[str]) -> bool:
    """Whether ``app.<module>`` is within ``allowed`` (a layer, or one module of a layer)."""
    inner = module.removeprefix("app.")
    return any(inner == entry or inner.startswith(entry + ".") for entry in allowed)


MODULES = sorted(path for path in APP.rglob("*.py") if layer_of(path) in ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(APP)))
def test_each_module_imports_only_the_layers_below_it(path: Path) -> None:
    """No module reaches up: core knows nothing of SQS or sinks, sinks nothing of the drain, and so on."""
    allowed = ALLOWED[layer_of(path)]
    upward = sorted(
        module
        for module in package_imports(path)
        if (module == "app" or module.startswith("app.")) and not permitted(module, allowed)
    )
    assert upward == [], f"{path.relative_to(APP)} imports {upward}"


@pytest.mark.parametrize(
    "path",
    [path for path in MODULES if layer_of(path) == "core"],
    ids=lambda path: str(path.relative_to(APP)),
)
def test_core_modules_use_no_network_library(path: Path) -> None:
    """The pure core reads and returns values: no AWS, DogStatsD or HTTP client in it."""
    libraries = {module.split(".")[0] for module in package_imports(path)}
    assert libraries & CORE_FORBIDDEN_LIBRARIES == set()


def test_the_layer_map_covers_every_folder_of_the_package() -> None:
    """A new folder or top-level module gets its place in the map (or is named here on purpose)."""
    top_level = {layer_of(path) for path in APP.rglob("*.py")}
    entry_points = {"__init__", "__main__", "generator"}
    assert top_level - entry_points == set(ALLOWED)


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    """The check itself: a core module importing the drain is refused."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from app.drain.handler import RecordHandler\n")
    offending = {name for name in package_imports(module) if not permitted(name, ALLOWED["core"])}
    assert offending == {"app.drain.handler"}
