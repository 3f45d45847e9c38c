"""From a validated job to what Datadog receives, made safe for the DogStatsD wire (pure).

One job becomes (DESIGN "Output", and docs/output.md, "Which metric to graph"):

- a DISTRIBUTION ``<namespace>.runs`` of 1: the job counter. Datadog keeps every distribution value
  and adds them up server side, so ``count:`` counts every job whichever sink, process, run, host
  or Lambda environment sent it; a count would keep one point per series and second, last write
  winning across writers. Its series depend on the tags alone, never on who wrote;
- GAUGES ``<namespace>.success`` and ``<namespace>.<field>`` at the job's own time: the latest value
  per series. Datadog keeps one point per series and second, so a gauge is sent with its job's time
  or not at all: outside the window Datadog accepts it is skipped and counted, never restamped;
- with distributions on, a DISTRIBUTION ``<namespace>.distribution.<field>`` per numeric field (and
  ``success``): every value kept, but DogStatsD cannot timestamp them, so they land at arrival;
- one success/error event, dated with the job's time when Datadog accepts that date (18 h back).

Metric names keep to ``[A-Za-z0-9_.]``, start with a letter and stay within 200 characters; tags
keep to letters, digits and ``_ - . / :`` (the first ``:`` splits key and value) and 200
characters; titles lose ``| # , :`` and line breaks. So no field name, tag or title from a job file
can inject DogStatsD syntax. See https://docs.datadoghq.com/metrics/custom_metrics/#naming-custom-metrics
and https://docs.datadoghq.com/getting_started/tagging/#define-tags.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from app.core.catalog import (
    BATCH_PREFIX,
    DEFAULT_NAMESPACE,
    DISTRIBUTION_PREFIX,
    LEGACY_JOBS,
    RUNS,
    SUCCESS,
    health_metric,
)
from app.core.envelope import ObjectRef
from app.core.metadata import JobReport

MAX_NAME_LENGTH = 200
MAX_TAG_LENGTH = 200
MAX_TITLE_LENGTH = 100
# DogStatsD refuses events over 8 KB. The text gets what the title and tags leave of that, less
# room for the other fields (header, date, aggregation key, alert type, container id), and never
# more than 4,000 bytes, which is plenty to read.
MAX_EVENT_BYTES = 8 * 1024
EVENT_FIELDS_RESERVE_BYTES = 512
MAX_EVENT_TEXT_BYTES = 4000
# The agent reads DogStatsD datagrams into 8,192-byte buffers (``dogstatsd_buffer_size``) and
# truncates or drops longer ones. A metric line is its name (at most 200 ASCII bytes), value, type
# and timestamp (under 50 bytes) and the tags; the rest of the 8 KiB is left for what the client
# may add (an origin container id, DD_ENV/DD_SERVICE/DD_VERSION/DD_TAGS constant tags).
MAX_DATAGRAM_BYTES = 8192
MAX_TAGS_BYTES = 7 * 1024
# Datadog accepts points about 1 h in the past and 10 min in the future; keep a minute of margin
# for the trip through the agent (https://docs.datadoghq.com/metrics/custom_metrics/dogstatsd_metrics_submission/).
TIMESTAMP_MAX_AGE_SECONDS = 3600 - 60
TIMESTAMP_MAX_AHEAD_SECONDS = 600 - 60
# Events are accepted up to 18 h back (https://docs.datadoghq.com/api/latest/events/).
EVENT_MAX_AGE_SECONDS = 18 * 3600 - 60
LEGACY_TAG = "cloud_job_metric"

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.]+")
_TAG_UNSAFE = re.compile(r"[^\w\-./:]+")
_TITLE_UNSAFE = re.compile(r"[|#,:\r\n\t]+")


@dataclass(frozen=True, slots=True)
class MetricOptions:
    """How metrics are named, tagged and chosen.

    ``namespace`` may be empty. ``distributions`` adds a distribution per numeric field.
    ``include_fields``/``exclude_fields`` are glob patterns over flattened field names (``images.*``):
    a field is sent when it matches an include pattern (or none are given) and no exclude pattern.
    ``success`` and the job counter are always sent.
    """

    namespace: str = DEFAULT_NAMESPACE
    constant_tags: tuple[str, ...] = ()
    distributions: bool = False
    include_fields: tuple[str, ...] = ()
    exclude_fields: tuple[str, ...] = ()

    def selects(self, name: str) -> bool:
        """Whether the field ``name`` becomes metrics under the include/exclude patterns."""
        if self.include_fields and not any(fnmatch.fnmatchcase(name, p) for p in self.include_fields):
            return False
        return not any(fnmatch.fnmatchcase(name, p) for p in self.exclude_fields)

    def patterns_matching(self, names: Iterable[str]) -> set[str]:
        """The include and exclude patterns that match at least one of ``names``."""
        patterns = (*self.include_fields, *self.exclude_fields)
        return {p for name in names for p in patterns if fnmatch.fnmatchcase(name, p)}


@dataclass(frozen=True, slots=True)
class Gauge:
    """One gauge point, always at its job's time (epoch seconds)."""

    name: str
    value: float
    tags: tuple[str, ...]
    timestamp: int


