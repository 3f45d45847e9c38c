"""The record handler shared by every run mode: a batch of SQS messages in, one verdict each out.

Each message is tried on its own; its records' objects are fetched concurrently; everything that
is valid is handed to the sink in one hand-off, one parcel per message; the verdicts are collected into a
:class:`BatchResult`. Acknowledging (delete, dead-letter, backoff, or Lambda's
``batchItemFailures``) is the caller's job, so no message is deleted here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from enum import StrEnum

from app.aws.resources import CloudResourceHandler
from app.core.envelope import ObjectRef, QueueMessage, Skipped, parse_body
from app.core.metadata import DEFAULT_MAX_JOBS, parse_job_file
from app.core.metrics import Event, Health, JobMetrics, MetricOptions, job_metrics, rejection_event
from app.errors import (
    AwsUnavailableError,
    BucketNotAllowedError,
    CloudJobMetricsError,
    ConfigurationError,
    PayloadRejectedError,
    PermanentError,
    TransientError,
)
from app.settings import Settings
from app.sinks.base import Parcel, Sink

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    """The fate of one SQS message (DESIGN "What happens to each SQS message")."""

    FORWARDED = "forwarded"
    IGNORED = "ignored"
    REJECTED = "rejected"
    RETRIED = "retried"


@dataclass(frozen=True, slots=True)
class Filters:
    """Which notifications are ours: an empty allow-list allows every bucket."""

    allowed_buckets: frozenset[str] = frozenset()
    key_prefix: str = ""
    key_suffix: str = ""
    max_object_bytes: int = 1024 * 1024
    max_jobs_per_object: int = DEFAULT_MAX_JOBS


def metric_options(settings: Settings, *, distributions_by_default: bool = False) -> MetricOptions:
    """How jobs become metrics under ``settings``; ``distributions`` unset takes the run mode's default."""
    distributions = settings.distributions
    return MetricOptions(
        namespace=settings.namespace,
        constant_tags=settings.constant_tags,
        distributions=distributions_by_default if distributions is None else distributions,
        include_fields=settings.include_fields,
        exclude_fields=settings.exclude_fields,
    )


def filters(settings: Settings) -> Filters:
    """Which notifications are read under ``settings``."""
    return Filters(
        settings.allowed_buckets,
        settings.key_prefix,
        settings.key_suffix,
        settings.max_object_bytes,
        settings.max_jobs_per_object,
    )


@dataclass(frozen=True, slots=True)
class MessageResult:
    """One message's verdict, with a reason code and detail when it was not forwarded."""

    message: QueueMessage
    outcome: Outcome
    reason: str = ""
    detail: str = ""
    jobs: int = 0
    lag_seconds: float | None = None
    late_points: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The verdicts of one batch, in the order the messages came."""

    results: tuple[MessageResult, ...] = ()

    def with_outcome(self, outcome: Outcome) -> list[MessageResult]:
        """The results that ended in ``outcome``."""
        return [r for r in self.results if r.outcome is outcome]

    def health(self, *, dead_lettered: int = 0, delete_failures: int = 0) -> Health:
        """The batch as the forwarder's own health metrics."""
        failures: dict[tuple[str, str], int] = {}
        for result in self.results:
            if result.outcome in (Outcome.REJECTED, Outcome.RETRIED):
                kind = "permanent" if result.outcome is Outcome.REJECTED else "transient"
                failures[kind, result.reason] = failures.get((kind, result.reason), 0) + 1
        lags = [r.lag_seconds for r in self.results if r.lag_seconds is not None]
        late: Counter[str] = Counter()
        for result in self.results:
            late.update(result.late_points)
        return Health(
            self.counts(), failures, dead_lettered, max(lags) if lags else None, delete_failures, dict(late)
        )

    def counts(self) -> dict[str, int]:
        """Messages per outcome, every outcome present."""
        totals = {outcome.value: 0 for outcome in Outcome}
        for result in self.results:
            totals[result.outcome.value] += 1
        return totals


@dataclass(slots=True)
class _Work:
    """What one message is turning into while the batch is processed."""

    message: QueueMessage
    refs: list[ObjectRef] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    jobs: list[JobMetrics] = field(default_factory=list)
    error: CloudJobMetricsError | None = None
    failed_ref: ObjectRef | None = None


