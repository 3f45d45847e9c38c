"""The drain pipeline's guarantees under concurrency, with an in-memory queue and sink.

Receives run ahead of hand-offs and deletes overlap, yet a message is deleted only after its
hand-off, every message exactly once, and no more are held than the in-flight bound allows.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from app.aws.resources import DeleteResult, QueueAttributes
from app.core.envelope import ObjectRef, QueueMessage
from app.core.metrics import Health
from app.drain.service import Forwarder
from app.local.notifications import s3_event_record, s3_notification
from app.settings import Settings
from app.sinks.base import Parcel

JOB = b'{"job_success": true, "job_result": 1}'


@dataclass
class MemoryQueue:
    """A backlog of S3 notifications; each call takes ``latency`` seconds, like a round trip."""

    count: int
    latency: float = 0.003
    queue_url: str = "memory://backlog"
    handed_off: set[str] = field(default_factory=set)
    deleted: list[str] = field(default_factory=list)
    deleted_before_hand_off: list[str] = field(default_factory=list)
    false_empties: int = 0  # short polls that come back empty while messages are visible
    receives: int = 0
    empty_receives: int = 0
    held: int = 0
    most_held: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    visible: deque[QueueMessage] = field(default_factory=deque)

    def __post_init__(self) -> None:
        for n in range(self.count):
            body = s3_notification(s3_event_record("bucket", f"jobs/{n}.json"))
            self.visible.append(QueueMessage(message_id=f"m{n}", receipt_handle=f"rh{n}", body=body))

    def queue_attributes(self) -> QueueAttributes:
        """A 60 s visibility timeout, no dead-letter queue."""
        return QueueAttributes(60, None, None)

    def receive(
        self, *, wait_time_seconds: int, visibility_timeout_seconds: int | None = None
    ) -> list[QueueMessage]:
        """Take up to ten messages after one round trip (a short poll may miss them, as on SQS)."""
        time.sleep(self.latency)
        with self.lock:
            self.receives += 1
            if wait_time_seconds == 0 and self.false_empties > 0:
                self.false_empties -= 1
                self.empty_receives += 1
                return []
            batch = [self.visible.popleft() for _ in range(min(10, len(self.visible)))]
            self.empty_receives += not batch
            self.held += len(batch)
            self.most_held = max(self.most_held, self.held)
        return batch

    def fetch(self, ref: ObjectRef, *, max_bytes: int) -> bytes:
        """Every object is the same small job, after one round trip."""
        time.sleep(self.latency)
        return JOB

    def delete(self, messages: Sequence[QueueMessage], *, attempts: int = 3) -> DeleteResult:
        """Delete after one round trip, noting any message whose hand-off had not happened."""
        time.sleep(self.latency)
        with self.lock:
            for message in messages:
                if message.message_id not in self.handed_off:
                    self.deleted_before_hand_off.append(message.message_id)
                self.deleted.append(message.message_id)
            self.held -= len(messages)
        return DeleteResult(deleted=len(messages), failed={})

    def change_visibility(self, items: Sequence[tuple[QueueMessage, int]]) -> int:
        """Accept every change."""
        return len(items)


@dataclass
class RecordingSink:
    """Takes every parcel and remembers whose they were."""

    queue: MemoryQueue

    def submit(self, parcels: Sequence[Parcel]) -> Mapping[str, str]:
        """Hand off: the messages become safe to delete."""
        with self.queue.lock:
            self.queue.handed_off.update(parcel.key for parcel in parcels)
        return {}

    def record_health(self, health: Health) -> None:
        """Not looked at here."""

    def probe(self) -> str | None:
        """Always reachable."""
        return None

    def close(self) -> None:
        """Nothing to release."""


def drain(queue: MemoryQueue, **settings: object) -> Forwarder:
    """Run a drain of ``queue`` to its end with ``settings`` over the defaults."""
    forwarder = Forwarder(
        resources=queue,  # type: ignore[arg-type]
        sink=RecordingSink(queue),
        settings=Settings(queue_url=queue.queue_url, self_metrics=False).with_changes(**settings),
    )
    forwarder.run()
    return forwarder


def test_every_message_is_deleted_once_and_only_after_its_hand_off() -> None:
    """600 messages: each forwarded, deleted exactly once, never before its metrics were handed off."""
    queue = MemoryQueue(600)

    forwarder = drain(queue)

    assert forwarder.summary.forwarded == 600
    assert sorted(queue.deleted) == sorted(f"m{n}" for n in range(600))
    assert queue.deleted_before_hand_off == []


def test_receives_run_ahead_but_never_past_the_in_flight_bound() -> None:
    """More than the receive loops' own batches are held at once, and never more than the bound."""
    queue = MemoryQueue(1500)

    forwarder = drain(queue, concurrency=2, max_in_flight_messages=60)

    assert forwarder.summary.forwarded == 1500
    assert 20 < queue.most_held <= 60


def test_the_drain_ends_at_the_first_empty_receive_with_one_receive_per_ten() -> None:
    """A backlog costs one receive per ten messages; the run ends after its first empty long poll."""
    queue = MemoryQueue(400)

    drain(queue)

    assert 1 <= queue.empty_receives <= Settings().concurrency
    assert queue.receives <= 400 // 10 + Settings().concurrency


def test_a_false_empty_short_poll_does_not_end_the_drain() -> None:
    """With WAIT_TIME_SECONDS=0, an empty short poll is confirmed by a long poll before the drain ends."""
    queue = MemoryQueue(50, false_empties=1)

    forwarder = drain(queue, concurrency=1, wait_time_seconds=0)

    assert forwarder.summary.forwarded == 50
    assert not queue.visible
