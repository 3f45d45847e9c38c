"""The record handler shared by every run mode: a batch of SQS messages in, one verdict each out.

Each message is tried on its own; its records' objects are fetched concurrently; everything that
is valid is handed to the agent in one flush; the verdicts are collected into a
:class:`BatchResult`. Acknowledging (delete, dead-letter, backoff, or Lambda's
``batchItemFailures``) is the caller's job, so no message is deleted here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from enum import StrEnum

from app.aws.resources import CloudResourceHandler
from app.core.envelope import ObjectRef, QueueMessage, Skipped, parse_body
from app.core.metadata import parse_job_metadata
from app.core.metrics import Event, Health, JobMetrics, MetricOptions, job_metrics, rejection_event
from app.errors import (
    AwsUnavailableError,
    BucketNotAllowedError,
    CloudJobMetricsError,
    ConfigurationError,
    PermanentError,
    TransientError,
)
from app.sinks.dogstatsd import MetricSubmitter

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


@dataclass(frozen=True, slots=True)
class MessageResult:
    """One message's verdict, with a reason code and detail when it was not forwarded."""

    message: QueueMessage
    outcome: Outcome
    reason: str = ""
    detail: str = ""
    jobs: int = 0
    lag_seconds: float | None = None


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
        return Health(self.counts(), failures, dead_lettered, max(lags) if lags else None, delete_failures)

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
        submitter: MetricSubmitter,
        executor: Executor,
        options: MetricOptions,
        filters: Filters,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.resources = resources
        self.submitter = submitter
        self.executor = executor
        self.options = options
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
                report = parse_job_metadata(raw, max_bytes=self.filters.max_object_bytes)
                item.jobs.append(job_metrics(report, ref, self.options, now=now))
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
        jobs: list[JobMetrics] = []
        events: list[Event] = []
        for item in work:
            if isinstance(item.error, TransientError):
                continue
            # The valid records of a rejected message are sent too: duplicates on a redrive
            # are harmless (same timestamps and aggregation key), lost metrics are not.
            jobs.extend(item.jobs)
            if isinstance(item.error, PermanentError):
                events.append(
                    rejection_event(
                        item.failed_ref,
                        item.error.reason,
                        str(item.error),
                        self.options,
                        message_id=item.message.message_id,
                    )
                )
        agent_error: TransientError | None = None
        if jobs or events:
            try:
                self.submitter.submit(jobs, events)
            except TransientError as exc:
                agent_error = exc
                log.warning("agent.handoff_failed messages=%d error=%s", len(work), exc)
        return BatchResult(tuple(self._verdict(item, agent_error, now) for item in work))

    def _verdict(self, item: _Work, agent_error: TransientError | None, now: float) -> MessageResult:
        message = item.message
        error = item.error
        if isinstance(error, PermanentError):
            log.warning("message.rejected id=%s reason=%s detail=%s", message.message_id, error.reason, error)
            return MessageResult(message, Outcome.REJECTED, error.reason, str(error), len(item.jobs))
        if isinstance(error, TransientError) or (agent_error is not None and item.jobs):
            cause = error or agent_error
            assert cause is not None
            log.info("message.retry id=%s reason=%s detail=%s", message.message_id, cause.reason, cause)
            return MessageResult(message, Outcome.RETRIED, cause.reason, str(cause))
        if not item.jobs:
            reasons = ",".join(sorted({s.reason for s in item.skipped})) or "no-records"
            log.info("message.ignored id=%s reason=%s", message.message_id, reasons)
            return MessageResult(message, Outcome.IGNORED, reasons)
        event_times = [ref.event_time for ref in item.refs if ref.event_time is not None]
        lag = now - min(event_times) if event_times else None
        return MessageResult(message, Outcome.FORWARDED, jobs=len(item.jobs), lag_seconds=lag)
