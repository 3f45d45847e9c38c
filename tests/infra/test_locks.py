"""The lock files against their inputs, offline: stale or incomplete locks fail here, not at install time.

``make lock`` (``scripts/lock.py``) resolves each ``requirements*.in`` into its ``requirements*.txt``
and writes the digest of all the inputs on the lock's first line; these tests recompute it and read
the locks as pip will, without a network.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]


def _lock_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock_script", REPO_ROOT / "scripts" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOCK = _lock_script()
LOCKS: tuple[tuple[str, str], ...] = LOCK.LOCKS


@dataclass(frozen=True)
class Pin:
    """One ``name==version ; marker`` entry of a lock and its hashes."""

    name: str
    version: str
    marker: Marker | None
    hashes: tuple[str, ...]

    def applies(self) -> bool:
        """Whether pip installs this entry on the running interpreter."""
        return self.marker is None or self.marker.evaluate()


def read_lock(path: Path) -> list[Pin]:
    """The entries of a hash-pinned lock file (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    pins = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        spec, *options = line.split(" --hash=")
        requirement = Requirement(spec)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{path.name}: {spec} is not pinned exactly"
        hashes = tuple(option.strip() for option in options)
        pins.append(Pin(canonicalize_name(requirement.name), specifier.version, requirement.marker, hashes))
    return pins


def read_input(path: Path) -> list[Requirement]:
    """The requirements an input file names itself (its -r and -c lines are read on their own)."""
    requirements = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirements.append(Requirement(line))
    return requirements


def versions(pins: list[Pin]) -> dict[str, set[str]]:
    """Pinned versions by package name (a universal lock may pin two, under different markers)."""
    found: dict[str, set[str]] = {}
    for pin in pins:
        found.setdefault(pin.name, set()).add(pin.version)
    return found


@pytest.mark.parametrize(("source", "target"), LOCKS)
def test_lock_was_generated_from_the_current_inputs(source: str, target: str) -> None:
    """The lock's recorded input digest matches the .in files and pyproject.toml as they are now."""
    first_line = (REPO_ROOT / target).read_text(encoding="utf-8").splitlines()[0]
    assert first_line == LOCK.DIGEST_PREFIX + LOCK.input_digest(), (
        f"{target} was not generated from the current inputs (the requirements*.in files and"
        " pyproject.toml's dependencies): run `make lock`"
    )


@pytest.mark.parametrize(("source", "target"), LOCKS)
def test_every_lock_entry_is_exact_and_hashed(source: str, target: str) -> None:
    """Each entry pins one version and carries at least one sha256, as --require-hashes demands."""
    pins = read_lock(REPO_ROOT / target)
    assert pins, f"{target} pins nothing"
    for pin in pins:
        assert pin.hashes, f"{target}: {pin.name} has no hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", value) for value in pin.hashes), pin


@pytest.mark.parametrize(("source", "target"), LOCKS)
def test_every_input_requirement_is_satisfied_by_its_lock(source: str, target: str) -> None:
    """Each requirement of an input file, and of the files it includes with -r, is pinned in range."""
    pinned = versions(read_lock(REPO_ROOT / target))
    sources = [REPO_ROOT / source]
    for line in sources[0].read_text(encoding="utf-8").splitlines():
        if line.startswith("-r "):
            sources.append(REPO_ROOT / line.split()[1])
    for path in sources:
        for requirement in read_input(path):
            name = canonicalize_name(requirement.name)
            assert name in pinned, f"{target} does not pin {name} ({path.name})"
            assert any(requirement.specifier.contains(v, prereleases=True) for v in pinned[name]), (
                f"{target} pins {name} {pinned[name]}, outside {requirement.specifier} ({path.name})"
            )


def test_runtime_lock_satisfies_pyproject_dependencies() -> None:
    """The package's declared dependencies are all met by the runtime lock the image installs."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pinned = versions(read_lock(REPO_ROOT / "requirements.txt"))
    for line in project["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"requirements.txt does not pin {name}"
        assert all(requirement.specifier.contains(v) for v in pinned[name]), (name, pinned[name])


def test_dev_lock_keeps_the_runtime_and_build_pins() -> None:
    """The test environment runs the exact versions the image and the Lambda zip ship."""
    dev = {(pin.name, pin.version) for pin in read_lock(REPO_ROOT / "requirements-dev.txt")}
    for lock in ("requirements.txt", "requirements-build.txt"):
        for pin in read_lock(REPO_ROOT / lock):
            assert (pin.name, pin.version) in dev, f"{lock} pins {pin.name}=={pin.version}, the dev lock not"


def test_installed_environment_is_the_dev_lock() -> None:
    """Every dev-lock entry that applies here is installed at its locked version (no stale venv)."""
    stale = []
    for pin in read_lock(REPO_ROOT / "requirements-dev.txt"):
        if not pin.applies():
            continue
        try:
            installed = metadata.version(pin.name)
        except metadata.PackageNotFoundError:
            installed = "missing"
        if installed != pin.version:
            stale.append(f"{pin.name}: locked {pin.version}, installed {installed}")
    assert not stale, "reinstall with `make install`:\n" + "\n".join(stale)
