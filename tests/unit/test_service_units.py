"""The drain's small parts: backoff, the run summary, the heartbeat and the acknowledger.

Collaborators are small in-memory fakes of CloudResourceHandler and a hand-driven clock.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import pytest

from app.aws.resources import CloudResourceHandler, DeleteResult
from app.core.envelope import QueueMessage
from app.drain.handler import BatchResult, MessageResult, Outcome
from app.drain.service import (
    RETRY_BASE_SECONDS,
    Acknowledger,
    Heartbeat,
    Settlement,
    Summary,
    retry_delay_seconds,
)
from app.errors import AccessDeniedError, AwsUnavailableError


@dataclass
class FakeClock:
    """A monotonic clock that moves only when told to."""

    now: float = 1000.0

    def __call__(self) -> float:
        """The current time, in seconds."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        self.now += seconds


@dataclass
class FakeResources:
    """Records what the service asks of SQS; can be told to fail."""

    visibility_calls: list[list[tuple[str, int]]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    dead_lettered: list[tuple[str, str, str, str]] = field(default_factory=list)
    fail_visibility: bool = False
    fail_dead_letter_for: set[str] = field(default_factory=set)
    refuse_delete_for: set[str] = field(default_factory=set)
    denied: set[str] = field(default_factory=set)

    def _check(self, permission: str) -> None:
        if permission in self.denied:
            raise AccessDeniedError("Call", permission)

    def change_visibility(self, items: Sequence[tuple[QueueMessage, int]]) -> int:
        """Record the change, or fail as SQS would when unavailable."""
        self._check("sqs:ChangeMessageVisibility")
        if self.fail_visibility:
            raise AwsUnavailableError("ChangeMessageVisibilityBatch failed (ServiceUnavailable)")
        self.visibility_calls.append([(m.message_id, seconds) for m, seconds in items])
        return len(items)

    def delete(self, messages: Sequence[QueueMessage], *, attempts: int = 3) -> DeleteResult:
        """Delete all but the refused ones."""
        self._check("sqs:DeleteMessage")
        failed = {
            m.message_id: "ReceiptHandleIsInvalid" for m in messages if m.message_id in self.refuse_delete_for
        }
        self.deleted.extend(m.message_id for m in messages if m.message_id not in failed)
        return DeleteResult(deleted=len(messages) - len(failed), failed=failed)

    def send_to_dead_letter_queue(
        self, dlq_url: str, message: QueueMessage, *, reason: str, detail: str
    ) -> None:
        """Record the copy, or fail for the configured ids."""
        self._check("sqs:SendMessage")
        if message.message_id in self.fail_dead_letter_for:
            raise AwsUnavailableError("SendMessage to the dead-letter queue failed")
        self.dead_lettered.append((dlq_url, message.message_id, reason, detail))


def as_handler(fake: FakeResources) -> CloudResourceHandler:
    """The fake, typed as the handler it stands in for (it implements the methods used here)."""
    return cast("CloudResourceHandler", fake)


def message(name: str, *, receive_count: int = 1) -> QueueMessage:
    """A queue message called ``name`` (its id and receipt handle derive from it)."""
    return QueueMessage(message_id=name, receipt_handle=f"rh-{name}", body="{}", receive_count=receive_count)


def result(name: str, outcome: Outcome, *, jobs: int = 0, receive_count: int = 1) -> MessageResult:
    """One message's verdict."""
    reason = "invalid-object" if outcome is Outcome.REJECTED else ""
    return MessageResult(
        message(name, receive_count=receive_count), outcome, reason=reason, detail=reason, jobs=jobs
    )


def batch(*results: MessageResult) -> BatchResult:
    """A batch of verdicts."""
    return BatchResult(tuple(results))


# --- retry_delay_seconds -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("receive_count", "expected"), [(1, 10), (2, 20), (3, 40), (4, 80), (5, 160), (6, 320)]
)
def test_retry_delay_doubles_with_each_delivery(receive_count: int, expected: int) -> None:
    """The backoff is 10 s on the first delivery and doubles with every redelivery."""
    assert retry_delay_seconds(receive_count, cap_seconds=43200) == expected


