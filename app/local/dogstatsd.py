"""A strict DogStatsD wire parser and a receiver on UDP or a Unix datagram socket.

The parser accepts only well-formed datagrams (https://docs.datadoghq.com/developers/dogstatsd/datagram_shell/),
so a test that reads every datagram through it proves the forwarder never emits broken syntax.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from app.local.datadog_view import DatadogView

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,199}")
_TAG = re.compile(r"[^,|#\s][^,|#\n\r]{0,199}")
_EVENT_HEAD = re.compile(r"_e\{(\d+),(\d+)\}:")
METRIC_TYPES = frozenset({"g", "c", "h", "d", "ms", "s"})
ALERT_TYPES = frozenset({"error", "warning", "info", "success"})


class MalformedDatagramError(ValueError):
    """A line that is not valid DogStatsD."""


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric line."""

    name: str
    value: float
    type: str
    tags: tuple[str, ...] = ()
    timestamp: int | None = None
    sample_rate: float = 1.0


@dataclass(frozen=True, slots=True)
class EventLine:
    """One event line."""

    title: str
    text: str
    alert_type: str = "info"
    aggregation_key: str | None = None
    date_happened: int | None = None
    tags: tuple[str, ...] = ()


Line = Metric | EventLine


def _tags(section: str) -> tuple[str, ...]:
    tags = tuple(section.split(","))
    for tag in tags:
        if not _TAG.fullmatch(tag):
            raise MalformedDatagramError(f"bad tag {tag!r}")
    return tags


def parse_line(line: str) -> Line | None:
    """Parse one line; ``None`` for the client's own telemetry and service checks."""
    if line.startswith("_e{"):
        return _parse_event(line)
    if line.startswith("_sc|"):
        return None
    name, sep, rest = line.partition(":")
    if not sep or not _NAME.fullmatch(name):
        raise MalformedDatagramError(f"bad metric name in {line[:80]!r}")
    sections = rest.split("|")
    if len(sections) < 2 or sections[1] not in METRIC_TYPES:
        raise MalformedDatagramError(f"bad metric type in {line[:80]!r}")
    try:
        value = float(sections[0])
    except ValueError:
        raise MalformedDatagramError(f"bad value in {line[:80]!r}") from None
    tags: tuple[str, ...] = ()
    timestamp = None
    rate = 1.0
    for section in sections[2:]:
        if section.startswith("#"):
            tags = _tags(section[1:])
        elif section.startswith("T") and section[1:].isdigit():
            timestamp = int(section[1:])
        elif section.startswith("@"):
            rate = float(section[1:])
        elif section.startswith(("c:", "card:", "e:")):
            continue
        else:
            raise MalformedDatagramError(f"unknown section {section!r}")
    if name.startswith("datadog.dogstatsd.client."):
        return None
    return Metric(name, value, sections[1], tags, timestamp, rate)


def _parse_event(line: str) -> EventLine:
    head = _EVENT_HEAD.match(line)
    if not head:
        raise MalformedDatagramError(f"bad event header in {line[:80]!r}")
    title_len, text_len = int(head.group(1)), int(head.group(2))
    payload = line[head.end() :].encode("utf-8")
    title = payload[:title_len].decode("utf-8")
    if payload[title_len : title_len + 1] != b"|":
        raise MalformedDatagramError("event title length does not match")
    text = payload[title_len + 1 : title_len + 1 + text_len].decode("utf-8")
    rest = payload[title_len + 1 + text_len :].decode("utf-8")
    fields: dict[str, str] = {}
    tags: tuple[str, ...] = ()
    for section in rest.split("|")[1:] if rest else ():
        if section.startswith("#"):
            tags = _tags(section[1:])
        elif len(section) > 2 and section[1] == ":" and section[0] in "dhkpst":
            fields[section[0]] = section[2:]
        elif section.startswith(("c:", "card:")):
            continue
        else:
            raise MalformedDatagramError(f"unknown event section {section!r}")
    if rest and not rest.startswith("|"):
        raise MalformedDatagramError("event text length does not match")
    alert = fields.get("t", "info")
    if alert not in ALERT_TYPES:
        raise MalformedDatagramError(f"bad alert type {alert!r}")
    return EventLine(
        title=title,
        text=text.replace("\\n", "\n"),
        alert_type=alert,
        aggregation_key=fields.get("k"),
        date_happened=int(fields["d"]) if "d" in fields else None,
        tags=tags,
    )


