"""What the HTTP API sink sends, built from parcels (pure: no I/O, no clock, no network).

- Gauges (type 3) go to ``POST /api/v2/series`` with integer-second timestamps. Datadog keeps one
  point per series and second (last write wins), which is what a gauge means: the latest value.
- The job counter and every other value that must add up go to ``POST /api/v1/distribution_points``
  as ``[timestamp, [values…]]``: Datadog keeps every distribution value, so writers in other
  processes, runs or hosts add to it instead of overwriting it (a count point per series and
  second would be replaced by the next writer's).
- A ``host`` is set only when one is configured: a default per machine would make a new series for
  every Lambda environment or scheduled container, and custom metrics are billed per series.
- Events go one per request to ``POST /api/v1/events``, within the documented limits.
- Every body is deflate-compressed and kept under 512,000 bytes compressed and 5,242,880 bytes
  uncompressed (the v2 series limits, applied to every endpoint).

References: docs.datadoghq.com/api/latest/metrics and docs.datadoghq.com/api/latest/events.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from app.core.metrics import Event
from app.sinks.base import Parcel

SERIES_PATH = "/api/v2/series"
DISTRIBUTION_PATH = "/api/v1/distribution_points"
EVENTS_PATH = "/api/v1/events"
VALIDATE_PATH = "/api/v1/validate"

MAX_COMPRESSED_BYTES = 512_000
MAX_UNCOMPRESSED_BYTES = 5_242_880
# A first cut by estimated size, before a body is rendered and measured exactly.
_ESTIMATE_BUDGET_BYTES = MAX_UNCOMPRESSED_BYTES // 2

GAUGE_TYPE = 3

MAX_EVENT_TITLE_CHARS = 100
MAX_EVENT_TEXT_CHARS = 4000
MAX_AGGREGATION_KEY_CHARS = 100
# Events may be dated at most 18 h back; keep ten minutes of margin for the trip.
MAX_EVENT_AGE_SECONDS = 18 * 3600 - 600
TRUNCATION_MARK = "\n… (truncated)"

SeriesKey = tuple[str, tuple[str, ...], int]
"""(metric, tags, timestamp): one stored gauge point in Datadog's view."""

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """A gauge point of one parcel, stamped with whole seconds."""

    key: str
    metric: str
    value: float
    tags: tuple[str, ...]
    timestamp: int

    @property
    def series_key(self) -> SeriesKey:
        """The point's identity in Datadog's storage."""
        return (self.metric, self.tags, self.timestamp)


@dataclass(frozen=True, slots=True)
class DistributionValue:
    """One distribution value of one parcel."""

    key: str
    metric: str
    value: float
    tags: tuple[str, ...]
    timestamp: int


@dataclass(frozen=True, slots=True)
class EventItem:
    """One event of one parcel."""

    key: str
    event: Event


@dataclass(frozen=True, slots=True)
class Pieces:
    """Everything a set of parcels turns into, each item labelled with its parcel's key."""

    series: tuple[SeriesPoint, ...] = ()
    distributions: tuple[DistributionValue, ...] = ()
    events: tuple[EventItem, ...] = ()


def pieces(parcels: Iterable[Parcel], *, now: int) -> Pieces:
    """Split ``parcels`` into gauge points, distribution values and events.

    Gauges carry the job's time (the model sends none outside Datadog's window). A job's counter
    value and distributions carry the job's time when Datadog accepts it, else ``now``, the
    hand-off second: a job redriven hours later still counts, at the time it was handed over.
    """
    series: list[SeriesPoint] = []
    distributions: list[DistributionValue] = []
    events: list[EventItem] = []
    for parcel in parcels:
        for job in parcel.jobs:
            stamp = job.time if job.time is not None else now
            series.extend(SeriesPoint(parcel.key, g.name, g.value, g.tags, g.timestamp) for g in job.gauges)
            distributions.extend(
                DistributionValue(parcel.key, d.name, d.value, d.tags, stamp)
                for d in (job.run, *job.distributions)
            )
            events.append(EventItem(parcel.key, job.event))
        events.extend(EventItem(parcel.key, event) for event in parcel.events)
    return Pieces(tuple(series), tuple(distributions), tuple(events))


