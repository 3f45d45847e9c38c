"""A loopback Datadog HTTP intake for the tests and the demo.

It accepts ``POST /api/v2/series``, ``POST /api/v1/distribution_points``, ``POST /api/v1/events``
and ``GET /api/v1/validate`` as the API reference documents them (docs.datadoghq.com/api/latest/metrics,
/events, /authentication): ``DD-API-KEY`` checked (403 otherwise), deflate or gzip bodies, the
size limits (413), the payload shapes (400 with the reason, checked by strict models, so a
payload the forwarder builds wrongly fails the tests). It records what it accepted and models what
Datadog would keep: one point per series (name, tags, host) and second, last write wins, every
distribution value, and nothing outside the window of 1 h back and 10 min ahead
(:meth:`LocalIntake.datadog_view`, the same model as for DogStatsD). Several forwarder
processes may post to one intake, as they would to Datadog. Faults can be injected: any status (5xx, 429 with
``Retry-After``, 403, 413), closed connections, slow answers, and refusal of chosen payloads.

The forwarder never imports this module.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

from app.local.datadog_view import DatadogView, Sample
from app.local.dogstatsd import Metric

SERIES_PATH = "/api/v2/series"
DISTRIBUTION_PATH = "/api/v1/distribution_points"
EVENTS_PATH = "/api/v1/events"
VALIDATE_PATH = "/api/v1/validate"
MAX_SERIES_COMPRESSED_BYTES = 512_000
MAX_SERIES_UNCOMPRESSED_BYTES = 5_242_880
# v1 endpoints: 3.2 MB compressed, 62 MiB decompressed (the v1 series limits).
MAX_V1_COMPRESSED_BYTES = 3_200_000
MAX_V1_UNCOMPRESSED_BYTES = 62_914_560
POINT_MAX_AGE_SECONDS = 3600
POINT_MAX_AHEAD_SECONDS = 600
EVENT_MAX_AGE_SECONDS = 18 * 3600

Number = StrictInt | StrictFloat
Name = Annotated[StrictStr, Field(min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricPoint(_Strict):
    """v2 ``MetricPoint``: integer seconds and a number."""

    timestamp: StrictInt
    value: Number


class MetricResource(_Strict):
    """v2 ``MetricResource``, e.g. ``{"type": "host", "name": …}``."""

    type: StrictStr
    name: StrictStr


class MetricSeries(_Strict):
    """v2 ``MetricSeries``."""

    metric: Name
    type: Literal[0, 1, 2, 3] = 0
    points: Annotated[list[MetricPoint], Field(min_length=1)]
    tags: list[StrictStr] = []
    resources: list[MetricResource] = []
    interval: StrictInt | None = None
    unit: StrictStr | None = None
    source_type_name: StrictStr | None = None


class MetricPayload(_Strict):
    """v2 ``MetricPayload``."""

    series: Annotated[list[MetricSeries], Field(min_length=1)]


class DistributionPointsSeries(_Strict):
    """v1 ``DistributionPointsSeries``: points are ``[timestamp, [values…]]``."""

    metric: Name
    points: Annotated[
        list[tuple[StrictInt, Annotated[list[Number], Field(min_length=1)]]], Field(min_length=1)
    ]
    tags: list[StrictStr] = []
    host: StrictStr | None = None
    type: Literal["distribution"] = "distribution"


class DistributionPointsPayload(_Strict):
    """v1 ``DistributionPointsPayload``."""

    series: Annotated[list[DistributionPointsSeries], Field(min_length=1)]


class EventCreateRequest(_Strict):
    """v1 ``EventCreateRequest`` with its documented limits."""

    title: Annotated[StrictStr, Field(min_length=1)]
    text: Annotated[StrictStr, Field(max_length=4000)]
    alert_type: Literal[
        "error", "warning", "info", "success", "user_update", "recommendation", "snapshot"
    ] = "info"
    aggregation_key: Annotated[StrictStr, Field(max_length=100)] | None = None
    date_happened: StrictInt | None = None
    tags: list[StrictStr] = []
    host: StrictStr | None = None
    priority: Literal["normal", "low"] | None = None
    source_type_name: StrictStr | None = None


@dataclass(frozen=True, slots=True)
class StoredPoint:
    """A point as Datadog would keep it."""

    metric: str
    type: int
    tags: tuple[str, ...]
    host: str
    timestamp: int
    value: float


@dataclass(slots=True)
class Fault:
    """An injected answer: ``status`` (0 closes the connection without answering), ``times`` left."""

    status: int
    times: int
    path: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0


class IntakeState:
    """What the intake accepted and what it is told to do; shared by the request threads."""

    def __init__(self, api_key: str, *, clock: Callable[[], float]) -> None:
        self.api_key = api_key
        self.clock = clock
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.refuse: Callable[[str, dict[str, Any]], str | None] | None = None
        self.limits: dict[str, tuple[int, int]] = {
            SERIES_PATH: (MAX_SERIES_COMPRESSED_BYTES, MAX_SERIES_UNCOMPRESSED_BYTES),
            DISTRIBUTION_PATH: (MAX_V1_COMPRESSED_BYTES, MAX_V1_UNCOMPRESSED_BYTES),
            EVENTS_PATH: (MAX_V1_COMPRESSED_BYTES, MAX_V1_UNCOMPRESSED_BYTES),
        }
        self.requests: list[tuple[str, str, int]] = []
        self.accepted: list[tuple[str, dict[str, Any]]] = []
        self.accepted_at: list[float] = []
        self.stored: dict[tuple[str, int, tuple[str, ...], str, int], StoredPoint] = {}
        self.late_points = 0
        self.keys_seen: set[str] = set()
        self.arrived = 0

    def next_fault(self, path: str) -> Fault | None:
        """The injected fault for this request to ``path``, if any (one use of it is spent)."""
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.path in (None, path):
                    fault.times -= 1
                    return fault
        return None

    def store(self, path: str, document: dict[str, Any]) -> None:
        """Record an accepted document and keep its series points as Datadog would."""
        now = self.clock()
        with self.lock:
            self.accepted.append((path, document))
            self.accepted_at.append(now)
            if path != SERIES_PATH:
                return
            for series in document["series"]:
                hosts = [r["name"] for r in series.get("resources", []) if r["type"] == "host"]
                host = hosts[0] if hosts else ""
                tags = tuple(sorted(series.get("tags", [])))
                for point in series["points"]:
                    ts = point["timestamp"]
                    if not now - POINT_MAX_AGE_SECONDS <= ts <= now + POINT_MAX_AHEAD_SECONDS:
                        self.late_points += 1  # accepted with 202, then dropped, as Datadog does
                        continue
                    key = (series["metric"], series.get("type", 0), tags, host, ts)
                    self.stored[key] = StoredPoint(
                        series["metric"], series.get("type", 0), tags, host, ts, float(point["value"])
                    )


class LocalIntake:
    """The intake on a free loopback port; use as a context manager.

    ``api_key`` is the only key it accepts. ``url`` is what ``DD_DD_URL`` should be set to.
    """

    def __init__(self, *, api_key: str = "local-intake-key", clock: Callable[[], float] = time.time) -> None:
        self.state = IntakeState(api_key, clock=clock)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self.state))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="intake", daemon=True)

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> LocalIntake:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def inject(
        self,
        status: int,
        *,
        times: int = 1,
        path: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay_seconds: float = 0.0,
    ) -> None:
        """Answer the next ``times`` requests (to ``path``, or any) with ``status``; 0 hangs up."""
        with self.state.lock:
            self.state.faults.append(Fault(status, times, path, dict(headers or {}), delay_seconds))

    def limit(self, path: str, *, compressed_bytes: int, uncompressed_bytes: int) -> None:
        """Lower the size limits of ``path`` (413 above them)."""
        with self.state.lock:
            self.state.limits[path] = (compressed_bytes, uncompressed_bytes)

    def refuse_when(self, predicate: Callable[[str, dict[str, Any]], str | None]) -> None:
        """Answer 400 with the returned reason whenever ``predicate(path, document)`` gives one."""
        self.state.refuse = predicate

    def accepted(self, path: str | None = None) -> list[dict[str, Any]]:
        """The documents accepted (2xx), oldest first, optionally for one path."""
        with self.state.lock:
            return [doc for p, doc in self.state.accepted if path in (None, p)]

    def requests(self, path: str | None = None) -> list[tuple[str, int]]:
        """``(path, status)`` of every request answered, oldest first."""
        with self.state.lock:
            return [(p, status) for _, p, status in self.state.requests if path in (None, p)]

    def stored(self, metric: str | None = None) -> list[StoredPoint]:
        """The points Datadog would keep (last write per series and second), optionally of one metric."""
        with self.state.lock:
            points = list(self.state.stored.values())
        return sorted(
            (p for p in points if metric in (None, p.metric)), key=lambda p: (p.metric, p.timestamp, p.tags)
        )

    @property
    def arrived(self) -> int:
        """POST requests that arrived, answered or not (a slow answer counts at once)."""
        with self.state.lock:
            return self.state.arrived

    def events(self) -> list[dict[str, Any]]:
        """Every event accepted."""
        return self.accepted(EVENTS_PATH)

    def datadog_view(self) -> DatadogView:
        """What Datadog would keep of everything accepted so far, under its storage rules."""
        with self.state.lock:
            accepted = list(zip(self.state.accepted_at, self.state.accepted, strict=True))
        return DatadogView.of(sample for at, (path, doc) in accepted for sample in _samples(path, doc, at))

    def distribution_values(self, metric: str) -> list[float]:
        """Every distribution value accepted for ``metric``."""
        return sorted(
            value
            for doc in self.accepted(DISTRIBUTION_PATH)
            for series in doc["series"]
            if series["metric"] == metric
            for _ts, values in series["points"]
            for value in values
        )

    def wait_for(self, condition: Callable[[LocalIntake], bool], *, timeout_seconds: float = 5.0) -> bool:
        """Poll until ``condition(self)`` holds or the time is up; return whether it held."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if condition(self):
                return True
            time.sleep(0.02)
        return condition(self)


