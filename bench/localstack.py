"""Start and stop the AWS emulator (LocalStack on the host, or moto server) in its own process.

The emulator always runs as a separate process (in a session of its own), so its CPU time is not
mixed into the forwarder's; :meth:`Emulator.cpu_seconds` reads it from /proc for a separate column.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

#: Where the LocalStack virtualenv lives unless LOCALSTACK_PYTHON names its interpreter.
DEFAULT_LOCALSTACK_VENV = ".venv-localstack"


class EmulatorError(RuntimeError):
    """The emulator could not be started."""


def stop_session(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a child started in its own session: SIGTERM to its group, SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait(timeout)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)  # its own session: the group holds only what it started


def free_port() -> int:
    """Return a currently unused TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def localstack_python() -> str:
    """The interpreter that has LocalStack installed: $LOCALSTACK_PYTHON or .venv-localstack."""
    configured = os.environ.get("LOCALSTACK_PYTHON")
    if configured:
        # made absolute, since the emulator runs in a working directory of its own
        return str(Path(configured).absolute()) if os.sep in configured else configured
    candidate = Path(DEFAULT_LOCALSTACK_VENV) / "bin" / "python"
    if candidate.exists():
        return str(candidate.absolute())
    raise EmulatorError(
        "LocalStack is not installed: run `make bench-setup` (creates .venv-localstack) "
        "or set LOCALSTACK_PYTHON, or use --emulator moto"
    )


def _proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process and its reaped children, from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # fields after the command name (which may contain spaces) start at state, field 3
    fields = raw.rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


class Emulator:
    """One emulator process on a free loopback port; use as a context manager."""

    name = "emulator"

    def __init__(self, *, startup_timeout: float = 60.0) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout = startup_timeout
        self.startup_seconds = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        self._log_path = self._workdir / "emulator.log"

    # -- to be provided by subclasses --------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def ready(self) -> bool:
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        started = time.monotonic()
        with open(self._log_path, "wb") as log:
            self._proc = subprocess.Popen(
                self.command(),
                env=self.environment(),
                cwd=self._workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
            )
        deadline = started + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EmulatorError(f"{self.name} exited with {self._proc.returncode}:\n{self.log_tail()}")
            if self.ready():
                self.startup_seconds = time.monotonic() - started
                return
            time.sleep(0.1)
        raise EmulatorError(f"{self.name} not ready after {self.startup_timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_session(proc, timeout)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def cpu_seconds(self) -> float:
        """CPU time the emulator process has used so far (0.0 when unknown)."""
        return _proc_cpu_seconds(self._proc.pid) if self._proc is not None else 0.0

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(self.endpoint_url + path, timeout=2) as response:
                return bytes(response.read())
        except (urllib.error.URLError, OSError):
            return None


class LocalStack(Emulator):
    """LocalStack's runtime run directly on the host (no container), S3 and SQS only."""

    name = "localstack"

    def command(self) -> list[str]:
        return [localstack_python(), "-m", "localstack.runtime.main"]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        listen = f"127.0.0.1:{self.port}"
        env.update(
            OVERRIDE_IN_DOCKER="0",
            GATEWAY_LISTEN=listen,
            LOCALSTACK_HOST=listen,
            SERVICES="s3,sqs",
            EAGER_SERVICE_LOADING="1",
            SQS_ENDPOINT_STRATEGY="path",
            FILESYSTEM_ROOT=str(self._workdir / "fs"),
            PERSISTENCE="0",
            DEBUG="0",
        )
        return env

    def ready(self) -> bool:
        raw = self._get("/_localstack/health")
        if raw is None:
            return False
        try:
            services = json.loads(raw).get("services", {})
        except ValueError:
            return False
        return all(services.get(name) == "running" for name in ("s3", "sqs"))


class MotoServer(Emulator):
    """moto's HTTP server (``python -m moto.server``) in a subprocess of this interpreter."""

    name = "moto"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def ready(self) -> bool:
        return self._get("/moto-api/") is not None


def make_emulator(kind: str) -> Emulator:
    if kind == "localstack":
        return LocalStack()
    if kind == "moto":
        return MotoServer()
    raise ValueError(f"unknown emulator {kind!r}")