def series_body(points: Sequence[SeriesPoint], *, host: str | None) -> bytes:
    """The JSON of a v2 series request of gauges.

    Of two points of a series in the same second the later one is kept, as Datadog would.
    """
    values: dict[SeriesKey, float] = {point.series_key: point.value for point in points}
    grouped: dict[tuple[str, tuple[str, ...]], list[tuple[int, float]]] = {}
    for (metric, tags, timestamp), value in values.items():
        grouped.setdefault((metric, tags), []).append((timestamp, value))
    resources = [{"type": "host", "name": host}] if host else []
    series: list[dict[str, Any]] = []
    # Sorted, so similar entries sit together and compress well.
    for (metric, tags), stamped in sorted(grouped.items()):
        entry: dict[str, Any] = {
            "metric": metric,
            "type": GAUGE_TYPE,
            "points": [{"timestamp": ts, "value": value} for ts, value in sorted(stamped)],
            "tags": list(tags),
        }
        if resources:
            entry["resources"] = resources
        series.append(entry)
    return _json({"series": series})


def distribution_body(values: Sequence[DistributionValue], *, host: str | None) -> bytes:
    """The JSON of a v1 distribution-points request: per series, ``[timestamp, [values…]]``."""
    grouped: dict[tuple[str, tuple[str, ...]], dict[int, list[float]]] = {}
    for item in values:
        grouped.setdefault((item.metric, item.tags), {}).setdefault(item.timestamp, []).append(item.value)
    series: list[dict[str, Any]] = []
    for (metric, tags), stamped in sorted(grouped.items()):
        entry: dict[str, Any] = {
            "metric": metric,
            "points": [[ts, stamped[ts]] for ts in sorted(stamped)],
            "tags": list(tags),
            "type": "distribution",
        }
        if host:
            entry["host"] = host
        series.append(entry)
    return _json({"series": series})


def event_body(event: Event, *, host: str | None, now: int) -> bytes:
    """The JSON of a v1 event, within the limits; a date older than 18 h is left to the intake."""
    text = event.text
    if len(text) > MAX_EVENT_TEXT_CHARS:
        text = text[: MAX_EVENT_TEXT_CHARS - len(TRUNCATION_MARK)] + TRUNCATION_MARK
    body: dict[str, Any] = {
        "title": event.title[:MAX_EVENT_TITLE_CHARS],
        "text": text,
        "alert_type": event.alert_type,
        "aggregation_key": event.aggregation_key[:MAX_AGGREGATION_KEY_CHARS],
        "tags": list(event.tags),
    }
    if host:
        body["host"] = host
    if event.date_happened is not None and event.date_happened >= now - MAX_EVENT_AGE_SECONDS:
        body["date_happened"] = int(event.date_happened)
    return _json(body)


def compress(body: bytes) -> bytes:
    """Deflate (zlib) as the intake's ``Content-Encoding: deflate`` expects."""
    return zlib.compress(body, 6)


def fits(body: bytes, compressed: bytes) -> bool:
    """True when a body is within both size limits."""
    return len(body) <= MAX_UNCOMPRESSED_BYTES and len(compressed) <= MAX_COMPRESSED_BYTES


def pack(
    items: Sequence[P], render: Callable[[Sequence[P]], bytes], *, estimate: Callable[[P], int]
) -> list[tuple[list[P], bytes, bytes]]:
    """Cut ``items`` into requests within the size limits: ``(items, body, compressed body)`` each.

    A first cut goes by estimated size; each chunk is then rendered, compressed and measured, and
    halved until it fits. A single item that cannot fit is returned as it is (the intake's 413
    then names its parcel).
    """
    chunks: list[list[P]] = []
    current: list[P] = []
    used = 0
    for item in items:
        size = estimate(item)
        if current and used + size > _ESTIMATE_BUDGET_BYTES:
            chunks.append(current)
            current, used = [], 0
        current.append(item)
        used += size
    if current:
        chunks.append(current)
    out: list[tuple[list[P], bytes, bytes]] = []
    pending = chunks[::-1]
    while pending:
        chunk = pending.pop()
        body = render(chunk)
        compressed = compress(body)
        if fits(body, compressed) or len(chunk) == 1:
            out.append((chunk, body, compressed))
            continue
        middle = len(chunk) // 2
        pending.extend((chunk[middle:], chunk[:middle]))
    return out


def estimate_series(point: SeriesPoint) -> int:
    """Rough JSON size of one point as its own entry."""
    return 110 + len(point.metric) + sum(len(tag) + 3 for tag in point.tags)


def estimate_distribution(value: DistributionValue) -> int:
    """Rough JSON size of one distribution value as its own entry."""
    return 90 + len(value.metric) + sum(len(tag) + 3 for tag in value.tags)


def _json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