@pytest.mark.parametrize("receive_count", [7, 17, 100, 10_000])
def test_retry_delay_is_capped(receive_count: int) -> None:
    """Later deliveries are capped at cap_seconds (and huge counts do not overflow)."""
    assert retry_delay_seconds(receive_count, cap_seconds=600) == 600


@pytest.mark.parametrize("receive_count", [0, -3])
def test_retry_delay_for_a_missing_count_is_the_base(receive_count: int) -> None:
    """A receive count of zero or less (attribute missing) gives the base delay."""
    assert retry_delay_seconds(receive_count, cap_seconds=900) == RETRY_BASE_SECONDS


def test_retry_delay_grows_monotonically_up_to_the_cap() -> None:
    """With the 900 s default cap, delays never shrink and end at the cap."""
    delays = [retry_delay_seconds(n, cap_seconds=900) for n in range(1, 40)]

    assert delays == sorted(delays)
    assert max(delays) == 900


# --- Summary -------------------------------------------------------------------------------------


def test_summary_counts_every_outcome_and_jobs_of_forwarded_messages() -> None:
    """add() counts received, each outcome, dead-lettered, and the jobs of forwarded messages only."""
    summary = Summary()

    summary.add(
        batch(
            result("a", Outcome.FORWARDED, jobs=2),
            result("b", Outcome.FORWARDED, jobs=1),
            result("c", Outcome.IGNORED),
            result("d", Outcome.REJECTED, jobs=5),
            result("e", Outcome.RETRIED, jobs=3),
        ),
        dead_lettered=1,
    )
    summary.add(batch(result("f", Outcome.IGNORED)), dead_lettered=0)

    assert (summary.received, summary.forwarded, summary.ignored) == (6, 2, 2)
    assert (summary.rejected, summary.retried, summary.dead_lettered) == (1, 1, 1)
    assert summary.jobs == 3


def test_refused_deletes_are_counted_and_spoil_the_exit_code() -> None:
    """delete_failed counts refused deletes, is the last counter in the JSON, and makes all_settled false."""
    summary = Summary()

    summary.add(batch(result("a", Outcome.FORWARDED, jobs=1)), dead_lettered=0, delete_failed=1)

    assert summary.delete_failed == 1
    assert summary.all_settled is False
    keys = list(json.loads(summary.to_json()))
    assert keys[keys.index("delete_failed") :] == ["delete_failed", "stopped_at_deadline", "left_visible"]


def test_summary_json_is_one_line_with_the_required_keys() -> None:
    """to_json is a single line with received, forwarded, ignored, rejected, retried and seconds."""
    summary = Summary(received=3, forwarded=2, ignored=1, seconds=1.23456)

    line = summary.to_json()
    decoded = json.loads(line)

    assert "\n" not in line
    assert {"received", "forwarded", "ignored", "rejected", "retried", "seconds"} <= decoded.keys()
    assert decoded["received"] == 3
    assert decoded["forwarded"] == 2
    assert decoded["seconds"] == 1.235


@pytest.mark.parametrize(
    ("outcomes", "settled"),
    [
        ((), True),
        ((Outcome.FORWARDED, Outcome.IGNORED), True),
        ((Outcome.FORWARDED, Outcome.REJECTED), False),
        ((Outcome.IGNORED, Outcome.RETRIED), False),
    ],
    ids=["empty", "forwarded-and-ignored", "some-rejected", "some-retried"],
)
def test_all_settled_only_when_nothing_was_rejected_or_retried(
    outcomes: tuple[Outcome, ...], settled: bool
) -> None:
    """all_settled (exit code 0) means every message was forwarded or ignored."""
    summary = Summary()
    summary.add(batch(*(result(str(i), o) for i, o in enumerate(outcomes))), dead_lettered=0)

    assert summary.all_settled is settled


# --- Heartbeat -----------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    """A hand-driven clock."""
    return FakeClock()


@pytest.fixture
def resources() -> FakeResources:
    """An in-memory stand-in for the SQS side."""
    return FakeResources()


