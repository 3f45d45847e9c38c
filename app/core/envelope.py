"""SQS messages and the S3 notifications inside them (pure: no I/O).

Two SQS shapes exist, boto3's ``ReceiveMessage`` (``MessageId``, ``ReceiptHandle``, ``Body``) and
Lambda's event records (``messageId``, ``receiptHandle``, ``body``); both become one
:class:`QueueMessage` at the edge. A body is detected as one of:

- a direct S3 event notification (``{"Records": [...]}``), every record handled;
- the same wrapped in an SNS notification (``{"Type": "Notification", "Message": "<json>"}``);
- an EventBridge "Object Created" event (``{"source": "aws.s3", "detail": {...}}``);
- ``s3:TestEvent``, sent by S3 when a notification is configured.

See https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html and
https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html for the formats.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from app.core.timeutil import TimeOutOfRangeError, job_time
from app.errors import EnvelopeError


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """One SQS message, whichever API delivered it."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int = 1
    sent_timestamp: float | None = None

    @classmethod
    def from_sqs(cls, raw: Mapping[str, Any]) -> QueueMessage:
        """Build from a boto3 ``ReceiveMessage`` entry."""
        return cls._from_fields(raw, "MessageId", "ReceiptHandle", "Body", "Attributes")

    @classmethod
    def from_lambda(cls, raw: Mapping[str, Any]) -> QueueMessage:
        """Build from one record of a Lambda SQS event."""
        return cls._from_fields(raw, "messageId", "receiptHandle", "body", "attributes")

    @classmethod
    def _from_fields(
        cls, raw: Mapping[str, Any], message_id: str, receipt_handle: str, body: str, attributes: str
    ) -> QueueMessage:
        system = raw.get(attributes) or {}
        return cls(
            message_id=raw[message_id],
            receipt_handle=raw[receipt_handle],
            body=raw.get(body, ""),
            receive_count=_int_or(system.get("ApproximateReceiveCount"), 1),
            sent_timestamp=_millis(system.get("SentTimestamp")),
        )


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """An object named by a notification: where it is, which version, and when it was written."""

    bucket: str
    key: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    event_time: float | None = None
    # The key exactly as the notification spelled it, kept only when decoding changed it and the
    # encoding is not documented (EventBridge): the reader tries it when the decoded key is missing.
    raw_key: str | None = None

    @property
    def uri(self) -> str:
        """The ``s3://bucket/key`` form, for logs and event texts."""
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A record that is acknowledged without work, and why (``test-event``, ``not-a-create`` …)."""

    reason: str
    detail: str = ""


Record = ObjectRef | Skipped


def parse_body(body: str) -> tuple[Record, ...]:
    """Parse an SQS body into its records; raise :class:`EnvelopeError` if it is none of ours."""
    document = _load_json_object(body, what="message body")
    return _parse_document(document, depth=0)


def _parse_document(document: Mapping[str, Any], *, depth: int) -> tuple[Record, ...]:
    if document.get("Event") == "s3:TestEvent":
        return (Skipped("test-event", str(document.get("Bucket", ""))),)
    if "Records" in document:
        return _parse_s3_records(document["Records"])
    if document.get("Type") == "Notification" and "Message" in document:
        if depth > 0:
            raise EnvelopeError("SNS notification nested inside another SNS notification")
        message = document["Message"]
        if not isinstance(message, str):
            raise EnvelopeError("SNS notification whose Message is not a string")
        return _parse_document(_load_json_object(message, what="SNS Message"), depth=depth + 1)
    if document.get("source") == "aws.s3" and "detail" in document:
        return (_parse_eventbridge(document),)
    keys = ", ".join(sorted(document)[:8]).encode("utf-8", "backslashreplace").decode("utf-8")
    raise EnvelopeError(f"body is not an S3, SNS or EventBridge notification (keys: {keys[:200]})")


def _parse_s3_records(records: object) -> tuple[Record, ...]:
    if not isinstance(records, list) or not records:
        raise EnvelopeError("Records must be a non-empty list")
    return tuple(_parse_s3_record(index, record) for index, record in enumerate(records))


def _parse_s3_record(index: int, record: object) -> Record:
    if not isinstance(record, Mapping):
        raise EnvelopeError(f"record {index} is not an object")
    source = record.get("eventSource")
    if source != "aws:s3":
        raise EnvelopeError(f"record {index} has eventSource {source!r}, expected 'aws:s3'")
    event_name = record.get("eventName")
    if not isinstance(event_name, str):
        raise EnvelopeError(f"record {index} has no eventName")
    if not event_name.startswith("ObjectCreated:"):
        return Skipped("not-a-create", event_name)
    s3 = _mapping(record.get("s3"), f"record {index} s3")
    bucket = _mapping(s3.get("bucket"), f"record {index} s3.bucket")
    obj = _mapping(s3.get("object"), f"record {index} s3.object")
    # Keys in S3 notifications are URL-encoded with '+' for a space.
    key = unquote_plus(_text(obj.get("key"), f"record {index} s3.object.key"))
    return ObjectRef(
        bucket=_text(bucket.get("name"), f"record {index} s3.bucket.name"),
        key=key,
        size=_optional_size(obj.get("size"), f"record {index} s3.object.size"),
        etag=_optional_text(obj.get("eTag")),
        version_id=_optional_text(obj.get("versionId")),
        event_time=_iso_time(record.get("eventTime"), f"record {index} eventTime"),
    )


def _parse_eventbridge(document: Mapping[str, Any]) -> Record:
    detail_type = document.get("detail-type")
    if detail_type != "Object Created":
        return Skipped("not-a-create", str(detail_type))
    detail = _mapping(document.get("detail"), "detail")
    bucket = _mapping(detail.get("bucket"), "detail.bucket")
    obj = _mapping(detail.get("object"), "detail.object")
    # S3 builds the EventBridge key the way it builds notification keys (URL-encoded, '+' for a
    # space), but AWS does not document it; the raw spelling is kept as a fallback for the read.
    raw_key = _text(obj.get("key"), "detail.object.key")
    key = unquote_plus(raw_key)
    return ObjectRef(
        bucket=_text(bucket.get("name"), "detail.bucket.name"),
        key=key,
        raw_key=raw_key if raw_key != key else None,
        size=_optional_size(obj.get("size"), "detail.object.size"),
        etag=_optional_text(obj.get("etag")),
        version_id=_optional_text(obj.get("version-id")),
        event_time=_iso_time(document.get("time"), "time"),
    )


def _load_json_object(text: str, *, what: str) -> Mapping[str, Any]:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise EnvelopeError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise EnvelopeError(f"{what} is JSON but not an object")
    return document


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise EnvelopeError(f"{where} is missing or not an object")
    return value


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise EnvelopeError(f"{where} is missing or not a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # JSON can spell a lone surrogate (\ud800); no bucket or key can contain one.
        raise EnvelopeError(f"{where} is not valid Unicode") from None
    return value


def _optional_text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _optional_size(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EnvelopeError(f"{where} is not a non-negative integer")
    return value


def _iso_time(value: object, where: str) -> float | None:
    # None when absent or not ISO 8601 (it is only a fallback for the job's time); outside the
    # range a job's time may take (the check the file's timestamp gets too), the record is invalid.
    if not isinstance(value, str):
        return None
    try:
        return job_time(value)
    except TimeOutOfRangeError as exc:
        raise EnvelopeError(f"{where}: {exc}", reason="invalid-field") from None
    except ValueError:
        return None


def _int_or(value: object, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


def _millis(value: object) -> float | None:
    if value is None:
        return None
    try:
        return int(str(value)) / 1000.0
    except ValueError:
        return None
