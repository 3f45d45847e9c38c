"""The record handler's verdicts and its memory bounds, with in-memory objects and sinks.

A failed hand-off outranks every other verdict of a message; a message's records are capped and a
record named twice is read once; the memory budget is never exceeded, and a batch that finds it
spent hands off what it holds before it waits.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from app.core.envelope import ObjectRef, QueueMessage
from app.core.metrics import Health, MetricOptions
from app.drain.handler import Filters, Outcome, RecordHandler, held_cost, reads_in_hand
from app.drain.limiter import MemoryBudget
from app.drain.service import Acknowledger
from app.errors import AgentUnavailableError, AwsUnavailableError
from app.lambda_handler import LambdaConsumer, lambda_memory_budget
from app.local.notifications import s3_event_record, s3_notification
from app.sinks.base import Parcel

NOW = time.time()


def job(result: int) -> bytes:
    """A valid job file identified by ``job_result``."""
    return json.dumps({"job_success": True, "job_result": result, "timestamp": NOW}).encode()


INVALID = b'{"job_success": "maybe"}'


@dataclass
class MemoryObjects:
    """Objects by key; a key in ``failing`` answers like a throttled S3. Counts every read."""

    objects: dict[str, bytes] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    reads: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fetch(self, ref: ObjectRef, *, max_bytes: int) -> bytes:
        """The object's bytes, or a transient error for a failing key."""
        with self.lock:
            self.reads[ref.key] += 1
        if ref.key in self.failing:
            raise AwsUnavailableError(f"SlowDown on {ref.key}")
        return self.objects[ref.key]


@dataclass
class MemorySink:
    """Takes parcels (or fails while ``down``); notes the budget held at every hand-off."""

    budget: MemoryBudget | None = None
    down: bool = False
    submits: list[list[Parcel]] = field(default_factory=list)
    held_at_submit: list[int] = field(default_factory=list)

    def submit(self, parcels: Sequence[Parcel]) -> Mapping[str, str]:
        """Record the hand-off; raise as an agent that is away would."""
        if self.budget is not None:
            self.held_at_submit.append(self.budget.held_bytes)
        if self.down:
            raise AgentUnavailableError("no agent on the socket")
        self.submits.append(list(parcels))
        return {}

    def record_health(self, health: Health) -> None:
        """Not looked at here."""

    def probe(self) -> str | None:
        """Always reachable."""
        return None

    def close(self) -> None:
        """Nothing to release."""

    def job_results(self) -> list[float]:
        """Every ``job_result`` gauge handed off, in order."""
        return [
            gauge.value
            for parcels in self.submits
            for parcel in parcels
            for metrics in parcel.jobs
            for gauge in metrics.gauges
            if gauge.name.endswith(".job_result")
        ]

    def events_titled(self, title: str) -> int:
        """How many extra events (rejections) with ``title`` were handed off."""
        return sum(1 for parcels in self.submits for p in parcels for e in p.events if e.title == title)


def message(message_id: str, *keys: str) -> QueueMessage:
    """One SQS message whose notification names ``keys`` in bucket ``b``."""
    records = [s3_event_record("b", key, size=None, event_time=NOW) for key in keys]
    return QueueMessage(message_id, f"rh-{message_id}", s3_notification(*records))