@pytest.fixture
def heartbeat(resources: FakeResources, clock: FakeClock) -> Heartbeat:
    """A heartbeat for a 60 s visibility timeout, not started (driven by hand)."""
    return Heartbeat(as_handler(resources), visibility_timeout_seconds=60, clock=clock)


def test_nothing_is_due_before_half_the_timeout(heartbeat: Heartbeat, clock: FakeClock) -> None:
    """A message held for less than half its visibility timeout is not due."""
    heartbeat.hold([message("a")])
    clock.advance(29.9)

    assert heartbeat.due() == []


def test_message_is_due_at_half_the_timeout(heartbeat: Heartbeat, clock: FakeClock) -> None:
    """At half the visibility timeout the message is due."""
    heartbeat.hold([message("a")])
    clock.advance(30)

    assert [m.message_id for m in heartbeat.due()] == ["a"]


def test_beat_extends_due_messages_by_a_full_timeout(
    heartbeat: Heartbeat, clock: FakeClock, resources: FakeResources
) -> None:
    """beat() extends only the due messages, by the full visibility timeout, and returns how many."""
    heartbeat.hold([message("old")])
    clock.advance(20)
    heartbeat.hold([message("new")])
    clock.advance(15)

    assert heartbeat.beat() == 1
    assert resources.visibility_calls == [[("old", 60)]]


def test_beat_restarts_the_clock_of_extended_messages(
    heartbeat: Heartbeat, clock: FakeClock, resources: FakeResources
) -> None:
    """After an extension the message is not due again until another half timeout has passed."""
    heartbeat.hold([message("a")])
    clock.advance(31)
    heartbeat.beat()

    clock.advance(29)
    assert heartbeat.beat() == 0
    clock.advance(1)
    assert heartbeat.beat() == 1
    assert len(resources.visibility_calls) == 2


def test_beat_with_nothing_due_makes_no_call(heartbeat: Heartbeat, resources: FakeResources) -> None:
    """No due message, no SQS call."""
    heartbeat.hold([message("a")])

    assert heartbeat.beat() == 0
    assert resources.visibility_calls == []


def test_released_messages_are_no_longer_extended(
    heartbeat: Heartbeat, clock: FakeClock, resources: FakeResources
) -> None:
    """A settled (released) message is forgotten by the heartbeat."""
    heartbeat.hold([message("a"), message("b")])
    heartbeat.release([message("a")])
    clock.advance(45)

    heartbeat.beat()

    assert resources.visibility_calls == [[("b", 60)]]


def test_failed_beat_is_retried_on_the_next_beat(
    heartbeat: Heartbeat, clock: FakeClock, resources: FakeResources
) -> None:
    """If SQS refuses the extension, the message stays due and the next beat tries again."""
    heartbeat.hold([message("a")])
    clock.advance(40)
    resources.fail_visibility = True

    assert heartbeat.beat() == 0
    assert [m.message_id for m in heartbeat.due()] == ["a"]

    resources.fail_visibility = False
    assert heartbeat.beat() == 1


# --- Acknowledger --------------------------------------------------------------------------------

DLQ = "https://sqs.us-east-1.amazonaws.com/123456789012/dlq"


def test_settle_deletes_done_dead_letters_rejected_and_backs_off_retried(resources: FakeResources) -> None:
    """Forwarded and ignored are deleted; rejected are copied to the DLQ then deleted; retried back off."""
    acknowledger = Acknowledger(as_handler(resources), dead_letter_queue_url=DLQ, max_backoff_seconds=900)

    settled = acknowledger.settle(
        batch(
            result("fwd", Outcome.FORWARDED),
            result("ign", Outcome.IGNORED),
            result("bad", Outcome.REJECTED),
            result("later", Outcome.RETRIED, receive_count=3),
        )
    )

    assert settled == Settlement(dead_lettered=1, delete_failures=0)
    assert resources.dead_lettered == [(DLQ, "bad", "invalid-object", "invalid-object")]
    assert sorted(resources.deleted) == ["bad", "fwd", "ign"]
    assert resources.visibility_calls == [[("later", 40)]]


