"""Start and stop the delay proxy (bench/delay_proxy.py) as a process of its own, and read its counts."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bench.localstack import EmulatorError, stop_session


class DelayProxy:
    """``python -m bench.delay_proxy`` in front of ``upstream`` with ``delay_ms`` per request."""

    def __init__(self, upstream: str, delay_ms: float) -> None:
        self.upstream = upstream
        self.delay_ms = delay_ms
        self.endpoint_url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir = Path(tempfile.mkdtemp(prefix="bench-proxy-"))

    def __enter__(self) -> Self:
        port_file = self._workdir / "port"
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.delay_proxy",
                "--upstream",
                self.upstream,
                "--delay-ms",
                str(self.delay_ms),
                "--port-file",
                str(port_file),
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while not port_file.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise EmulatorError("the delay proxy did not start")
            time.sleep(0.05)
        self.endpoint_url = f"http://127.0.0.1:{port_file.read_text().strip()}"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_session(proc)
        with contextlib.suppress(OSError):
            for path in self._workdir.iterdir():
                path.unlink()
            self._workdir.rmdir()

    def _call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(
            self.endpoint_url + path, method=method, data=b"" if method == "POST" else None
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))

    def reset(self) -> None:
        """Forget the counts so far."""
        self._call("POST", "/_bench/reset")

    def stats(self) -> dict[str, Any]:
        """Requests per operation, delete answers (monotonic time, entries), the first request's time."""
        return self._call("GET", "/_bench/stats")
