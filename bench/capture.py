"""A DogStatsD capture for the benchmark: store datagrams during a run, parse them after it.

The product's strict parser (``app.local.dogstatsd.parse_datagram``) checks every datagram, but
only once the timed drain is over: parsing thousands of datagrams a second in this process while
the drain runs would take CPU from the emulator and the variant on the same cores, and charge the
benchmark's own checking to whichever variant sends metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app.local.dogstatsd import DogStatsdReceiver, EventLine, Line, Metric, parse_checked


@dataclass
class Parsed:
    """What the captured datagrams held: kept lines, and the malformed datagrams."""

    metrics: list[Metric] = field(default_factory=list)
    events: list[EventLine] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def values(self, name: str) -> list[float]:
        return [metric.value for metric in self.metrics if metric.name == name]


class DatagramCapture(DogStatsdReceiver):
    """The product's UDP receiver on 127.0.0.1, keeping datagrams raw until :meth:`parse`."""

    def __init__(self) -> None:
        super().__init__(receive_buffer_bytes=32 * 1024 * 1024)
        self._data: list[bytes] = []

    def _take(self, data: bytes) -> None:
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
            lines, error = parse_checked(datagram)
            if error is not None:
                parsed.errors.append(error)
            for line in lines:
                if isinstance(line, EventLine):
                    parsed.events.append(line)
                elif keep(line):
                    parsed.metrics.append(line)
        return parsed