@dataclass(frozen=True, slots=True)
class Distribution:
    """One value of a distribution; DogStatsD cannot timestamp it, so it lands at arrival."""

    name: str
    value: float
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Event:
    """One Datadog event, already sanitised."""

    title: str
    text: str
    alert_type: str
    aggregation_key: str
    tags: tuple[str, ...]
    date_happened: int | None = None


@dataclass(frozen=True, slots=True)
class JobMetrics:
    """Everything one job turns into.

    ``time`` is the job's time in whole seconds when Datadog accepts points at it, else None; then
    ``gauges`` is empty, ``late_gauges`` says how many were left out and ``late_reason`` why
    (``too-old``, ``too-new``, ``no-time``). ``run`` is the job counter's value.
    """

    gauges: tuple[Gauge, ...]
    run: Distribution
    distributions: tuple[Distribution, ...]
    event: Event
    time: int | None = None
    late_reason: str | None = None
    late_gauges: int = 0


@dataclass(frozen=True, slots=True)
class Health:
    """The forwarder's own health for one batch: outcomes, failures by class and reason, lag."""

    outcomes: Mapping[str, int]
    failures: Mapping[tuple[str, str], int]
    dead_lettered: int = 0
    lag_seconds: float | None = None
    delete_failures: int = 0
    late_points: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HealthMetrics:
    """What one batch's :class:`Health` becomes: per-batch distributions and the lag gauge."""

    distributions: tuple[Distribution, ...]
    lag_seconds: float | None


def health_metrics(health: Health) -> HealthMetrics:
    """The forwarder's own metrics for one batch; zero counts are left out.

    Each counter is a distribution whose value is this batch's number, so ``sum:`` adds up every
    batch of every writer (a count would keep one write per series and second).
    """

    def batch(name: str, value: int, *tags: str) -> Distribution:
        return Distribution(health_metric(f"{BATCH_PREFIX}.{name}"), float(value), tags)

    values = [batch("messages", n, f"outcome:{outcome}") for outcome, n in health.outcomes.items() if n]
    values.extend(
        batch("failures", n, f"class:{kind}", sanitize_tag(f"reason:{reason}"))
        for (kind, reason), n in health.failures.items()
        if n
    )
    if health.dead_lettered:
        values.append(batch("dead_lettered", health.dead_lettered))
    if health.delete_failures:
        values.append(batch("delete_failures", health.delete_failures))
    values.extend(
        batch("late_points", n, f"reason:{reason}") for reason, n in health.late_points.items() if n
    )
    lag = None if health.lag_seconds is None else round(health.lag_seconds, 3)
    return HealthMetrics(tuple(values), lag)


def sanitize_metric_name(name: str) -> str:
    """Make ``name`` a valid Datadog metric name that cannot break the DogStatsD line."""
    cleaned = _NAME_UNSAFE.sub("_", name)
    cleaned = re.sub(r"\.{2,}", ".", cleaned).strip("._")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = f"f_{cleaned}".rstrip("_") if cleaned else "unnamed"
    return cleaned[:MAX_NAME_LENGTH].rstrip(".")


