"""Pure helpers of the operator's commands: backfill notifications, ``--since``, dead-letter reports.

All times are epoch seconds.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

from app.core.envelope import ObjectRef, parse_body
from app.core.timeutil import iso_to_epoch
from app.errors import ConfigurationError, PermanentError

# Marks the notifications backfill writes, so they can be told from S3's own in a dead-letter queue.
BACKFILL_CONFIGURATION_ID = "cloud-job-metrics-backfill"
NO_REASON = "(none)"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True, slots=True)
class ListedObject:
    """An object found by a listing: its latest version on a versioned bucket."""

    bucket: str
    key: str
    size: int
    etag: str
    last_modified: float
    version_id: str | None = None


def parse_since(text: str, *, now: float) -> float:
    """``--since``: ISO 8601, epoch seconds, or a duration back from ``now`` (``90m``, ``2h``, ``7d``)."""
    stripped = text.strip()
    duration = _DURATION.match(stripped.lower())
    if duration:
        return now - float(duration.group(1)) * _UNIT_SECONDS[duration.group(2)]
    try:
        return float(stripped)
    except ValueError:
        pass
    try:
        return iso_to_epoch(stripped)
    except ValueError:
        raise ConfigurationError(
            f"--since {text!r} is neither ISO 8601, epoch seconds nor a duration such as 2h or 7d"
        ) from None


def _iso(epoch: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))
    return f"{whole}.{int(epoch * 1000) % 1000:03d}Z"


def backfill_notification(obj: ListedObject, *, region: str) -> str:
    """The SQS body S3 would have sent for ``obj`` (``ObjectCreated:Put``, key URL-encoded).

    The event time is the object's ``LastModified``, so the job's time is never invented; the
    ETag (and version, if any) pin the content listed.
    """
    detail: dict[str, Any] = {"key": quote_plus(obj.key, safe="/"), "size": obj.size, "eTag": obj.etag}
    if obj.version_id:
        detail["versionId"] = obj.version_id
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": _iso(obj.last_modified),
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": BACKFILL_CONFIGURATION_ID},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": BACKFILL_CONFIGURATION_ID,
            "bucket": {"name": obj.bucket, "arn": f"arn:aws:s3:::{obj.bucket}"},
            "object": detail,
        },
    }
    return json.dumps({"Records": [record]}, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered message as the report shows it."""

    message_id: str
    reason: str
    detail: str
    uris: tuple[str, ...]

    @classmethod
    def from_message(cls, message_id: str, body: str, attributes: Mapping[str, str]) -> DeadLetter:
        """Read the reason and detail attributes the forwarder wrote, and the S3 URIs of the body."""
        return cls(
            message_id=message_id,
            reason=attributes.get("reason") or NO_REASON,
            detail=attributes.get("detail", ""),
            uris=uris_of(body),
        )


def uris_of(body: str) -> tuple[str, ...]:
    """The ``s3://`` URIs a body names; none when it is not a notification we can read."""
    try:
        records = parse_body(body)
    except PermanentError:
        return ()
    return tuple(record.uri for record in records if isinstance(record, ObjectRef))


@dataclass(slots=True)
class ReasonCount:
    """How many dead-lettered messages share a reason, with the first few as examples."""

    reason: str
    count: int = 0
    examples: list[DeadLetter] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON form of ``cloud-job-metrics dlq --json``."""
        return {
            "reason": self.reason,
            "count": self.count,
            "examples": [
                {"message_id": e.message_id, "s3_uris": list(e.uris), "detail": e.detail}
                for e in self.examples
            ],
        }


def count_by_reason(letters: Iterable[DeadLetter], *, examples: int) -> list[ReasonCount]:
    """Group ``letters`` per reason, most frequent first, keeping up to ``examples`` of each."""
    groups: dict[str, ReasonCount] = {}
    for letter in letters:
        group = groups.setdefault(letter.reason, ReasonCount(letter.reason))
        group.count += 1
        if len(group.examples) < examples:
            group.examples.append(letter)
    return sorted(groups.values(), key=lambda g: (-g.count, g.reason))