def wait_until(condition: Callable[[], bool], timeout_seconds: float = 2.0) -> bool:
    """Poll ``condition`` until it holds or the time is up."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def handler(
    objects: MemoryObjects, sink: MemorySink, *, budget: MemoryBudget | None = None, **filters: Any
) -> RecordHandler:
    """A record handler over ``objects`` and ``sink`` with a small thread pool."""
    return RecordHandler(
        resources=objects,  # type: ignore[arg-type]
        sink=sink,
        executor=ThreadPoolExecutor(8),
        options=MetricOptions(),
        filters=Filters(**filters),
        budget=budget,
        max_reads_in_hand=4,
    )


def test_valid_and_invalid_records_with_the_agent_down_are_retried_not_dead_lettered() -> None:
    """One valid and one invalid record, the hand-off failing: retried, so the valid job is not lost."""
    objects = MemoryObjects({"ok.json": job(1), "bad.json": INVALID})
    sink = MemorySink(down=True)

    (result,) = handler(objects, sink).handle([message("m1", "ok.json", "bad.json")]).results

    assert result.outcome is Outcome.RETRIED
    assert result.reason == "agent-unavailable"


def test_valid_and_invalid_records_with_the_agent_up_are_rejected_after_the_valid_job_went_out() -> None:
    """With the hand-off taken, the same message is rejected, its valid job and the rejection sent."""
    objects = MemoryObjects({"ok.json": job(1), "bad.json": INVALID})
    sink = MemorySink()

    (result,) = handler(objects, sink).handle([message("m1", "ok.json", "bad.json")]).results

    assert (result.outcome, result.reason, result.jobs) == (Outcome.REJECTED, "invalid-field", 1)
    assert sink.job_results() == [1.0]
    assert sink.events_titled("job metadata rejected") == 1


def test_a_transient_and_a_permanent_failure_in_one_message_retry_it() -> None:
    """A throttled read outranks an invalid object in the same message: retried, nothing sent."""
    objects = MemoryObjects({"bad.json": INVALID, "slow.json": job(2)}, failing={"slow.json"})
    sink = MemorySink()

    (result,) = handler(objects, sink).handle([message("m1", "bad.json", "slow.json")]).results

    assert (result.outcome, result.reason) == (Outcome.RETRIED, "aws-unavailable")
    assert sink.job_results() == []


def test_a_failed_hand_off_leaves_a_wholly_invalid_message_rejected() -> None:
    """A message with no valid job holds no data for the sink: it is dead-lettered with its reason."""
    objects = MemoryObjects({"bad.json": INVALID})

    (result,) = handler(objects, MemorySink(down=True)).handle([message("m1", "bad.json")]).results

    assert (result.outcome, result.reason) == (Outcome.REJECTED, "invalid-field")


def test_a_record_named_many_times_in_one_message_is_read_once_and_counted_once() -> None:
    """950 records naming the same object: one read, one job forwarded."""
    objects = MemoryObjects({"same.json": job(7)})
    sink = MemorySink()
    body = message("m1", *["same.json"] * 950)

    (result,) = handler(objects, sink, max_records_per_message=1000).handle([body]).results

    assert (result.outcome, result.jobs) == (Outcome.FORWARDED, 1)
    assert objects.reads == Counter({"same.json": 1})
    assert sink.job_results() == [7.0]


def test_a_message_over_the_record_cap_is_rejected_unread() -> None:
    """101 records against the default cap of 100: rejected as too-many-records, no object read."""
    objects = MemoryObjects({f"{n}.json": job(n) for n in range(101)})

    (result,) = (
        handler(objects, MemorySink()).handle([message("m1", *(f"{n}.json" for n in range(101)))]).results
    )

    assert (result.outcome, result.reason) == (Outcome.REJECTED, "too-many-records")
    assert "101 records, over the limit of 100" in result.detail
    assert objects.reads == Counter()


def test_a_small_budget_is_never_exceeded_and_every_job_still_goes_out() -> None:
    """A budget of three objects over 30 of them: early hand-offs, the budget never exceeded, all sent."""
    objects = MemoryObjects({f"{n}.json": job(n) for n in range(30)})
    budget = MemoryBudget(3 * held_cost(len(job(10))))
    sink = MemorySink(budget)
    messages = [
        message(f"m{n}", f"{3 * n}.json", f"{3 * n + 1}.json", f"{3 * n + 2}.json") for n in range(10)
    ]

    results = handler(objects, sink, budget=budget).handle(messages).results

    assert [r.outcome for r in results] == [Outcome.FORWARDED] * 10
    assert [r.jobs for r in results] == [3] * 10
    assert sorted(sink.job_results()) == [float(n) for n in range(30)]
    assert len(sink.submits) > 1
    assert budget.peak_bytes <= budget.total_bytes
    assert budget.held_bytes == 0


def test_a_failed_early_hand_off_retries_the_messages_it_carried() -> None:
    """When a hand-off made to free memory fails, the messages it carried are retried, none rejected."""
    objects = MemoryObjects({f"{n}.json": job(n) for n in range(6)})
    budget = MemoryBudget(2 * held_cost(len(job(5))))
    sink = MemorySink(budget, down=True)

    results = (
        handler(objects, sink, budget=budget)
        .handle([message("m1", *(f"{n}.json" for n in range(6)))])
        .results
    )

    assert [(r.outcome, r.reason) for r in results] == [(Outcome.RETRIED, "agent-unavailable")]
    assert budget.held_bytes == 0


def test_batches_sharing_a_spent_budget_all_finish() -> None:
    """Eight batches at once on a budget that fits two objects: no batch waits forever, every job sent."""
    objects = MemoryObjects({f"{n}.json": job(n) for n in range(80)})
    budget = MemoryBudget(2 * held_cost(len(job(10))))
    sink = MemorySink()
    record_handler = handler(objects, sink, budget=budget)
    batches = [[message(f"m{b}-{n}", f"{10 * b + n}.json") for n in range(10)] for b in range(8)]

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(record_handler.handle, batches, timeout=30))

    assert all(r.outcome is Outcome.FORWARDED for batch in outcomes for r in batch.results)
    assert sorted(sink.job_results()) == [float(n) for n in range(80)]
    assert budget.peak_bytes <= budget.total_bytes
    assert budget.held_bytes == 0


def test_budget_take_waits_for_a_give_back() -> None:
    """take() blocks while the budget is spent and returns once another thread gives bytes back."""
    budget = MemoryBudget(100)
    assert budget.try_take(80)
    assert not budget.try_take(30)
    taken = threading.Event()

    def take() -> None:
        budget.take(30)
        taken.set()

    thread = threading.Thread(target=take)
    thread.start()
    assert not taken.wait(0.2)
    budget.give_back(80)
    assert taken.wait(2)
    thread.join()
    assert budget.held_bytes == 30


def test_budget_serves_waiters_first_come_first_served() -> None:
    """While a take waits, a smaller cost that would fit is refused; waiters are served in order."""
    budget = MemoryBudget(100)
    assert budget.try_take(60)
    order: list[str] = []

    def take(name: str, cost: int) -> None:
        budget.take(cost)
        order.append(name)

    big = threading.Thread(target=take, args=("big", 100))
    big.start()
    assert wait_until(lambda: budget.waiting == 1)
    small = threading.Thread(target=take, args=("small", 10))
    small.start()
    assert wait_until(lambda: budget.waiting == 2)

    assert not budget.try_take(10)  # it fits, but two takes wait ahead of it
    budget.give_back(60)
    big.join(2)
    assert order == ["big"]
    budget.give_back(100)
    small.join(2)
    assert order == ["big", "small"]
    assert (budget.held_bytes, budget.waiting) == (10, 0)


def test_an_object_costing_the_whole_budget_is_not_starved_by_steady_small_traffic() -> None:
    """Six threads keep handing small batches while one batch needs the whole budget: it finishes."""
    small_files = {f"s{n}.json": job(n) for n in range(6)}
    large = json.dumps({"job_success": True, "job_result": -1, "timestamp": NOW, "pad": "x" * 4000}).encode()
    objects = MemoryObjects({**small_files, "large.json": large})
    budget = MemoryBudget(4 * held_cost(len(job(1))))
    assert held_cost(len(large)) > budget.total_bytes
    record_handler = handler(objects, MemorySink(), budget=budget)
    stop = threading.Event()

    def small_traffic(worker: int) -> None:
        while not stop.is_set():
            record_handler.handle([message(f"w{worker}", f"s{worker}.json")])

    workers = [threading.Thread(target=small_traffic, args=(n,)) for n in range(6)]
    for worker in workers:
        worker.start()
    results: list[Any] = []
    large_batch = threading.Thread(
        target=lambda: results.extend(record_handler.handle([message("big", "large.json")]).results)
    )
    large_batch.start()
    large_batch.join(10)
    finished_during_traffic = not large_batch.is_alive()
    traffic_was_flowing = all(worker.is_alive() for worker in workers)
    stop.set()
    for worker in [*workers, large_batch]:
        worker.join(10)

    assert traffic_was_flowing
    assert finished_during_traffic
    assert [(r.outcome, r.jobs) for r in results] == [(Outcome.FORWARDED, 1)]
    assert budget.held_bytes == 0


def test_gauges_left_out_are_counted_for_jobs_handed_off_early() -> None:
    """Four two-hour-old jobs on a budget of one object: four hand-offs, all eight late gauges counted."""
    old = NOW - 2 * 3600
    files = {
        f"{n}.json": json.dumps({"job_success": True, "job_result": n, "timestamp": old}).encode()
        for n in range(4)
    }
    budget = MemoryBudget(held_cost(max(len(body) for body in files.values())))
    sink = MemorySink(budget)

    (result,) = handler(MemoryObjects(files), sink, budget=budget).handle([message("m", *files)]).results

    assert len(sink.submits) == 4
    assert (result.outcome, result.jobs) == (Outcome.FORWARDED, 4)
    assert dict(result.late_points) == {"too-old": 8}


def test_budget_clamps_a_cost_above_the_whole_budget() -> None:
    """An object costing more than the whole budget still fits alone, taking all of it."""
    budget = MemoryBudget(100)

    assert budget.try_take(10_000)
    assert budget.held_bytes == 100
    assert not budget.try_take(1)


@pytest.mark.parametrize("total", [0, -1])
def test_budget_must_be_positive(total: int) -> None:
    """A budget of zero or less is a programming error, refused at once."""
    with pytest.raises(ValueError, match="positive"):
        MemoryBudget(total)


@pytest.mark.parametrize(
    ("memory_size_mb", "expected_mib"),
    [
        ("512", 512 // 3),
        ("128", 128 // 3),
        ("3008", 256),
        ("10240", 256),
        (None, 256),
        ("", 256),
        ("lots", 256),
    ],
)
def test_the_lambda_budget_is_a_third_of_the_function_memory_at_most_256_mib(
    memory_size_mb: str | None, expected_mib: int
) -> None:
    """AWS_LAMBDA_FUNCTION_MEMORY_SIZE sets the budget to a third of it, capped; unknown: the default."""
    assert lambda_memory_budget(memory_size_mb) // (1024 * 1024) == expected_mib


def test_the_lambda_consumer_reads_a_repeated_record_once() -> None:
    """The Lambda path shares the record handler: one object named 950 times is read once."""
    objects = MemoryObjects({"same.json": job(3)})
    sink = MemorySink()
    consumer = LambdaConsumer(
        handler(objects, sink, max_records_per_message=1000),
        Acknowledger(objects, dead_letter_queue_url=None, max_backoff_seconds=60),  # type: ignore[arg-type]
    )
    body = message("m1", *["same.json"] * 950)
    event = {"Records": [{"messageId": "m1", "receiptHandle": "rh", "body": body.body}]}

    assert consumer(event, MinuteLeft()) == {"batchItemFailures": []}
    assert objects.reads == Counter({"same.json": 1})
    assert sink.job_results() == [3.0]


class MinuteLeft:
    """A Lambda context with a minute left."""

    def get_remaining_time_in_millis(self) -> int:
        """Always a minute."""
        return 60_000


@pytest.mark.parametrize(
    ("fetch_workers", "max_object_bytes", "expected"),
    [(64, 1024 * 1024, 128), (64, 10 * 1024 * 1024, 12), (256, 1024, 512), (1, 1024**3, 1)],
)
def test_reads_in_hand_are_twice_the_pool_within_128_mib(
    fetch_workers: int, max_object_bytes: int, expected: int
) -> None:
    """Twice FETCH_WORKERS objects read ahead, fewer when MAX_OBJECT_BYTES would make them exceed 128 MiB."""
    assert reads_in_hand(fetch_workers, max_object_bytes) == expected