def sanitize_tag(tag: str) -> str:
    """Make ``key:value`` a tag without DogStatsD syntax (``,`` ``|`` ``#`` newline)."""
    key, sep, value = tag.partition(":")
    safe_key = _TAG_UNSAFE.sub("_", key.replace(":", "_")).strip("_") or "tag"
    if not sep:
        return safe_key[:MAX_TAG_LENGTH]
    safe_value = _TAG_UNSAFE.sub("_", value) or "none"
    return f"{safe_key}:{safe_value}"[:MAX_TAG_LENGTH]


def _valid_unicode(text: str) -> str:
    """Spell lone surrogates (which JSON allows and UTF-8 does not) as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def sanitize_title(title: str) -> str:
    """Make ``title`` a one-line event title without ``| # , :``."""
    return " ".join(_TITLE_UNSAFE.sub(" ", _valid_unicode(title)).split())[:MAX_TITLE_LENGTH] or "job"


def metric_name(namespace: str, field: str) -> str:
    """Join the namespace and a field name, each sanitised."""
    if not namespace:
        return sanitize_metric_name(field)
    return sanitize_metric_name(f"{namespace}.{field}")


def aggregation_key(ref: ObjectRef) -> str:
    """A key stable per object version, so redeliveries of one job group together."""
    identity = "\0".join((ref.bucket, ref.key, ref.version_id or ref.etag or ""))
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def acceptable_timestamp(when: float | None, *, now: float) -> int | None:
    """Return ``when`` as whole seconds if Datadog accepts a point at that time, else None."""
    if when is None or lateness(when, now=now) is not None:
        return None
    return int(when)


def lateness(when: float | None, *, now: float) -> str | None:
    """Why Datadog would not accept a point at ``when`` (``no-time``, ``too-old``, ``too-new``), or None."""
    if when is None:
        return "no-time"
    if when < now - TIMESTAMP_MAX_AGE_SECONDS:
        return "too-old"
    if when > now + TIMESTAMP_MAX_AHEAD_SECONDS:
        return "too-new"
    return None


def _tags(*groups: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for group in groups:
        for tag in group:
            seen.setdefault(sanitize_tag(tag), None)
    return tuple(seen)


def within_tag_budget(fixed: tuple[str, ...], optional: Iterable[str]) -> tuple[tuple[str, ...], int]:
    """``fixed`` plus as many ``optional`` tags, in order, as keep the line within the datagram budget.

    Sizes are UTF-8 bytes on the wire (a tag of 200 four-byte letters is 800 bytes), counted with
    the commas between tags. Returns the tags and how many optional ones were left out.
    """
    kept = list(fixed)
    used = sum(len(tag.encode()) for tag in kept) + max(0, len(kept) - 1)
    dropped = 0
    for tag in optional:
        if tag in kept:
            continue
        cost = len(tag.encode()) + (1 if kept else 0)
        if used + cost > MAX_TAGS_BYTES:
            dropped += 1
            continue
        kept.append(tag)
        used += cost
    return tuple(kept), dropped


def job_metrics(report: JobReport, ref: ObjectRef, options: MetricOptions, *, now: float) -> JobMetrics:
    """Map one validated job to its count, gauges, distributions and success/failure event."""
    status = "success" if report.success else "failure"
    # The forwarder's own tags and the configured ones always go; the file's tags fill what is left
    # of the datagram budget, in their order, and any left out are named in the event.
    tags, dropped_tags = within_tag_budget(
        _tags(
            (LEGACY_TAG, f"status:{status}", f"bucket:{ref.bucket}"),
            (f"job:{report.job_name}",) if report.job_name else (),
            options.constant_tags,
        ),
        _tags(f"{key}:{value}" for key, value in report.tags),
    )
    values = [(SUCCESS, 1.0 if report.success else 0.0)]
    values.extend(
        (name, value) for name, value in report.fields if options.selects(name) and not reserved(name)
    )
    finished_at = report.finished_at if report.finished_at is not None else ref.event_time
    late_reason = lateness(finished_at, now=now)
    time = None if late_reason is not None or finished_at is None else int(finished_at)
    gauges = (
        ()
        if time is None
        else tuple(Gauge(metric_name(options.namespace, name), value, tags, time) for name, value in values)
    )
    distributions = (
        tuple(
            Distribution(metric_name(options.namespace, f"{DISTRIBUTION_PREFIX}.{name}"), value, tags)
            for name, value in values
        )
        if options.distributions
        else ()
    )
    return JobMetrics(
        gauges=gauges,
        run=Distribution(metric_name(options.namespace, RUNS), 1.0, tags),
        distributions=distributions,
        event=_job_event(report, ref, tags, finished_at, now=now, dropped_tags=dropped_tags),
        time=time,
        late_reason=late_reason,
        late_gauges=len(values) if time is None else 0,
    )


def reserved(field_name: str) -> bool:
    """Whether a field's metric name would collide with one the forwarder sends itself.

    A Datadog metric name has one type: a field ``runs`` would be a gauge under the job counter's
    name (``jobs`` under its former one), ``distribution.x`` a gauge among the distributions. Such
    fields are named in the event only.
    """
    return field_name in {RUNS, LEGACY_JOBS, SUCCESS} or field_name.startswith(f"{DISTRIBUTION_PREFIX}.")


def _job_event(
    report: JobReport,
    ref: ObjectRef,
    tags: tuple[str, ...],
    finished_at: float | None,
    *,
    now: float,
    dropped_tags: int = 0,
) -> Event:
    label = report.job_name or ref.key.rsplit("/", 1)[-1]
    title = sanitize_title(f"Job {label} {'succeeded' if report.success else 'failed'}")
    lines = [ref.uri + (f" (version {ref.version_id})" if ref.version_id else ""), ""]
    lines.extend(f"{sanitize_metric_name(name)} = {value:g}" for name, value in report.fields)
    if report.skipped_fields:
        lines.append(f"({len(report.skipped_fields)} non-numeric fields skipped)")
    if dropped_tags:
        lines.append(f"({dropped_tags} of the file's tags left out: the tags passed {MAX_TAGS_BYTES} bytes)")
    clashing = [name for name, _ in report.fields if reserved(name)]
    if clashing:
        lines.append(f"(not sent as metrics, the names are the forwarder's own: {', '.join(clashing)})")
    # Datadog drops an event dated more than 18 h back; such an old job's event goes out undated
    # (so it lands at arrival) and says in its text when the job finished.
    dated = finished_at is not None and finished_at >= now - EVENT_MAX_AGE_SECONDS
    if finished_at is not None and not dated:
        lines.append(f"finished at {_iso(finished_at)}")
    return Event(
        title=title,
        text=_bounded_text(lines, _text_budget(title, tags)),
        alert_type="success" if report.success else "error",
        aggregation_key=aggregation_key(ref),
        tags=tags,
        date_happened=int(finished_at) if dated and finished_at is not None else None,
    )


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).isoformat(timespec="seconds")