class RecordHandler:
    """Turns messages into metrics; never deletes, never raises for a bad message."""

    def __init__(
        self,
        *,
        resources: CloudResourceHandler,
        sink: Sink,
        executor: Executor,
        options: MetricOptions,
        filters: Filters,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.resources = resources
        self.sink = sink
        self.executor = executor
        self.options = options
        # Field patterns no job has matched yet: a pattern that never matches is likely a typo.
        self._unused_patterns = {*options.include_fields, *options.exclude_fields}
        self._patterns_lock = threading.Lock()
        self.filters = filters
        self.clock = clock

    def handle(self, messages: Sequence[QueueMessage]) -> BatchResult:
        """Process ``messages``; each ends forwarded, ignored, rejected or retried."""
        work = [self._plan(message) for message in messages]
        fetches: list[tuple[_Work, ObjectRef, Future[bytes]]] = [
            (
                item,
                ref,
                self.executor.submit(self.resources.fetch, ref, max_bytes=self.filters.max_object_bytes),
            )
            for item in work
            for ref in item.refs
        ]
        now = self.clock()
        for item, ref, future in fetches:
            try:
                raw = future.result()
                reports = parse_job_file(
                    raw,
                    max_bytes=self.filters.max_object_bytes,
                    name=ref.key,
                    max_jobs=self.filters.max_jobs_per_object,
                )
                for report in reports:
                    item.jobs.append(job_metrics(report, ref, self.options, now=now))
                    self._note_fields(report.fields)
            except ConfigurationError:
                raise
            except CloudJobMetricsError as exc:
                self._fail(item, exc, ref)
            except Exception as exc:
                # Not a failure we know: keep the message (SQS redrives it after maxReceiveCount)
                # rather than crash the run or drop it.
                log.exception("object.unexpected_error uri=%s", ref.uri)
                self._fail(item, AwsUnavailableError(f"unexpected {type(exc).__name__}: {exc}"), ref)
        return self._hand_off(work, now)

    def unused_field_patterns(self) -> list[str]:
        """The ``FIELDS``/``EXCLUDE_FIELDS`` patterns that matched no field of any job so far."""
        with self._patterns_lock:
            return sorted(self._unused_patterns)

    def _note_fields(self, fields: Sequence[tuple[str, float]]) -> None:
        if self._unused_patterns:
            matched = self.options.patterns_matching(name for name, _ in fields)
            with self._patterns_lock:
                self._unused_patterns -= matched

    def _plan(self, message: QueueMessage) -> _Work:
        item = _Work(message)
        try:
            records = parse_body(message.body)
        except PermanentError as exc:
            item.error = exc
            return item
        for record in records:
            if isinstance(record, Skipped):
                item.skipped.append(record)
            elif self.filters.allowed_buckets and record.bucket not in self.filters.allowed_buckets:
                # Never read it: a stranger who can write to the queue must not make us read
                # other objects our role can see.
                self._fail(item, BucketNotAllowedError(f"bucket {record.bucket!r} is not allowed"), record)
            elif not (
                record.key.startswith(self.filters.key_prefix)
                and record.key.endswith(self.filters.key_suffix)
            ):
                item.skipped.append(Skipped("outside-filter", record.uri))
            else:
                item.refs.append(record)
        if item.error is not None:
            item.refs.clear()
        return item

    @staticmethod
    def _fail(item: _Work, exc: CloudJobMetricsError, ref: ObjectRef) -> None:
        # A transient failure outranks a permanent one: retrying may still fix the message,
        # while dead-lettering it would lose the records that were only waiting on AWS.
        if item.error is None or (isinstance(exc, TransientError) and isinstance(item.error, PermanentError)):
            item.error = exc
            item.failed_ref = ref

    def _hand_off(self, work: list[_Work], now: float) -> BatchResult:
        parcels = [parcel for item in work if (parcel := self._parcel(item)) is not None]
        sink_error: TransientError | None = None
        if parcels:
            try:
                refused = self.sink.submit(parcels)
            except TransientError as exc:
                sink_error = exc
                log.warning("sink.handoff_failed messages=%d error=%s", len(work), exc)
            else:
                for item in work:
                    reason = refused.get(item.message.message_id)
                    if reason is not None:
                        item.error = PayloadRejectedError(f"the intake refused this message's data: {reason}")
        return BatchResult(tuple(self._verdict(item, sink_error, now) for item in work))

    def _parcel(self, item: _Work) -> Parcel | None:
        """What ``item`` hands to the sink, or None when it has nothing to hand over yet."""
        if isinstance(item.error, TransientError):
            return None
        # The valid records of a rejected message are sent too: duplicates on a redrive
        # are harmless (same timestamps and aggregation key), lost metrics are not.
        events: tuple[Event, ...] = ()
        if isinstance(item.error, PermanentError):
            events = (
                rejection_event(
                    item.failed_ref,
                    item.error.reason,
                    str(item.error),
                    self.options,
                    message_id=item.message.message_id,
                ),
            )
        if not item.jobs and not events:
            return None
        return Parcel(item.message.message_id, tuple(item.jobs), events)

    def _verdict(self, item: _Work, sink_error: TransientError | None, now: float) -> MessageResult:
        message = item.message
        error = item.error
        if isinstance(error, PermanentError):
            log.warning("message.rejected id=%s reason=%s detail=%s", message.message_id, error.reason, error)
            return MessageResult(message, Outcome.REJECTED, error.reason, str(error), len(item.jobs))
        if isinstance(error, TransientError) or (sink_error is not None and item.jobs):
            cause = error or sink_error
            assert cause is not None
            log.info("message.retry id=%s reason=%s detail=%s", message.message_id, cause.reason, cause)
            return MessageResult(message, Outcome.RETRIED, cause.reason, str(cause))
        if not item.jobs:
            reasons = ",".join(sorted({s.reason for s in item.skipped})) or "no-records"
            log.info("message.ignored id=%s reason=%s", message.message_id, reasons)
            return MessageResult(message, Outcome.IGNORED, reasons)
        event_times = [ref.event_time for ref in item.refs if ref.event_time is not None]
        lag = now - min(event_times) if event_times else None
        late: Counter[str] = Counter()
        for job in item.jobs:
            if job.late_reason is not None:
                late[job.late_reason] += job.late_gauges
        if late:
            # Datadog would drop such points or file them at the wrong time; the count, the
            # distributions and the event still went out.
            log.info(
                "message.gauges_skipped id=%s gauges=%d reason=%s: the job's time is outside the window "
                "Datadog accepts",
                message.message_id,
                sum(late.values()),
                ",".join(sorted(late)),
            )
        return MessageResult(
            message, Outcome.FORWARDED, jobs=len(item.jobs), lag_seconds=lag, late_points=dict(late)
        )
