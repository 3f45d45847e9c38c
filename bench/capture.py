"""A DogStatsD capture for the benchmark: store datagrams during a run, parse them after it.

The product's strict parser (``app.local.dogstatsd.parse_datagram``) checks every datagram, but
only once the timed drain is over: parsing thousands of datagrams a second in this process while
the drain runs would take CPU from the emulator and the variant on the same cores, and charge the
benchmark's own checking to whichever variant sends metrics.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app.local.dogstatsd import EventLine, Line, MalformedDatagramError, Metric, parse_datagram


@dataclass
class Parsed:
    """What the captured datagrams held: kept lines, and the malformed datagrams."""

    metrics: list[Metric] = field(default_factory=list)
    events: list[EventLine] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def values(self, name: str) -> list[float]:
        return [metric.value for metric in self.metrics if metric.name == name]


class DatagramCapture:
    """Receives datagrams on UDP 127.0.0.1 in a thread and keeps them raw until :meth:`parse`."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024 * 1024)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self.last_datagram_at = 0.0
        self._data: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dogstatsd-capture", daemon=True)

    def __enter__(self) -> DatagramCapture:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.last_datagram_at = time.monotonic()
            with self._lock:
                self._data.append(data)

    def clear(self) -> None:
        with self._lock:
            self._data = []

    def wait_quiet(self, *, quiet: float, timeout: float) -> None:
        """Return once no datagram has arrived for ``quiet`` seconds (or after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and time.monotonic() - self.last_datagram_at < quiet:
            time.sleep(0.05)

    def parse(self, keep: Callable[[Line], bool]) -> Parsed:
        """Parse every datagram captured so far strictly; keep the lines ``keep`` accepts."""
        with self._lock:
            data = list(self._data)
        parsed = Parsed()
        for datagram in data:
            try:
                lines = parse_datagram(datagram)
            except (MalformedDatagramError, UnicodeDecodeError, ValueError) as exc:
                parsed.errors.append(f"{exc}: {datagram[:200]!r}")
                continue
            for line in lines:
                if isinstance(line, EventLine):
                    parsed.events.append(line)
                elif keep(line):
                    parsed.metrics.append(line)
        return parsed
