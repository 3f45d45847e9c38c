"""Regenerate the hash-pinned lock files from their short input files (``make lock``).

Each ``requirements*.in`` names direct dependencies; its lock ``requirements*.txt`` pins those and
everything they pull in, with the sha256 of every file the public index holds for each release
(all platforms and Python versions, so the Lambda zip's cross-platform install verifies too).
uv resolves "universally": one lock serves Python 3.11 and up on any OS, markers included.

Every lock starts with the digest of all the inputs (the ``.in`` files and the dependency fields of
pyproject.toml); ``tests/infra/test_locks.py`` recomputes it, offline, and fails when an input
changed after the last ``make lock``.

    .venv/bin/python scripts/lock.py                         # keep current pins where still allowed
    .venv/bin/python scripts/lock.py --upgrade-package boto3 # move one package (and what it needs)
    .venv/bin/python scripts/lock.py --upgrade               # move everything to the newest allowed
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# (input, lock), in order: the dev lock is constrained by the runtime lock, so that one comes first.
LOCKS = (
    ("requirements.in", "requirements.txt"),
    ("requirements-build.in", "requirements-build.txt"),
    ("requirements-dev.in", "requirements-dev.txt"),
    ("requirements-checkov.in", "requirements-checkov.txt"),
)
# The oldest Python the project supports (pyproject.toml's requires-python); the lock covers it and
# every later one.
PYTHON_FLOOR = "3.11"
DIGEST_PREFIX = "# inputs sha256: "


def input_digest(root: Path = REPO_ROOT) -> str:
    """The sha256 of everything the locks are resolved from."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    digest = hashlib.sha256()
    fields = {key: project.get(key) for key in ("requires-python", "dependencies", "optional-dependencies")}
    digest.update(json.dumps(fields, sort_keys=True).encode())
    digest.update(PYTHON_FLOOR.encode())
    for source, _ in LOCKS:
        digest.update(source.encode() + b"\0" + (root / source).read_bytes() + b"\0")
    return digest.hexdigest()


def compile_lock(source: str, target: str, extra: list[str]) -> None:
    """Resolve one input file into its lock with uv, against the public index only."""
    # Only the public index: a machine's extra or local indexes must not change the hashes.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("UV_", "PIP_"))}
    subprocess.run(
        [
            str(Path(sys.executable).with_name("uv")), "pip", "compile", "--quiet", "--no-config",
            "--universal", "--python-version", PYTHON_FLOOR, "--generate-hashes",
            "--custom-compile-command", "make lock", "--output-file", target, source, *extra,
        ],
        check=True,
        cwd=REPO_ROOT,
        env=env,
    )  # fmt: skip


def stamp(target: Path, digest: str) -> None:
    """Put the input digest on the first line of a lock (replacing an older one)."""
    lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
    lines = [line for line in lines if not line.startswith(DIGEST_PREFIX)]
    target.write_text(f"{DIGEST_PREFIX}{digest}\n" + "".join(lines), encoding="utf-8")


def main(argv: list[str]) -> int:
    """Regenerate every lock; extra arguments (``--upgrade``, ``--upgrade-package X``) go to uv."""
    digest = input_digest()
    for source, target in LOCKS:
        compile_lock(source, target, argv)
        stamp(REPO_ROOT / target, digest)
        print(f"{source} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
