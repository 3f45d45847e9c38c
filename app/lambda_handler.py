"""AWS Lambda entry point behind an SQS event source mapping with ``ReportBatchItemFailures``.

The same :class:`~app.drain.handler.RecordHandler` as the CLI. Lambda deletes the messages not listed
in ``batchItemFailures``; rejected messages are copied to the dead-letter queue first (then
reported as done), or listed as failures when no DLQ is known or the copy was refused, so SQS
redrives them. When every
record of a batch failed, the handler raises, so the event source mapping backs off. New records
stop being started when the remaining time runs short; the rest are reported as failures.

The sink is probed once per execution environment, before its first batch (and again after a
configuration error): a wrong key, site or URL fails the whole batch, every message listed, none
dead-lettered, instead of emptying the queue into the dead-letter queue.

See https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

from app.aws.resources import CloudResourceHandler
from app.core.envelope import QueueMessage
from app.drain.handler import (
    DEFAULT_MEMORY_BUDGET_BYTES,
    Outcome,
    RecordHandler,
    filters,
    metric_options,
    reads_in_hand,
)
from app.drain.limiter import MemoryBudget
from app.drain.service import Acknowledger
from app.errors import AccessDeniedError, CloudJobMetricsError, ConfigurationError, TransientError
from app.settings import Settings, resolve
from app.sinks.base import Sink
from app.sinks.dogstatsd import MetricSubmitter, StatsdClient

log = logging.getLogger(__name__)

# Leave this much of the invocation for the hand-off and the response.
RESERVE_MILLIS = 5_000
CHUNK = 10
# Chunks handled at once within one invocation (an event holds up to 10,000 records).
CHUNK_CONCURRENCY = 8


class LambdaContext(Protocol):
    """The part of the Lambda context object used here."""

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda stops the invocation."""


class BatchItemFailure(TypedDict):
    """One entry of the partial batch response."""

    itemIdentifier: str


class BatchResponse(TypedDict):
    """The partial batch response Lambda expects."""

    batchItemFailures: list[BatchItemFailure]


class BatchFailedError(TransientError):
    """Every record of the batch failed; raising makes the event source mapping back off."""


class SinkGate:
    """The sink's probe, passed once per execution environment before records are handled.

    Until a probe passes, every invocation probes again; a configuration error met mid-batch
    (the key revoked, say) closes the gate so the next invocation probes first.
    """

    def __init__(self, probe: Callable[[], str | None]) -> None:
        self._probe = probe
        self._lock = threading.Lock()
        self._passed = False

    def problem(self) -> str | None:
        """None once the sink has been found usable, else one line saying why it is not."""
        with self._lock:
            if self._passed:
                return None
            try:
                problem = self._probe()
            except CloudJobMetricsError as exc:
                problem = str(exc)
            self._passed = problem is None
            return problem

    def close(self) -> None:
        """Probe again before the next batch."""
        with self._lock:
            self._passed = False


@dataclass(frozen=True, slots=True)
class LambdaConsumer:
    """The wired collaborators of one Lambda execution environment."""

    handler: RecordHandler
    acknowledger: Acknowledger
    chunk_concurrency: int = CHUNK_CONCURRENCY
    gate: SinkGate | None = None

    def __call__(self, event: Mapping[str, Any], context: LambdaContext) -> BatchResponse:
        """Handle one SQS event; list the messages that must come back.

        Chunks of ten are handled concurrently (up to ``chunk_concurrency`` at a time), so the
        round trips of one chunk's reads, hand-off and dead-lettering overlap with the others';
        a chunk is started only while enough of the invocation remains.
        """
        records = [QueueMessage.from_lambda(raw) for raw in event.get("Records", [])]
        problem = self.gate.problem() if self.gate is not None and records else None
        if problem is not None:
            # Nothing is read, sent or dead-lettered: every message comes back once fixed.
            log.error("lambda.sink_unusable records=%d problem=%s", len(records), problem)
            raise BatchFailedError(f"all {len(records)} records kept: {problem}")
        chunks = [records[start : start + CHUNK] for start in range(0, len(records), CHUNK)]
        slots = threading.BoundedSemaphore(self.chunk_concurrency)
        outcomes: list[Future[list[str]]] = []
        unstarted: list[QueueMessage] = []
        with ThreadPoolExecutor(self.chunk_concurrency, thread_name_prefix="chunk") as pool:
            for index, chunk in enumerate(chunks):
                slots.acquire()
                if context.get_remaining_time_in_millis() < RESERVE_MILLIS:
                    slots.release()
                    unstarted = [message for rest in chunks[index:] for message in rest]
                    log.warning("lambda.out_of_time unstarted=%d", len(unstarted))
                    break
                outcomes.append(pool.submit(self._chunk_failures, chunk, slots))
        failures = [message_id for outcome in outcomes for message_id in outcome.result()]
        failures.extend(message.message_id for message in unstarted)
        if records and len(failures) == len(records):
            raise BatchFailedError(f"all {len(records)} records failed; letting Lambda back off")
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failures]}

    def _chunk_failures(self, chunk: list[QueueMessage], slots: threading.BoundedSemaphore) -> list[str]:
        """Handle one chunk; return the ids of its messages that must come back."""
        try:
            try:
                result = self.handler.handle(chunk)
            except ConfigurationError as exc:
                # The sink or AWS refused us (a revoked key, a denied call): nothing of this chunk
                # was acknowledged or dead-lettered, so all of it comes back.
                log.error("lambda.chunk_failed messages=%d error=%s", len(chunk), exc)
                if self.gate is not None:
                    self.gate.close()
                return [message.message_id for message in chunk]
            try:
                moved = {m.message_id for m in self.acknowledger.dead_letter(result)}
            except AccessDeniedError as exc:
                # Reported as failures, so Lambda does not delete them: SQS redrives them instead.
                log.error(
                    "dead_letter.denied messages=%d error=%s", len(result.with_outcome(Outcome.REJECTED)), exc
                )
                moved = set()
        finally:
            slots.release()
        return [
            r.message.message_id
            for r in result.results
            if r.outcome is Outcome.RETRIED
            or (r.outcome is Outcome.REJECTED and r.message.message_id not in moved)
        ]