def test_without_a_dlq_rejected_messages_stay_on_the_queue(resources: FakeResources) -> None:
    """With no dead-letter queue, a rejected message is neither copied nor deleted."""
    acknowledger = Acknowledger(as_handler(resources), dead_letter_queue_url=None, max_backoff_seconds=900)

    settled = acknowledger.settle(batch(result("bad", Outcome.REJECTED), result("ok", Outcome.FORWARDED)))

    assert settled.dead_lettered == 0
    assert resources.dead_lettered == []
    assert resources.deleted == ["ok"]


def test_rejected_message_whose_dlq_copy_failed_is_not_deleted(resources: FakeResources) -> None:
    """A failed DLQ copy keeps the message on the queue, so nothing is lost."""
    resources.fail_dead_letter_for = {"bad-1"}
    acknowledger = Acknowledger(as_handler(resources), dead_letter_queue_url=DLQ, max_backoff_seconds=900)

    settled = acknowledger.settle(batch(result("bad-1", Outcome.REJECTED), result("bad-2", Outcome.REJECTED)))

    assert settled.dead_lettered == 1
    assert resources.deleted == ["bad-2"]


def test_backoff_failure_does_not_raise(resources: FakeResources) -> None:
    """If the visibility change fails, the message simply comes back at its old timeout."""
    resources.fail_visibility = True
    acknowledger = Acknowledger(as_handler(resources), dead_letter_queue_url=DLQ, max_backoff_seconds=900)

    assert acknowledger.settle(batch(result("later", Outcome.RETRIED))) == Settlement()
    assert resources.deleted == []


def test_backoff_respects_the_configured_cap(resources: FakeResources) -> None:
    """A message redelivered many times backs off by at most max_backoff_seconds."""
    acknowledger = Acknowledger(as_handler(resources), dead_letter_queue_url=None, max_backoff_seconds=120)

    acknowledger.settle(batch(result("later", Outcome.RETRIED, receive_count=9)))

    assert resources.visibility_calls == [[("later", 120)]]


def test_refused_deletes_are_reported_by_settle(resources: FakeResources) -> None:
    """A delete SQS refuses after retries is counted in the settlement."""
    resources.refuse_delete_for = {"fwd"}
    acknowledger = Acknowledger(as_handler(resources), dead_letter_queue_url=DLQ, max_backoff_seconds=900)

    settled = acknowledger.settle(batch(result("fwd", Outcome.FORWARDED), result("ok", Outcome.FORWARDED)))

    assert settled == Settlement(dead_lettered=0, delete_failures=1)
    assert resources.deleted == ["ok"]


@pytest.mark.parametrize(
    "permission", ["sqs:SendMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
)
def test_access_denied_while_settling_stops_with_nothing_deleted_after_it(
    resources: FakeResources, permission: str
) -> None:
    """A refused SendMessage, delete or backoff raises AccessDeniedError instead of being logged away."""
    resources.denied = {permission}
    acknowledger = Acknowledger(as_handler(resources), dead_letter_queue_url=DLQ, max_backoff_seconds=900)

    with pytest.raises(AccessDeniedError) as caught:
        acknowledger.settle(
            batch(
                result("bad", Outcome.REJECTED),
                result("later", Outcome.RETRIED),
                result("ok", Outcome.FORWARDED),
            )
        )

    assert caught.value.permission == permission
    if permission == "sqs:SendMessage":
        # The rejected message was not copied, so nothing at all was deleted.
        assert resources.deleted == [] and resources.dead_lettered == []


def test_heartbeat_reports_access_denied_instead_of_retrying(
    resources: FakeResources, clock: FakeClock
) -> None:
    """A refused extension is handed to on_denied (the drain stops) rather than logged and retried."""
    reported: list[AccessDeniedError] = []
    heartbeat = Heartbeat(
        as_handler(resources), visibility_timeout_seconds=60, clock=clock, on_denied=reported.append
    )
    resources.denied = {"sqs:ChangeMessageVisibility"}
    heartbeat.hold([message("a")])
    clock.advance(40)

    assert heartbeat.beat() == 0
    assert [exc.permission for exc in reported] == ["sqs:ChangeMessageVisibility"]
