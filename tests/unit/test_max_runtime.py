"""``--max-runtime``: a drain stops receiving at its deadline, settles what it holds, and says so.

An in-memory queue that never runs dry (a steady inflow) and a sink that takes everything; the
end-to-end behaviour through the console script is in ``tests/integration/test_max_runtime_e2e.py``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from app.aws.resources import DeleteResult, QueueAttributes
from app.commands.main import main
from app.core.envelope import ObjectRef, QueueMessage
from app.core.metrics import Health
from app.drain.service import Forwarder
from app.local.notifications import s3_event_record, s3_notification
from app.settings import Settings, resolve
from app.sinks.base import Parcel

JOB = b'{"job_success": true, "job_result": 1}'
VISIBLE_AT_THE_END = 1234


@dataclass
class EndlessQueue:
    """Always ten messages to receive; deletes are remembered. Its ``sqs`` answers the depth."""

    queue_url: str = "memory://endless"
    ids: itertools.count[int] = field(default_factory=itertools.count)
    received: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def sqs(self) -> EndlessQueue:
        """The queue itself plays the SQS client for the one depth read at the end."""
        return self

    def get_queue_attributes(self, **request: Any) -> dict[str, Any]:
        """What SQS answers for ApproximateNumberOfMessages."""
        assert request["AttributeNames"] == ["ApproximateNumberOfMessages"]
        return {"Attributes": {"ApproximateNumberOfMessages": str(VISIBLE_AT_THE_END)}}

    def queue_attributes(self) -> QueueAttributes:
        """A 60 s visibility timeout, no dead-letter queue."""
        return QueueAttributes(60, None, None)

    def receive(
        self, *, wait_time_seconds: int, visibility_timeout_seconds: int | None = None
    ) -> list[QueueMessage]:
        """Ten fresh messages after a short round trip."""
        time.sleep(0.005)
        with self.lock:
            batch = [next(self.ids) for _ in range(10)]
            self.received.update(f"m{n}" for n in batch)
        body = s3_notification(s3_event_record("bucket", "jobs/a.json"))
        return [QueueMessage(f"m{n}", f"rh{n}", body) for n in batch]

    def fetch(self, ref: ObjectRef, *, max_bytes: int) -> bytes:
        """Every object is the same small job."""
        return JOB

    def delete(self, messages: Sequence[QueueMessage], *, attempts: int = 3) -> DeleteResult:
        """Delete them all."""
        with self.lock:
            self.deleted.update(m.message_id for m in messages)
        return DeleteResult(deleted=len(messages), failed={})

    def change_visibility(self, items: Sequence[tuple[QueueMessage, int]]) -> int:
        """Accept every change."""
        return len(items)


class TakingSink:
    """Takes every parcel."""

    def submit(self, parcels: Sequence[Parcel]) -> Mapping[str, str]:
        """Taken."""
        return {}

    def record_health(self, health: Health) -> None:
        """Not looked at here."""

    def probe(self) -> str | None:
        """Always reachable."""
        return None

    def close(self) -> None:
        """Nothing to release."""


def forwarder(queue: EndlessQueue, **settings: object) -> Forwarder:
    """A forwarder over ``queue`` with ``settings`` over the defaults."""
    return Forwarder(
        resources=queue,  # type: ignore[arg-type]
        sink=TakingSink(),
        settings=Settings(queue_url=queue.queue_url, self_metrics=False).with_changes(**settings),
    )


def test_a_drain_under_endless_inflow_stops_at_its_deadline_with_everything_settled() -> None:
    """A 1 s deadline on a queue that never empties: ends within a second more, all received deleted."""
    queue = EndlessQueue()
    started = time.monotonic()

    summary = forwarder(queue, max_runtime_seconds=1, concurrency=2).run()

    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 2.0
    assert summary.stopped_at_deadline is True
    assert summary.left_visible == VISIBLE_AT_THE_END
    assert summary.received == summary.forwarded == len(queue.received) > 0
    assert queue.deleted == queue.received
    assert summary.all_settled


def test_follow_ignores_the_deadline_until_stopped() -> None:
    """With --follow the deadline does not apply: the run goes on until its stop event is set."""
    queue = EndlessQueue()
    stop = threading.Event()
    threading.Timer(1.5, stop.set).start()
    started = time.monotonic()

    summary = forwarder(queue, max_runtime_seconds=1, concurrency=1).run(follow=True, stop=stop)

    assert time.monotonic() - started >= 1.5
    assert summary.stopped_at_deadline is False
    assert summary.left_visible is None


def test_a_drain_stopped_by_a_signal_before_its_deadline_does_not_report_it() -> None:
    """Stopped (as by SIGTERM) before the deadline: the summary says no deadline and reads no depth."""
    queue = EndlessQueue()
    stop = threading.Event()
    stop.set()

    summary = forwarder(queue, max_runtime_seconds=60).run(stop=stop)

    assert (summary.stopped_at_deadline, summary.left_visible) == (False, None)


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ({}, {}, 240),
        ({}, {"MAX_RUNTIME_SECONDS": "90"}, 90),
        ({"max_runtime_seconds": 30}, {"MAX_RUNTIME_SECONDS": "90"}, 30),
        ({}, {"MAX_RUNTIME_SECONDS": "0"}, None),
    ],
    ids=["default", "environment", "flag-wins", "zero-is-no-limit"],
)
def test_max_runtime_resolves_flag_over_environment_over_default(
    flags: dict[str, object], env: dict[str, str], expected: int | None
) -> None:
    """--max-runtime beats MAX_RUNTIME_SECONDS, which beats 240 s; 0 means no deadline."""
    assert resolve(flags, env).max_runtime_seconds == expected


def test_a_negative_max_runtime_is_a_configuration_error(capsys: pytest.CaptureFixture[str]) -> None:
    """MAX_RUNTIME_SECONDS=-5: exit 2 with one line naming the variable."""
    code = main(
        ["drain"], {"SQS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/q", "MAX_RUNTIME_SECONDS": "-5"}
    )

    assert code == 2
    assert "MAX_RUNTIME_SECONDS must be between 0 and 604800" in capsys.readouterr().err
