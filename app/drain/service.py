"""The queue drain: receive loops running ahead of batch workers, one record handler, acknowledgements.

A message is deleted only after its metrics were handed to the agent; a rejected one is copied to
the dead-letter queue first; a retried one gets an exponential visibility backoff. A heartbeat
extends the visibility of messages held longer than half their timeout. All durations are seconds.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass

from app.aws.operations import approximate_count
from app.aws.resources import CloudResourceHandler
from app.core.envelope import QueueMessage
from app.drain.handler import (
    DEFAULT_MEMORY_BUDGET_BYTES,
    BatchResult,
    Outcome,
    RecordHandler,
    filters,
    metric_options,
    reads_in_hand,
)
from app.drain.limiter import BATCH, InFlightLimiter, MemoryBudget
from app.errors import (
    AccessDeniedError,
    CloudJobMetricsError,
    ConfigurationError,
    EndpointUnreachableError,
    TransientError,
)
from app.settings import Settings
from app.sinks.base import Sink
from app.sinks.dogstatsd import MetricSubmitter, StatsdClient

log = logging.getLogger(__name__)

RETRY_BASE_SECONDS = 10
MAX_RECEIVE_FAILURES = 5
# What the objects read and the metrics built from them may hold at once, whatever the shapes
# (the record handler's MemoryBudget, costed per object after reading it). Messages in flight add
# their bodies (at most MAX_IN_FLIGHT_MESSAGES x 256 KB) and the reads in hand (at most 128 MiB raw,
# see reads_in_hand); with the defaults the drain's peak RSS stays under 768 MiB (docs/operations.md).
IN_FLIGHT_MEMORY_BYTES = DEFAULT_MEMORY_BUDGET_BYTES


@dataclass(slots=True)
class Summary:
    """What a run did; the CLI prints it as the last line of stdout."""

    received: int = 0
    forwarded: int = 0
    ignored: int = 0
    rejected: int = 0
    retried: int = 0
    dead_lettered: int = 0
    jobs: int = 0
    seconds: float = 0.0
    # Deletes SQS refused after retries: those messages come back and are forwarded again.
    delete_failed: int = 0
    # --max-runtime: whether the run stopped receiving at its deadline, and then the queue's
    # ApproximateNumberOfMessages read once after settling (None when not stopped at the deadline,
    # or when that read failed): the next run's work.
    stopped_at_deadline: bool = False
    left_visible: int | None = None

    def add(self, result: BatchResult, *, dead_lettered: int, delete_failed: int = 0) -> None:
        """Count one settled batch."""
        counts = result.counts()
        self.received += len(result.results)
        self.forwarded += counts[Outcome.FORWARDED]
        self.ignored += counts[Outcome.IGNORED]
        self.rejected += counts[Outcome.REJECTED]
        self.retried += counts[Outcome.RETRIED]
        self.dead_lettered += dead_lettered
        self.delete_failed += delete_failed
        self.jobs += sum(r.jobs for r in result.results if r.outcome is Outcome.FORWARDED)

    def to_json(self) -> str:
        """One line of JSON."""
        return json.dumps({**asdict(self), "seconds": round(self.seconds, 3)}, sort_keys=False)

    @property
    def all_settled(self) -> bool:
        """True when every message was forwarded or ignored and deleted (exit code 0)."""
        return self.rejected == 0 and self.retried == 0 and self.delete_failed == 0


def retry_delay_seconds(receive_count: int, *, cap_seconds: int) -> int:
    """Exponential backoff keyed on how often SQS delivered the message: 10, 20, 40 … capped."""
    exponent = max(0, min(receive_count - 1, 16))
    return int(min(cap_seconds, RETRY_BASE_SECONDS * 2**exponent))


class Heartbeat:
    """Extends the visibility of messages held longer than half their visibility timeout."""

    def __init__(
        self,
        resources: CloudResourceHandler,
        *,
        visibility_timeout_seconds: int,
        clock: Callable[[], float] = time.monotonic,
        on_denied: Callable[[AccessDeniedError], None] | None = None,
    ) -> None:
        self.resources = resources
        self.visibility_timeout_seconds = visibility_timeout_seconds
        self.clock = clock
        self.on_denied = on_denied
        self._held: dict[str, tuple[QueueMessage, float]] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def hold(self, messages: Sequence[QueueMessage]) -> None:
        """Start watching ``messages`` (just received)."""
        now = self.clock()
        with self._lock:
            for message in messages:
                self._held[message.receipt_handle] = (message, now)

    def release(self, messages: Sequence[QueueMessage]) -> None:
        """Stop watching ``messages`` (settled)."""
        with self._lock:
            for message in messages:
                self._held.pop(message.receipt_handle, None)

    def due(self) -> list[QueueMessage]:
        """Messages whose visibility was last set more than half a timeout ago."""
        limit = self.clock() - self.visibility_timeout_seconds / 2
        with self._lock:
            return [message for message, since in self._held.values() if since <= limit]

    def beat(self) -> int:
        """Extend every due message by a full visibility timeout; return how many."""
        due = self.due()
        if not due:
            return 0
        now = self.clock()
        try:
            extended = self.resources.change_visibility(
                [(message, self.visibility_timeout_seconds) for message in due]
            )
        except AccessDeniedError as exc:
            # Not an outage: the run stops, and the messages in hand come back when their
            # visibility ends.
            if self.on_denied is not None:
                self.on_denied(exc)
            return 0
        except CloudJobMetricsError as exc:
            log.warning("heartbeat.failed messages=%d error=%s", len(due), exc)
            return 0
        with self._lock:
            for message in due:
                if message.receipt_handle in self._held:
                    self._held[message.receipt_handle] = (message, now)
        log.info("heartbeat.extended messages=%d seconds=%d", extended, self.visibility_timeout_seconds)
        return extended

    def _run(self) -> None:
        interval = max(0.5, self.visibility_timeout_seconds / 6)
        while not self._stopped.wait(interval):
            self.beat()


@dataclass(frozen=True, slots=True)
class Settlement:
    """What settling a batch did beyond deleting: messages moved to the DLQ, deletes SQS refused."""

    dead_lettered: int = 0
    delete_failures: int = 0


class Acknowledger:
    """Settles a batch on the queue: delete, dead-letter, or back off."""

    def __init__(
        self, resources: CloudResourceHandler, *, dead_letter_queue_url: str | None, max_backoff_seconds: int
    ) -> None:
        self.resources = resources
        self.dead_letter_queue_url = dead_letter_queue_url
        self.max_backoff_seconds = max_backoff_seconds

    def dead_letter(self, result: BatchResult) -> list[QueueMessage]:
        """Copy every rejected message to the DLQ; return the ones now safe to delete.

        Raises :class:`~app.errors.AccessDeniedError` when SendMessage is refused: the
        remaining rejected messages would fail the same way, and none of them is deleted.
        """
        moved: list[QueueMessage] = []
        rejected = result.with_outcome(Outcome.REJECTED)
        if rejected and self.dead_letter_queue_url is None:
            log.warning(
                "dead_letter.unavailable messages=%d: no dead-letter queue configured or in the "
                "RedrivePolicy; they stay on the queue",
                len(rejected),
            )
            return moved
        for item in rejected:
            assert self.dead_letter_queue_url is not None
            try:
                self.resources.send_to_dead_letter_queue(
                    self.dead_letter_queue_url, item.message, reason=item.reason, detail=item.detail
                )
            except AccessDeniedError:
                raise
            except CloudJobMetricsError as exc:
                log.warning("dead_letter.failed id=%s error=%s", item.message.message_id, exc)
                continue
            moved.append(item.message)
        return moved

    def settle(self, result: BatchResult) -> Settlement:
        """Delete what is done, dead-letter the rejected, back off the retried.

        An access-denied answer on any of these calls raises
        :class:`~app.errors.AccessDeniedError`; what was not deleted comes back after its
        visibility timeout (forwarded messages are sent again: duplicates, never losses).
        """
        moved = self.dead_letter(result)
        done = [r.message for r in result.results if r.outcome in (Outcome.FORWARDED, Outcome.IGNORED)]
        deletion = self.resources.delete(done + moved)
        for message_id, reason in deletion.failed.items():
            # The message comes back and is processed again: a harmless duplicate.
            log.warning("message.delete_failed id=%s reason=%s", message_id, reason)
        retried = result.with_outcome(Outcome.RETRIED)
        if retried:
            try:
                self.resources.change_visibility(
                    [
                        (
                            r.message,
                            retry_delay_seconds(
                                r.message.receive_count, cap_seconds=self.max_backoff_seconds
                            ),
                        )
                        for r in retried
                    ]
                )
            except AccessDeniedError:
                raise
            except CloudJobMetricsError as exc:
                log.warning("message.backoff_failed messages=%d error=%s", len(retried), exc)
        return Settlement(dead_lettered=len(moved), delete_failures=len(deletion.failed))


@dataclass(frozen=True, slots=True)
class _Run:
    """What the receive loops and the batch workers of one run share."""

    handler: RecordHandler
    acknowledger: Acknowledger
    heartbeat: Heartbeat
    limiter: InFlightLimiter
    workers: Executor
    stop: threading.Event
    follow: bool


class Forwarder:
    """Drains the queue as a pipeline: receives run ahead while earlier batches are handled.

    ``settings.concurrency`` receive loops each ask for ten messages whenever the
    :class:`~app.drain.limiter.InFlightLimiter` has room, hold them on the heartbeat and pass them
    to a pool of batch workers, then receive again at once. A batch worker fetches the batch's
    objects (on the shared pool of ``settings.fetch_workers``), hands the metrics off and settles
    the batch; only then are the messages released. So receives, fetches, hand-offs and deletes of
    different batches overlap, and the limiter sizes how much is in flight from measured latency.
    """

    def __init__(
        self,
        *,
        resources: CloudResourceHandler,
        sink: Sink,
        settings: Settings,
        progress: Callable[[Summary], None] | None = None,
    ) -> None:
        self.resources = resources
        self.sink = sink
        self.settings = settings
        self.progress = progress
        self.summary = Summary()
        self._summary_lock = threading.Lock()
        # Set while receives come back full, so the extra loops join in; cleared when the queue
        # runs dry, so an idle follower costs one long poll at a time (3 calls a minute).
        self._busy = threading.Event()
        # Set by the first empty long poll of a drain: no message was visible for a whole poll,
        # so no loop receives again; what is in flight is finished.
        self._drained = threading.Event()
        self._failures: list[BaseException] = []
        self._started = time.monotonic()
        self._deadline: float | None = None
        # Set when the deadline (not a signal or a failure) stopped the run.
        self._deadline_reached = threading.Event()

    def max_in_flight(self) -> int:
        """The limiter's ceiling: the configured maximum (objects are bounded by the memory budget)."""
        return max(BATCH, self.settings.max_in_flight_messages)

    def run(self, *, follow: bool = False, stop: threading.Event | None = None) -> Summary:
        """Drain until the queue is empty (or forever with ``follow``), ``stop`` is set, or the deadline.

        The deadline is ``settings.max_runtime_seconds`` from now (a drain only: ``follow``
        ignores it). At the deadline the run stops receiving, as on SIGTERM, and settles what it holds.
        """
        stop = stop or threading.Event()
        started = self._started = time.monotonic()
        runtime = None if follow else self.settings.max_runtime_seconds
        self._deadline = None if runtime is None else started + runtime
        try:
            attributes = self.resources.queue_attributes()
        except EndpointUnreachableError as exc:
            raise ConfigurationError(f"cannot reach the SQS endpoint: {exc}") from exc
        visibility = self.settings.visibility_timeout_seconds or attributes.visibility_timeout_seconds
        dlq_url = self.settings.dead_letter_queue_url
        if dlq_url is None and attributes.dead_letter_queue_arn:
            dlq_url = self.resources.queue_url_for_arn(attributes.dead_letter_queue_arn)
        acknowledger = Acknowledger(
            self.resources,
            dead_letter_queue_url=dlq_url,
            max_backoff_seconds=self.settings.max_backoff_seconds,
        )
        maximum = self.max_in_flight()
        limiter = InFlightLimiter(
            initial=min(maximum, self.settings.concurrency * BATCH),
            maximum=maximum,
            visibility_timeout_seconds=visibility,
        )
        with (
            ThreadPoolExecutor(self.settings.fetch_workers, thread_name_prefix="fetch") as pool,
            ThreadPoolExecutor(maximum // BATCH + 1, thread_name_prefix="batch") as workers,
            Heartbeat(
                self.resources,
                visibility_timeout_seconds=visibility,
                on_denied=lambda exc: self._abort(exc, stop),
            ) as heartbeat,
        ):
            handler = self._record_handler(pool)
            run = _Run(handler, acknowledger, heartbeat, limiter, workers, stop, follow)
            loops = [
                threading.Thread(target=self._loop_guarded, args=(run, index), name=f"receive-{index}")
                for index in range(self.settings.concurrency)
            ]
            timer = self._deadline_timer(stop)
            for thread in loops:
                thread.start()
            for thread in loops:
                thread.join()
            if timer is not None:
                timer.cancel()
            # Everything received is settled before the heartbeat stops covering it.
            workers.shutdown(wait=True)
        unused = handler.unused_field_patterns()
        if unused and self.summary.jobs:
            log.warning(
                "fields.pattern_unused patterns=%s: no field of the %d jobs forwarded matched them",
                ",".join(unused),
                self.summary.jobs,
            )
        if self._failures:
            raise self._failures[0]
        if self._deadline_reached.is_set():
            self.summary.stopped_at_deadline = True
            self.summary.left_visible = self._visible_messages()
            log.info(
                "drain.deadline max_runtime_seconds=%s received=%d left_visible=%s: the rest is the "
                "next run's work",
                self.settings.max_runtime_seconds,
                self.summary.received,
                self.summary.left_visible,
            )
        self.summary.seconds = time.monotonic() - started
        return self.summary

    def _deadline_timer(self, stop: threading.Event) -> threading.Timer | None:
        """Start the timer that ends receiving at the deadline, if there is one."""
        if self._deadline is None:
            return None

        def reached() -> None:
            if not stop.is_set() and not self._drained.is_set():
                self._deadline_reached.set()
                stop.set()
                self._busy.set()

        timer = threading.Timer(max(0.0, self._deadline - time.monotonic()), reached)
        timer.daemon = True
        timer.name = "deadline"
        timer.start()
        return timer

    def _visible_messages(self) -> int | None:
        """The queue's ``ApproximateNumberOfMessages``, or None when it cannot be read."""
        try:
            return approximate_count(self.resources.sqs, self.resources.queue_url)
        except CloudJobMetricsError as exc:
            log.warning("drain.visible_unknown error=%s", exc)
            return None

    def _record_handler(self, pool: Executor) -> RecordHandler:
        return RecordHandler(
            resources=self.resources,
            sink=self.sink,
            executor=pool,
            options=metric_options(self.settings),
            filters=filters(self.settings),
            budget=MemoryBudget(IN_FLIGHT_MEMORY_BYTES),
            max_reads_in_hand=reads_in_hand(self.settings.fetch_workers, self.settings.max_object_bytes),
        )

    def _abort(self, exc: BaseException, stop: threading.Event) -> None:
        # Surfaced by run(); every loop stops receiving, batches in hand are finished.
        self._failures.append(exc)
        stop.set()
        self._busy.set()

    def _loop_guarded(self, run: _Run, index: int) -> None:
        try:
            self._loop(run, index)
        except BaseException as exc:
            self._abort(exc, run.stop)

    def _loop(self, run: _Run, index: int) -> None:
        follow, stop = run.follow, run.stop
        wait_seconds = self.settings.receive_wait_seconds(follow=follow)
        receive_failures = 0
        # A short poll (WAIT_TIME_SECONDS=0) asks only some SQS servers and can come back empty
        # while messages are visible: a drain confirms "empty" with one long poll before it ends.
        confirming = False
        while not stop.is_set() and not self._drained.is_set():
            if follow and index > 0 and not self._busy.wait(timeout=1.0):
                continue
            if not run.limiter.acquire(BATCH, timeout=0.5):
                continue
            wait = max(1, wait_seconds) if confirming else wait_seconds
            if self._deadline is not None:
                # A long poll does not outlast the deadline by more than a second.
                wait = min(wait, max(1, math.ceil(self._deadline - time.monotonic())))
            try:
                messages = self.resources.receive(
                    wait_time_seconds=wait,
                    visibility_timeout_seconds=self.settings.visibility_timeout_seconds,
                )
            except TransientError as exc:
                run.limiter.release(BATCH)
                run.limiter.congested()
                receive_failures += 1
                if receive_failures >= MAX_RECEIVE_FAILURES and not follow:
                    raise ConfigurationError(
                        f"ReceiveMessage failed {receive_failures} times in a row: {exc}"
                    ) from exc
                delay = min(20.0, 0.5 * 2**receive_failures)
                log.warning("receive.failed attempt=%d retry_in=%.1fs error=%s", receive_failures, delay, exc)
                stop.wait(delay)
                continue
            except BaseException:
                run.limiter.release(BATCH)
                raise
            receive_failures = 0
            run.limiter.release(BATCH - len(messages))
            if not messages:
                self._busy.clear()
                if not follow:
                    confirming = not confirming and wait_seconds == 0
                    if not confirming:
                        self._drained.set()
                        return
                continue
            confirming = False
            if len(messages) >= BATCH:
                self._busy.set()
            run.heartbeat.hold(messages)
            try:
                run.workers.submit(self._settle_guarded, run, messages, time.monotonic())
            except BaseException:
                run.heartbeat.release(messages)
                run.limiter.release(len(messages))
                raise

    def _settle_guarded(self, run: _Run, messages: list[QueueMessage], received_at: float) -> None:
        try:
            self._settle(run, messages, received_at)
        except BaseException as exc:
            self._abort(exc, run.stop)

    def _settle(self, run: _Run, messages: list[QueueMessage], received_at: float) -> None:
        """Handle one received batch and settle it; runs on a batch worker."""
        try:
            result = run.handler.handle(messages)
            settled = run.acknowledger.settle(result)
        finally:
            run.heartbeat.release(messages)
            run.limiter.release(len(messages))
        if result.with_outcome(Outcome.RETRIED):
            run.limiter.congested()
        else:
            run.limiter.observe(time.monotonic() - received_at, len(messages))
        if self.settings.self_metrics:
            self.sink.record_health(
                result.health(dead_lettered=settled.dead_lettered, delete_failures=settled.delete_failures)
            )
        with self._summary_lock:
            self.summary.add(
                result, dead_lettered=settled.dead_lettered, delete_failed=settled.delete_failures
            )
            snapshot = Summary(**asdict(self.summary))
        snapshot.seconds = time.monotonic() - self._started
        if self.progress is not None:
            self.progress(snapshot)


def drain_queue(
    settings: Settings,
    *,
    sqs: object,
    s3: object,
    statsd: StatsdClient | None = None,
    sink: Sink | None = None,
    follow: bool = False,
    stop: threading.Event | None = None,
    progress: Callable[[Summary], None] | None = None,
) -> Summary:
    """Drain ``settings.queue_url`` with the given clients: the public entry point for code.

    Metrics go to ``sink``, or to DogStatsD through ``statsd`` (one of the two is required).
    """
    if not settings.queue_url:
        raise ConfigurationError("no queue URL: pass --queue-url or set SQS_QUEUE_URL")
    if sink is None:
        if statsd is None:
            raise ConfigurationError("drain_queue needs a sink or a DogStatsD client")
        sink = MetricSubmitter(statsd)
    resources = CloudResourceHandler(sqs_client=sqs, s3_client=s3, queue_url=settings.queue_url)  # type: ignore[arg-type]
    forwarder = Forwarder(resources=resources, sink=sink, settings=settings, progress=progress)
    return forwarder.run(follow=follow, stop=stop)
