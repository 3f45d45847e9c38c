"""The record handler shared by every run mode: a batch of SQS messages in, one verdict each out.

Each message is tried on its own; its records' objects are fetched concurrently (a record named
twice in one message is read once); everything that is valid is handed to the sink in one
hand-off, one parcel per message; the verdicts are collected into a :class:`BatchResult`.
Acknowledging (delete, dead-letter, backoff, or Lambda's ``batchItemFailures``) is the caller's
job, so no message is deleted here.

Memory is bounded in fact, whatever the shapes: at most ``max_reads_in_hand`` objects are read
and not yet parsed (each within ``max_object_bytes``), and every parsed object holds its cost in
the shared :class:`~app.drain.limiter.MemoryBudget` until its metrics were handed off. When the
budget is spent, the batch hands off what it has parsed so far before it waits; in the common
case (small files) that never happens and a batch is one hand-off.

A message's verdict: a failed hand-off of any of its jobs outranks everything (retried: nothing
is deleted or dead-lettered while its data waits for the sink), then a transient failure of any of
its records (retried), then a permanent one (rejected), then ignored or forwarded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from enum import StrEnum

from app.aws.resources import CloudResourceHandler
from app.core.envelope import ObjectRef, QueueMessage, Skipped, parse_body
from app.core.metadata import DEFAULT_MAX_JOBS, parse_job_file
from app.core.metrics import Event, Health, JobMetrics, MetricOptions, job_metrics, rejection_event
from app.drain.limiter import FairQuota, MemoryBudget
from app.errors import (
    AwsUnavailableError,
    BucketNotAllowedError,
    CloudJobMetricsError,
    ConfigurationError,
    EnvelopeError,
    PayloadRejectedError,
    PermanentError,
    TransientError,
)
from app.settings import Settings
from app.sinks.base import Parcel, Sink

log = logging.getLogger(__name__)

DEFAULT_MAX_RECORDS_PER_MESSAGE = 100
# What one object costs while it is held, per byte of it: the raw bytes, the JSON document while
# it is parsed and the metric objects built from it until they are handed off. Measured peaks
# (distributions on): 22x for 1,000 jobs x 60 fields, 60x for jobs of 170 one-character fields,
# 125x for such leaves under a long key (each leaf repeats its path in its name; names are cut at
# 512 characters when flattened, so no shape goes far beyond). 128x covers them all.
HELD_BYTES_PER_OBJECT_BYTE = 128
# Per object, whatever its size: the response, the job's event, the Python objects around them.
HELD_BYTES_PER_OBJECT = 16 * 1024
# The default budget: what every handler of a process may hold at once (see docs/operations.md).
DEFAULT_MEMORY_BUDGET_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_READS_IN_HAND = 64
# What the reads in hand may hold at most, raw: 128 objects at the default 1 MiB cap, fewer above.
READS_IN_HAND_BYTES = 128 * 1024 * 1024


def held_cost(size_bytes: int) -> int:
    """The budget an object of ``size_bytes`` takes while it is parsed and its metrics are held."""
    return HELD_BYTES_PER_OBJECT + size_bytes * HELD_BYTES_PER_OBJECT_BYTE


def reads_in_hand(fetch_workers: int, max_object_bytes: int) -> int:
    """How many objects may be read and not yet parsed: twice the fetch pool, within 128 MiB raw.

    Twice the pool keeps it busy while finished reads wait for their batch to parse them.
    """
    return max(1, min(2 * fetch_workers, READS_IN_HAND_BYTES // max(1, max_object_bytes)))


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
    max_records_per_message: int = DEFAULT_MAX_RECORDS_PER_MESSAGE


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
        settings.max_records_per_message,
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
    # Jobs already handed off by an earlier hand-off of this batch (their objects released).
    handed: int = 0
    # Set when a hand-off holding some of this message's jobs failed: the message is retried.
    sink_error: TransientError | None = None
    # Budget bytes held for this message's parsed objects.
    held_bytes: int = 0
    # Gauges left out for a time outside Datadog's window, per reason, of the jobs already handed.
    handed_late: Counter[str] = field(default_factory=Counter)

    @property
    def stalled(self) -> bool:
        """True once the message will be retried whatever else happens: reading more is wasted."""
        return self.sink_error is not None or isinstance(self.error, TransientError)


_Read = tuple[_Work, ObjectRef, Future[bytes]]


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
        budget: MemoryBudget | None = None,
        max_reads_in_hand: int = DEFAULT_MAX_READS_IN_HAND,
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
        self.budget = budget or MemoryBudget(DEFAULT_MEMORY_BUDGET_BYTES)
        # Objects read and not yet parsed, across every batch this handler serves; first come,
        # first served, so a batch waiting for a slot is not overtaken forever by busier ones.
        self._read_slots = FairQuota(max_reads_in_hand)

    def handle(self, messages: Sequence[QueueMessage]) -> BatchResult:
        """Process ``messages``; each ends forwarded, ignored, rejected or retried."""
        work = [self._plan(message) for message in messages]
        now = self.clock()
        pending: deque[_Read] = deque()
        try:
            for item in work:
                for ref in item.refs:
                    self._take_read_slot(pending, work, now)
                    future = self.executor.submit(
                        self.resources.fetch, ref, max_bytes=self.filters.max_object_bytes
                    )
                    pending.append((item, ref, future))
            while pending:
                self._take_in(pending.popleft(), work, now)
            return self._hand_off(work, now)
        finally:
            for _, _, future in pending:
                # Left behind by an error that stops the run; a read still going ends on its own.
                future.cancel()
                self._read_slots.give_back()
            self._give_back(work)

    def unused_field_patterns(self) -> list[str]:
        """The ``FIELDS``/``EXCLUDE_FIELDS`` patterns that matched no field of any job so far."""
        with self._patterns_lock:
            return sorted(self._unused_patterns)

    def _note_fields(self, fields: Sequence[tuple[str, float]]) -> None:
        if self._unused_patterns:
            matched = self.options.patterns_matching(name for name, _ in fields)
            with self._patterns_lock:
                self._unused_patterns -= matched

    def _take_read_slot(self, pending: deque[_Read], work: list[_Work], now: float) -> None:
        """Wait for room to read one more object, parsing this batch's own reads meanwhile."""
        while not self._read_slots.try_take():
            if pending:
                # The oldest read of this batch is parsed: that frees one of its slots.
                self._take_in(pending.popleft(), work, now)
            else:
                # Every slot is another batch's: hold nothing of the budget while waiting for one.
                self._flush(work)
                self._read_slots.take()
                return

    def _take_in(self, read: _Read, work: list[_Work], now: float) -> None:
        """Wait for one read, take its cost from the budget, parse it into the message's jobs."""
        item, ref, future = read
        try:
            try:
                raw = future.result()
            except ConfigurationError:
                raise
            except CloudJobMetricsError as exc:
                self._fail(item, exc, ref)
                return
            except Exception as exc:
                self._unexpected(item, ref, exc)
                return
            if item.stalled:
                return
            cost = self.budget.clamp(held_cost(len(raw)))
            if not self.budget.try_take(cost):
                # Hand off what this batch holds before waiting, so no batch waits holding memory.
                self._flush(work)
                self.budget.take(cost)
            item.held_bytes += cost
            try:
                reports = parse_job_file(
                    raw,
                    max_bytes=self.filters.max_object_bytes,
                    name=ref.key,
                    max_jobs=self.filters.max_jobs_per_object,
                )
                del raw
                for report in reports:
                    item.jobs.append(job_metrics(report, ref, self.options, now=now))
                    self._note_fields(report.fields)
            except ConfigurationError:
                raise
            except CloudJobMetricsError as exc:
                self._fail(item, exc, ref)
            except Exception as exc:
                self._unexpected(item, ref, exc)
        finally:
            self._read_slots.give_back()

    def _unexpected(self, item: _Work, ref: ObjectRef, exc: Exception) -> None:
        # Not a failure we know: keep the message (SQS redrives it after maxReceiveCount)
        # rather than crash the run or drop it.
        log.exception("object.unexpected_error uri=%s", ref.uri, exc_info=exc)
        self._fail(item, AwsUnavailableError(f"unexpected {type(exc).__name__}: {exc}"), ref)

    def _give_back(self, work: Sequence[_Work]) -> None:
        """Return the budget held for ``work``'s parsed objects (handed off, or dropped)."""
        held = 0
        for item in work:
            held += item.held_bytes
            item.held_bytes = 0
        self.budget.give_back(held)

    def _flush(self, work: list[_Work]) -> None:
        """Hand off the jobs parsed so far, to free their memory before this batch waits.

        A message whose early jobs went out and whose later records then fail is retried or
        rejected as usual: the jobs sent are sent again on a retry, the same points (duplicates,
        never losses).
        """
        sending = [item for item in work if item.jobs and not item.stalled]
        for item in work:
            if item.stalled:
                item.jobs.clear()
        if sending:
            parcels = [Parcel(item.message.message_id, tuple(item.jobs)) for item in sending]
            jobs = sum(len(parcel.jobs) for parcel in parcels)
            log.info("sink.early_handoff messages=%d jobs=%d", len(parcels), jobs)
            try:
                refused = self.sink.submit(parcels)
            except TransientError as exc:
                log.warning("sink.handoff_failed messages=%d error=%s", len(sending), exc)
                for item in sending:
                    item.sink_error = exc
            else:
                self._note_refused(sending, refused)
            for item in sending:
                item.handed += len(item.jobs)
                item.handed_late.update(late_gauges(item.jobs))
                item.jobs.clear()
        self._give_back(work)

    @staticmethod
    def _note_refused(items: Sequence[_Work], refused: Mapping[str, str]) -> None:
        for item in items:
            reason = refused.get(item.message.message_id)
            if reason is not None and not isinstance(item.error, TransientError):
                item.error = PayloadRejectedError(f"the intake refused this message's data: {reason}")

    def _plan(self, message: QueueMessage) -> _Work:
        item = _Work(message)
        try:
            records = parse_body(message.body)
        except PermanentError as exc:
            item.error = exc
            return item
        limit = self.filters.max_records_per_message
        if len(records) > limit:
            item.error = EnvelopeError(
                f"the message names {len(records)} records, over the limit of {limit}",
                reason="too-many-records",
            )
            return item
        seen: set[tuple[str, str, str | None, str | None]] = set()
        for record in records:
            if isinstance(record, ObjectRef):
                identity = (record.bucket, record.key, record.version_id, record.etag)
                if identity in seen:
                    # The same object named again: read once, its jobs counted once.
                    continue
                seen.add(identity)
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
        parcels: list[Parcel] = []
        carrying: list[_Work] = []
        for item in work:
            parcel = self._parcel(item)
            if parcel is not None:
                parcels.append(parcel)
                carrying.append(item)
        if parcels:
            try:
                refused = self.sink.submit(parcels)
            except TransientError as exc:
                log.warning("sink.handoff_failed messages=%d error=%s", len(parcels), exc)
                for item in carrying:
                    if item.jobs:
                        # Its jobs wait for the sink: that outranks any verdict of its records.
                        item.sink_error = exc
            else:
                self._note_refused(carrying, refused)
        return BatchResult(tuple(self._verdict(item, now) for item in work))

    def _parcel(self, item: _Work) -> Parcel | None:
        """What ``item`` hands to the sink, or None when it has nothing to hand over yet."""
        if item.stalled:
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

    def _verdict(self, item: _Work, now: float) -> MessageResult:
        message = item.message
        error = item.error
        jobs = item.handed + len(item.jobs)
        # A hand-off that failed with some of the message's jobs outranks everything: deleting or
        # dead-lettering the message now would lose them. Then a transient failure of a record
        # (retrying may still fix the message), then a permanent one.
        cause: TransientError | None = item.sink_error
        if cause is None and isinstance(error, TransientError):
            cause = error
        if cause is not None:
            log.info("message.retry id=%s reason=%s detail=%s", message.message_id, cause.reason, cause)
            return MessageResult(message, Outcome.RETRIED, cause.reason, str(cause))
        if isinstance(error, PermanentError):
            log.warning("message.rejected id=%s reason=%s detail=%s", message.message_id, error.reason, error)
            return MessageResult(message, Outcome.REJECTED, error.reason, str(error), jobs)
        if not jobs:
            reasons = ",".join(sorted({s.reason for s in item.skipped})) or "no-records"
            log.info("message.ignored id=%s reason=%s", message.message_id, reasons)
            return MessageResult(message, Outcome.IGNORED, reasons)
        event_times = [ref.event_time for ref in item.refs if ref.event_time is not None]
        lag = now - min(event_times) if event_times else None
        late = item.handed_late + late_gauges(item.jobs)
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
        return MessageResult(message, Outcome.FORWARDED, jobs=jobs, lag_seconds=lag, late_points=dict(late))


def late_gauges(jobs: Iterable[JobMetrics]) -> Counter[str]:
    """Gauges left out of ``jobs`` because their time is outside Datadog's window, per reason."""
    late: Counter[str] = Counter()
    for job in jobs:
        if job.late_reason is not None:
            late[job.late_reason] += job.late_gauges
    return late