def rejection_event(
    ref: ObjectRef | None, reason: str, detail: str, options: MetricOptions, *, message_id: str
) -> Event:
    """The ``error`` event that makes a broken producer visible in Datadog."""
    where = ref.uri if ref else f"SQS message {message_id}"
    tags = _tags(
        (LEGACY_TAG, "status:rejected", f"reason:{reason}"),
        (f"bucket:{ref.bucket}",) if ref else (),
        options.constant_tags,
    )
    identity = aggregation_key(ref) if ref else hashlib.sha256(message_id.encode()).hexdigest()[:32]
    return Event(
        title="job metadata rejected",
        text=_bounded_text(
            [where, "", f"reason: {reason}", detail], _text_budget("job metadata rejected", tags)
        ),
        alert_type="error",
        aggregation_key=identity,
        tags=tags,
    )


def _text_budget(title: str, tags: tuple[str, ...]) -> int:
    used = len(title.encode()) + len(",".join(tags).encode()) + EVENT_FIELDS_RESERVE_BYTES
    return max(0, min(MAX_EVENT_TEXT_BYTES, MAX_EVENT_BYTES - used))


def _bounded_text(lines: list[str], budget: int) -> str:
    """Join ``lines``, cut to ``budget`` bytes on the wire (a newline is sent as two bytes)."""
    text = _valid_unicode("\n".join(lines))
    if len(text.encode("utf-8", "replace")) + text.count("\n") <= budget:
        return text
    marker = "\n… (truncated)"
    room = budget - len(marker.encode()) - 1
    kept: list[str] = []
    for char in text:
        cost = 2 if char == "\n" else len(char.encode("utf-8", "replace"))
        if cost > room:
            break
        room -= cost
        kept.append(char)
    return "".join(kept) + marker if room >= 0 else ""
