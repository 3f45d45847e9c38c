"""A DogStatsD receiver: a UDP socket on 127.0.0.1 read by a thread, counting and parsing datagrams.

It stands in for the datadog-agent. It runs in the benchmark's parent process while each variant
drains in a child process, so parsing here costs the variant nothing.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

_EVENT_HEADER = re.compile(r"^_e\{(\d+),(\d+)\}:")


@dataclass
class Received:
    datagrams: int = 0
    bytes: int = 0
    lines: int = 0
    malformed: int = 0
    service_checks: int = 0
    metric_types: Counter[str] = field(default_factory=Counter)
    gauges: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    events: list[tuple[str, str]] = field(default_factory=list)  # (title, alert type)
    last_datagram: float = 0.0


class DogStatsdReceiver:
    """Bind on 127.0.0.1:0, then ``port`` tells where to send. Use as a context manager."""

    def __init__(self, rcvbuf: int = 8 * 1024 * 1024) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # the kernel caps this at net.core.rmem_max; a bigger buffer rides out bursts
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self._data = Received()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dogstatsd-receiver", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                payload = self._sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._ingest(payload)

    def _ingest(self, payload: bytes) -> None:
        data = self._data
        data.datagrams += 1
        data.bytes += len(payload)
        data.last_datagram = time.monotonic()
        for line in payload.decode("utf-8", errors="replace").split("\n"):
            if line:
                data.lines += 1
                self._parse_line(line)

    def _parse_line(self, line: str) -> None:
        data = self._data
        if line.startswith("_e{"):
            match = _EVENT_HEADER.match(line)
            if match is None:
                data.malformed += 1
                return
            title_len, text_len = int(match.group(1)), int(match.group(2))
            rest = line[match.end() :]
            title = rest[:title_len]
            tail = rest[title_len + 1 + text_len :]
            alert = next((part[2:] for part in tail.split("|") if part.startswith("t:")), "info")
            data.events.append((title, alert))
            return
        if line.startswith("_sc|"):
            data.service_checks += 1
            return
        head, _, sections = line.partition("|")
        name, _, values = head.partition(":")
        metric_type = sections.split("|", 1)[0]
        if not name or not values or not metric_type:
            data.malformed += 1
            return
        data.metric_types[metric_type] += 1
        if metric_type == "g":
            try:
                data.gauges[name].extend(float(value) for value in values.split(":"))
            except ValueError:
                data.malformed += 1

    def reset(self) -> None:
        with self._lock:
            self._data = Received()

    def snapshot(self) -> Received:
        with self._lock:
            return self._data

    def wait_quiet(self, quiet: float = 0.5, timeout: float = 10.0) -> None:
        """Return once no datagram has arrived for ``quiet`` seconds (or after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                last = self._data.last_datagram
            if time.monotonic() - last >= quiet:
                return
            time.sleep(0.05)