def build_consumer(
    settings: Settings,
    *,
    sqs: Any,
    s3: Any,
    statsd: StatsdClient | None = None,
    sink: Sink | None = None,
    executor: ThreadPoolExecutor,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
) -> LambdaConsumer:
    """Wire a consumer from explicit collaborators (the tests use this with the emulator).

    Metrics go to ``sink``, or to DogStatsD through ``statsd``. Distributions are on unless
    ``DISTRIBUTIONS=false``: the Datadog Lambda extension merges points from concurrent execution
    environments, and distributions are the type it keeps whole (see docs/output.md).
    """
    resources = CloudResourceHandler(sqs_client=sqs, s3_client=s3, queue_url=settings.queue_url or "")
    dlq_url = settings.dead_letter_queue_url
    if dlq_url is None and settings.queue_url:
        arn = resources.queue_attributes().dead_letter_queue_arn
        dlq_url = resources.queue_url_for_arn(arn) if arn else None
    if sink is None:
        if statsd is None:
            raise ValueError("build_consumer needs a sink or a DogStatsD client")
        sink = MetricSubmitter(statsd)
    handler = RecordHandler(
        resources=resources,
        sink=sink,
        executor=executor,
        options=metric_options(settings, distributions_by_default=True),
        filters=filters(settings),
        budget=MemoryBudget(memory_budget_bytes),
        max_reads_in_hand=reads_in_hand(settings.fetch_workers, settings.max_object_bytes),
    )
    acknowledger = Acknowledger(
        resources, dead_letter_queue_url=dlq_url, max_backoff_seconds=settings.max_backoff_seconds
    )
    return LambdaConsumer(handler, acknowledger, gate=SinkGate(sink.probe))


def lambda_memory_budget(memory_size_mb: str | None) -> int:
    """The objects' memory budget in a function of ``memory_size_mb`` (Lambda sets the variable).

    A third of the function's memory, at most the drain's default: the rest is the runtime, the
    clients, the event itself (up to 10,000 bodies) and the reads in hand.
    """
    try:
        memory = int(memory_size_mb or "0") * 1024 * 1024
    except ValueError:
        memory = 0
    if memory <= 0:
        return DEFAULT_MEMORY_BUDGET_BYTES
    return max(16 * 1024 * 1024, min(DEFAULT_MEMORY_BUDGET_BYTES, memory // 3))


@functools.cache
def _default_consumer() -> LambdaConsumer:
    # Built on the first invocation, not at import, and reused while the environment is warm.
    from app.aws.clients import aws_clients
    from app.sinks.factory import build_sink

    settings = resolve({}, os.environ)
    sqs, s3 = aws_clients(settings)
    # SINK=api posts to Datadog's HTTP API from the function itself (no extension needed), and a
    # message is then acknowledged only after the intake's 2xx.
    consumer = build_consumer(
        settings,
        sqs=sqs,
        s3=s3,
        sink=build_sink(settings),
        executor=ThreadPoolExecutor(settings.fetch_workers),
        memory_budget_bytes=lambda_memory_budget(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")),
    )
    # The modules, service models and clients live as long as the environment: keep the
    # collector from scanning them again in every invocation (as the CLI drain does).
    gc.freeze()
    return consumer


def handler(event: Mapping[str, Any], context: LambdaContext) -> BatchResponse:
    """The Lambda handler: ``app.lambda_handler.handler``."""
    return _default_consumer()(event, context)