def decode_body(raw: bytes, encoding: str, max_uncompressed: int) -> bytes:
    """Undo ``Content-Encoding`` (deflate, gzip or none), refusing bodies past ``max_uncompressed``."""
    if encoding in {"", "identity"}:
        return raw
    if encoding == "deflate":
        inflater = zlib.decompressobj()
    elif encoding == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    else:
        raise ValueError(f"unsupported Content-Encoding {encoding!r}")
    out = inflater.decompress(raw, max_uncompressed + 1)
    if len(out) > max_uncompressed or inflater.unconsumed_tail:
        raise OverflowError("decompressed body over the limit")
    return out


_MODELS: dict[str, type[BaseModel]] = {
    SERIES_PATH: MetricPayload,
    DISTRIBUTION_PATH: DistributionPointsPayload,
    EVENTS_PATH: EventCreateRequest,
}


def _handler_for(state: IntakeState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes; without this, Nagle and delayed ACKs add 40 ms.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _answer(self, status: int, document: Mapping[str, Any], headers: Mapping[str, str] = {}) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            with state.lock:
                state.requests.append((self.command, self.path, status))

        def _hang_up(self) -> None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            with state.lock:
                state.requests.append((self.command, self.path, 0))

        def _fault(self) -> bool:
            fault = state.next_fault(self.path)
            if fault is None:
                return False
            if fault.delay_seconds:
                time.sleep(fault.delay_seconds)
            if fault.status == 0:
                self._hang_up()
            elif fault.status == 200:
                return False  # only a delay
            else:
                self._answer(fault.status, {"errors": [f"injected {fault.status}"]}, fault.headers)
            return True

        def _authorised(self) -> bool:
            key = self.headers.get("DD-API-KEY", "")
            with state.lock:
                state.keys_seen.add(key)
            if key != state.api_key:
                self._answer(403, {"errors": ["Forbidden"]})
                return False
            return True

        def do_GET(self) -> None:
            if self._fault():
                return
            if self.path != VALIDATE_PATH:
                self._answer(404, {"errors": ["Not found"]})
                return
            if self._authorised():
                self._answer(200, {"valid": True})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            with state.lock:
                state.arrived += 1
            if self._fault():
                return
            model = _MODELS.get(self.path)
            if model is None:
                self._answer(404, {"errors": ["Not found"]})
                return
            if not self._authorised():
                return
            status, document = _read(self.path, raw, self.headers.get("Content-Encoding", ""), model, state)
            if status != 202:
                self._answer(status, document)
                return
            state.store(self.path, document)
            accepted: dict[str, Any] = {"errors": []} if self.path == SERIES_PATH else {"status": "ok"}
            self._answer(202, accepted)

    return Handler


def _read(
    path: str, raw: bytes, encoding: str, model: type[BaseModel], state: IntakeState
) -> tuple[int, dict[str, Any]]:
    """(202, the document) or (413 or 400, the error answer)."""
    max_compressed, max_uncompressed = state.limits[path]
    if len(raw) > max_compressed:
        return 413, {"errors": [f"Payload too large: {len(raw)} > {max_compressed} bytes"]}
    try:
        document = json.loads(decode_body(raw, encoding, max_uncompressed))
    except OverflowError:
        return 413, {"errors": [f"Decompressed payload over {max_uncompressed} bytes"]}
    except (ValueError, zlib.error) as exc:
        return 400, {"errors": [f"Malformed payload: {exc}"]}
    problem = _check(path, model, document, state)
    if problem is not None:
        return 400, {"errors": [problem]}
    return 202, document


def _check(path: str, model: type[BaseModel], document: Any, state: IntakeState) -> str | None:
    try:
        parsed = model.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        return f"Invalid payload at {'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    if (
        isinstance(parsed, EventCreateRequest)
        and parsed.date_happened is not None
        and parsed.date_happened < state.clock() - EVENT_MAX_AGE_SECONDS
    ):
        return "date_happened is older than 18 hours"
    if state.refuse is not None:
        return state.refuse(path, document)
    return None


# v2 intake types: 1 count and 2 rate are kept per series and second like a timestamped count.
_WIRE_TYPES = {1: "c", 2: "c", 3: "g"}


def _samples(path: str, document: dict[str, Any], arrived_at: float) -> Iterator[Sample]:
    """An accepted document as the samples the storage model reads (the host from the payload)."""
    for series in document.get("series", []) if path in {SERIES_PATH, DISTRIBUTION_PATH} else []:
        tags = tuple(series.get("tags", []))
        if path == SERIES_PATH:
            hosts = [r["name"] for r in series.get("resources", []) if r["type"] == "host"]
            kind = _WIRE_TYPES.get(series.get("type", 0), "g")
            for point in series["points"]:
                metric = Metric(series["metric"], float(point["value"]), kind, tags, point["timestamp"])
                yield Sample(arrived_at, metric, hosts[0] if hosts else "", via_agent=False)
        else:
            for timestamp, values in series["points"]:
                for value in values:
                    metric = Metric(series["metric"], float(value), "d", tags, timestamp)
                    yield Sample(arrived_at, metric, series.get("host") or "", via_agent=False)


def iter_series(documents: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every series entry of accepted v2 documents."""
    for document in documents:
        yield from document["series"]
