"""A ``terraform init -plugin-dir`` directory whose providers are the schema-only stub.

Terraform looks providers up there in its unpacked layout,
``<host>/<namespace>/<type>/<version>/<os>_<arch>/terraform-provider-<type>_v<version>``, installs them
without a network or a signature check, and requires only that the version satisfies the module's
constraint. Each executable here is a two-line shell script that starts :mod:`tests.infra.tfstub.server`
with one compact schema.
"""

from __future__ import annotations

import platform
import shlex
from pathlib import Path

from tests.infra.tfstub.schema import ProviderRelease, releases

REPO_ROOT = Path(__file__).resolve().parents[3]

_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def target_platform() -> str:
    """Terraform's name for this machine's platform (``linux_amd64``)."""
    return f"{platform.system().lower()}_{_ARCHITECTURES[platform.machine().lower()]}"


def install_stubs(plugin_dir: Path, python: str) -> list[ProviderRelease]:
    """Put one stub executable per committed schema under ``plugin_dir``; return what was installed."""
    installed = releases()
    for release in installed:
        directory = plugin_dir / release.address / release.version / target_platform()
        directory.mkdir(parents=True, exist_ok=True)
        executable = directory / f"terraform-provider-{release.type_name}_v{release.version}"
        executable.write_text(
            "#!/bin/sh\n"
            f"PYTHONPATH={shlex.quote(str(REPO_ROOT))} TFSTUB_SCHEMA={shlex.quote(str(release.path))} "
            f"exec {shlex.quote(python)} -m tests.infra.tfstub.server\n",
            encoding="utf-8",
        )
        executable.chmod(0o755)
    return installed