def parse_datagram(data: bytes) -> list[Line]:
    """Parse every line of one datagram; raise :class:`MalformedDatagramError` on any bad one."""
    text = data.decode("utf-8")
    return [parsed for line in text.split("\n") if line for parsed in (parse_line(line),) if parsed]


def parse_checked(data: bytes) -> tuple[list[Line], str | None]:
    """The lines of one datagram, or none and why it is malformed (with its first 200 bytes)."""
    try:
        return parse_datagram(data), None
    except (MalformedDatagramError, UnicodeDecodeError, ValueError) as exc:
        return [], f"{exc}: {data[:200]!r}"


class DogStatsdReceiver:
    """Collects and parses datagrams in a thread; a stand-in for the agent's DogStatsD server.

    ``socket_path`` makes it listen on a Unix datagram socket, else on UDP ``127.0.0.1:port``
    (``port=0`` picks a free one). Malformed datagrams are kept in ``errors``. ``keep``, when given,
    decides which parsed lines are stored in ``lines`` (every line is still parsed and checked), so a
    long run can keep only the lines it looks at.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        socket_path: str | None = None,
        keep: Callable[[Line], bool] | None = None,
        receive_buffer_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.socket_path = socket_path
        self._keep = keep
        if socket_path:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.bind(socket_path)
        else:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
            self._sock.bind(("127.0.0.1", port))
        self._sock.settimeout(0.1)
        self.port: int = 0 if socket_path else self._sock.getsockname()[1]
        self.lines: list[Line] = []
        self.arrivals: list[float] = []  # time.time() at which each of ``lines`` arrived
        self.errors: list[str] = []
        self.datagrams = 0
        self.largest_datagram = 0  # bytes of the largest datagram seen, well-formed or not
        self.last_datagram_at = 0.0  # time.monotonic() of the latest datagram, well-formed or not
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dogstatsd-receiver", daemon=True)

    @property
    def url(self) -> str:
        """The ``DD_DOGSTATSD_URL`` that reaches this receiver."""
        return f"unix://{self.socket_path}" if self.socket_path else f"udp://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Start receiving; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop receiving and release the socket."""
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
        if self.socket_path and os.path.exists(self.socket_path):
            os.unlink(self.socket_path)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def metrics(self, name: str | None = None) -> list[Metric]:
        """Metric lines received so far, optionally only those called ``name``."""
        with self._lock:
            return [m for m in self.lines if isinstance(m, Metric) and (name is None or m.name == name)]

    def events(self) -> list[EventLine]:
        """Event lines received so far."""
        with self._lock:
            return [e for e in self.lines if isinstance(e, EventLine)]

    def received(self) -> list[tuple[float, Line]]:
        """Every kept line with the time (epoch seconds) its datagram arrived, in arrival order."""
        with self._lock:
            return list(zip(self.arrivals, self.lines, strict=True))

    def datadog_view(self) -> DatadogView:
        """What Datadog would store from the metric lines received so far."""
        from app.local.datadog_view import DatadogView, samples_of

        return DatadogView.of(samples_of(self.received()))

    def clear(self) -> None:
        """Forget everything received so far."""
        with self._lock:
            self.lines.clear()
            self.arrivals.clear()
            self.errors.clear()

    def wait_for(
        self, predicate: Callable[[DogStatsdReceiver], bool], *, timeout_seconds: float = 5.0
    ) -> bool:
        """Wait until ``predicate(self)`` holds (datagrams may still be in flight)."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.02)
        return predicate(self)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.last_datagram_at = time.monotonic()
            self.largest_datagram = max(self.largest_datagram, len(data))
            self._take(data)

    def _take(self, data: bytes) -> None:
        """Store one datagram as it arrives: parsed and checked, here."""
        arrived_at = time.time()
        parsed, error = parse_checked(data)
        if error is not None:
            with self._lock:
                self.errors.append(error)
            return
        if self._keep is not None:
            parsed = [line for line in parsed if self._keep(line)]
        with self._lock:
            self.datagrams += 1
            self.lines.extend(parsed)
            self.arrivals.extend([arrived_at] * len(parsed))
