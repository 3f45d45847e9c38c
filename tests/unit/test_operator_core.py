"""Pure helpers of the operator's commands: --since, backfill notifications, per-reason counts."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from app.core.envelope import ObjectRef, parse_body
from app.core.operator import (
    NO_REASON,
    DeadLetter,
    ListedObject,
    backfill_notification,
    count_by_reason,
    parse_since,
)
from app.errors import ConfigurationError

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", NOW - 5400),
        ("2h", NOW - 7200),
        ("7d", NOW - 7 * 86400),
        ("1w", NOW - 604800),
        ("1764000000", 1764000000.0),
        ("2026-11-25T10:00:00Z", NOW - 7200),
        ("2026-11-25T11:00:00+01:00", NOW - 7200),
    ],
)
def test_since_accepts_durations_epochs_and_iso(text: str, expected: float) -> None:
    """--since takes a duration back from now, epoch seconds or ISO 8601."""
    assert parse_since(text, now=NOW) == pytest.approx(expected)


def test_since_rejects_anything_else_with_a_clear_message() -> None:
    """An unreadable --since is a configuration error naming the accepted forms."""
    with pytest.raises(ConfigurationError, match="neither ISO 8601"):
        parse_since("yesterday", now=NOW)


def test_backfill_notification_parses_back_to_the_listed_object() -> None:
    """The body backfill sends is read by the envelope parser as exactly the listed object."""
    listed = ListedObject(
        bucket="cloud-job-results",
        key="jobs/date=2026-11-25/r\u00e9sum\u00e9 +1.json",
        size=42,
        etag="0cc175b9c0f1b6a831c399e269772661",
        last_modified=NOW - 60,
        version_id="v-3",
    )
    body = backfill_notification(listed, region="eu-central-1")

    assert parse_body(body) == (
        ObjectRef(
            bucket=listed.bucket,
            key=listed.key,
            size=42,
            etag=listed.etag,
            version_id="v-3",
            event_time=NOW - 60,
        ),
    )
    assert json.loads(body)["Records"][0]["eventName"] == "ObjectCreated:Put"


def test_backfill_notification_without_a_version_has_no_version_id() -> None:
    """Unversioned objects are pinned by their ETag alone."""
    listed = ListedObject("b", "k.json", 1, "e", NOW)
    record = json.loads(backfill_notification(listed, region="us-east-1"))["Records"][0]
    assert "versionId" not in record["s3"]["object"]
    assert record["s3"]["object"]["eTag"] == "e"


def test_count_by_reason_orders_by_count_and_keeps_a_few_examples() -> None:
    """Groups come most frequent first (ties by name), each with at most `examples` examples."""
    letters = [
        DeadLetter.from_message(f"m{i}", "not json", {"reason": reason, "detail": "d"})
        for i, reason in enumerate(["b", "a", "b", "b", "c"])
    ]
    letters.append(DeadLetter.from_message("m9", "{}", {}))

    groups = count_by_reason(letters, examples=2)

    assert [(g.reason, g.count) for g in groups] == [("b", 3), (NO_REASON, 1), ("a", 1), ("c", 1)]
    assert [e.message_id for e in groups[0].examples] == ["m0", "m2"]
    assert groups[0].examples[0].uris == ()
