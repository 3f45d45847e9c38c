"""SQS message shapes and notification bodies (DESIGN "Input 1"), from real-shaped fixtures."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from app.core.envelope import ObjectRef, QueueMessage, Record, Skipped, parse_body
from app.errors import EnvelopeError, PermanentError
from tests.conftest import load_event

EVENT_TIME = datetime(2026, 11, 25, 10, 15, 30, 123000, tzinfo=UTC).timestamp()
BUCKET = "cloud-job-results"


def body_of(name: str) -> str:
    """The fixture ``name`` as the SQS body that would carry it."""
    return json.dumps(load_event(name))


def put_record(**object_fields: Any) -> dict[str, Any]:
    """A copy of the single record of ``s3_put.json`` with its ``s3.object`` fields replaced."""
    record: dict[str, Any] = copy.deepcopy(load_event("s3_put")["Records"][0])
    record["s3"]["object"].update(object_fields)
    return record


def records_body(*records: object) -> str:
    """An S3 event notification body holding ``records``."""
    return json.dumps({"Records": list(records)})


def only_ref(records: tuple[Record, ...]) -> ObjectRef:
    """The single ObjectRef of a one-record result."""
    assert len(records) == 1
    (record,) = records
    assert isinstance(record, ObjectRef)
    return record


def test_direct_s3_put_keeps_bucket_key_size_etag_version_and_time() -> None:
    """A direct ObjectCreated:Put record becomes one ObjectRef with every identifying field."""
    ref = only_ref(parse_body(body_of("s3_put")))

    assert replace(ref, event_time=None) == ObjectRef(
        bucket=BUCKET,
        key="jobs/train-resnet/run-0001.json",
        size=87,
        etag="0123456789abcdef0123456789abcdef",
        version_id="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",
    )
    assert ref.event_time == pytest.approx(EVENT_TIME)
    assert ref.uri == "s3://cloud-job-results/jobs/train-resnet/run-0001.json"


def test_every_record_of_a_multi_record_notification_is_returned_in_order() -> None:
    """Put, CompleteMultipartUpload and Copy records all become refs, not just the first."""
    records = parse_body(body_of("s3_multi_record"))

    assert [r.key for r in records if isinstance(r, ObjectRef)] == [
        "jobs/nightly-etl/a.json",
        "jobs/nightly-etl/b.json",
        "jobs/nightly-etl/c.json",
    ]
    assert len(records) == 3


def test_sns_wrapped_notification_is_unwrapped() -> None:
    """An S3 notification delivered through SNS yields the same ObjectRef as a direct one."""
    ref = only_ref(parse_body(body_of("sns_wrapped")))

    assert (ref.bucket, ref.key, ref.size) == (BUCKET, "jobs/feature-backfill/run-7.json", 87)
    assert ref.version_id is None


def test_sns_wrapped_test_event_is_skipped() -> None:
    """The S3 TestEvent delivered through SNS is acknowledged like a direct one."""
    assert parse_body(body_of("sns_wrapped_test_event")) == (Skipped("test-event", BUCKET),)


def test_eventbridge_object_created_keeps_key_unencoded_and_version() -> None:
    """EventBridge keys arrive as written ('run 9.json'), with version-id, etag and size mapped."""
    ref = only_ref(parse_body(body_of("eventbridge_object_created")))

    assert ref == ObjectRef(
        bucket=BUCKET,
        key="jobs/eval-suite/run 9.json",
        size=120,
        etag="b1946ac92492d2347c6235b4d2611184",
        version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
        event_time=datetime(2026, 11, 25, 10, 15, 30, tzinfo=UTC).timestamp(),
    )


@pytest.mark.parametrize(
    ("fixture", "key", "raw_key"),
    [
        (
            "eventbridge_hive_partitioned",
            "jobs/date=2026-11-25/hour=10/my job.json",
            "jobs/date%3D2026-11-25/hour%3D10/my+job.json",
        ),
        (
            "eventbridge_unicode_key",
            "jobs/r\u00e9sum\u00e9 \u65e5\u672c/c++ (1).json",
            "jobs/r%C3%A9sum%C3%A9+%E6%97%A5%E6%9C%AC/c%2B%2B+%281%29.json",
        ),
    ],
)
def test_eventbridge_keys_are_decoded_like_notification_keys(fixture: str, key: str, raw_key: str) -> None:
    """EventBridge keys are URL-decoded ('=', '+' for space, UTF-8) and the raw spelling is kept."""
    ref = only_ref(body_of_records(fixture))

    assert ref.key == key
    assert ref.raw_key == raw_key


def body_of_records(name: str) -> tuple[Record, ...]:
    """Parse the fixture ``name`` as an SQS body."""
    return parse_body(body_of(name))


def test_eventbridge_key_that_decoding_leaves_alone_has_no_raw_key() -> None:
    """A key with nothing to decode (a literal space) keeps no fallback spelling."""
    ref = only_ref(body_of_records("eventbridge_object_created"))

    assert ref.key == "jobs/eval-suite/run 9.json"
    assert ref.raw_key is None


def test_s3_notification_keys_keep_no_raw_key() -> None:
    """S3 notification keys are documented as encoded, so no raw-key fallback is kept."""
    ref = only_ref(records_body_parsed(put_record(key="jobs/date%3D2026/a+b.json")))

    assert ref.key == "jobs/date=2026/a b.json"
    assert ref.raw_key is None


def records_body_parsed(*records: object) -> tuple[Record, ...]:
    """Parse an S3 notification body holding ``records``."""
    return parse_body(records_body(*records))


def test_eventbridge_object_deleted_is_skipped_as_not_a_create() -> None:
    """An EventBridge 'Object Deleted' event is ignored with its detail-type as the detail."""
    assert parse_body(body_of("eventbridge_object_deleted")) == (Skipped("not-a-create", "Object Deleted"),)


def test_s3_test_event_is_skipped() -> None:
    """The s3:TestEvent sent when a notification is configured is skipped, naming the bucket."""
    assert parse_body(body_of("s3_test_event")) == (Skipped("test-event", BUCKET),)


@pytest.mark.parametrize(
    ("fixture", "event_name"),
    [
        ("s3_object_removed", "ObjectRemoved:Delete"),
        ("s3_lifecycle_expiration", "LifecycleExpiration:Delete"),
    ],
)
def test_non_create_records_are_skipped(fixture: str, event_name: str) -> None:
    """Removal and lifecycle records are skipped with the event name as detail."""
    assert parse_body(body_of(fixture)) == (Skipped("not-a-create", event_name),)


def test_mixed_records_keep_creates_and_skip_removals() -> None:
    """In a create+remove notification, the create is a ref and the removal is skipped."""
    first, second = parse_body(body_of("s3_mixed_records"))

    assert isinstance(first, ObjectRef)
    assert first.key == "jobs/eval-suite/keep.json"
    assert second == Skipped("not-a-create", "ObjectRemoved:DeleteMarkerCreated")


def test_special_keys_are_url_decoded_with_plus_as_space() -> None:
    """'+' becomes a space, '%2B' a plus, '%25' a percent sign, and UTF-8 escapes unicode."""
    keys = [r.key for r in parse_body(body_of("s3_key_special")) if isinstance(r, ObjectRef)]

    assert keys == [
        "jobs/my job/run 1.json",
        "jobs/a+b/c+d.json",
        "jobs/100%/done.json",
        "jobs/café/résumé.json",
    ]


def test_record_without_version_or_size_has_none_for_them() -> None:
    """An unversioned bucket's record (no versionId) and a missing size give None, not errors."""
    record = put_record()
    del record["s3"]["object"]["versionId"]
    del record["s3"]["object"]["size"]

    ref = only_ref(parse_body(records_body(record)))

    assert (ref.version_id, ref.size) == (None, None)
    assert ref.etag == "0123456789abcdef0123456789abcdef"


def test_unparseable_event_time_gives_no_time() -> None:
    """A record whose eventTime is not ISO 8601 still parses, with no event time."""
    record = put_record()
    record["eventTime"] = "yesterday"

    assert only_ref(parse_body(records_body(record))).event_time is None


def test_from_sqs_normalises_receive_message_entry() -> None:
    """boto3's ReceiveMessage entry becomes a QueueMessage with receive count and sent time."""
    raw = load_event("sqs_receive_message")["Messages"][0]

    message = QueueMessage.from_sqs(raw)

    assert message.message_id == "d6790f8d-d575-4f01-bc51-40122EXAMPLE"
    assert message.receipt_handle == "AQEBzbVv...fqNzFw=="
    assert message.receive_count == 3
    assert message.sent_timestamp == pytest.approx(1795572930.123)
    assert only_ref(parse_body(message.body)).key == "jobs/train-resnet/run-0001.json"


def test_from_lambda_normalises_event_records_to_the_same_type() -> None:
    """Lambda's SQS records become the same QueueMessage type, camelCase keys mapped."""
    first_raw, second_raw = load_event("lambda_sqs_event")["Records"]

    first, second = QueueMessage.from_lambda(first_raw), QueueMessage.from_lambda(second_raw)

    assert type(first) is QueueMessage
    assert first.message_id == "059f36b4-87a3-44ab-83d2-661975830a7d"
    assert first.receipt_handle == "AQEB059f36b4EXAMPLE=="
    assert (first.receive_count, second.receive_count) == (1, 2)
    assert first.sent_timestamp == pytest.approx(1795572930.123)
    assert only_ref(parse_body(first.body)).bucket == BUCKET
    assert parse_body(second.body) == (Skipped("test-event", BUCKET),)


def test_both_sqs_shapes_of_one_message_are_equal() -> None:
    """The same message seen through boto3 and through Lambda normalises to equal values."""
    boto_shape = {
        "MessageId": "m-1",
        "ReceiptHandle": "rh-1",
        "Body": "{}",
        "Attributes": {"ApproximateReceiveCount": "4", "SentTimestamp": "1000"},
    }
    lambda_shape = {
        "messageId": "m-1",
        "receiptHandle": "rh-1",
        "body": "{}",
        "attributes": {"ApproximateReceiveCount": "4", "SentTimestamp": "1000"},
    }

    assert QueueMessage.from_sqs(boto_shape) == QueueMessage.from_lambda(lambda_shape)
    assert QueueMessage.from_sqs(boto_shape).sent_timestamp == 1.0


def test_sqs_message_without_attributes_defaults_to_first_receive() -> None:
    """Without system attributes the receive count is 1 and the sent time unknown."""
    message = QueueMessage.from_sqs({"MessageId": "m", "ReceiptHandle": "r", "Body": "x"})

    assert (message.receive_count, message.sent_timestamp) == (1, None)


def sns_around(message: object) -> str:
    """An SNS notification body whose Message is ``message``."""
    return json.dumps(
        {"Type": "Notification", "TopicArn": "arn:aws:sns:eu-central-1:1:t", "Message": message}
    )


MALFORMED_BODIES: dict[str, str] = {
    "not-json": "this is not json",
    "truncated-json": '{"Records": [',
    "empty-string": "",
    "json-array": json.dumps([load_event("s3_put")]),
    "json-string": json.dumps("Records"),
    "json-number": "42",
    "json-null": "null",
    "records-empty": records_body(),
    "records-not-a-list": json.dumps({"Records": {"eventSource": "aws:s3"}}),
    "record-not-an-object": records_body("ObjectCreated:Put"),
    "record-null": records_body(None),
    "wrong-event-source": records_body({**put_record(), "eventSource": "aws:sqs"}),
    "missing-event-source": records_body({k: v for k, v in put_record().items() if k != "eventSource"}),
    "missing-event-name": records_body({k: v for k, v in put_record().items() if k != "eventName"}),
    "missing-key": records_body(
        {**put_record(), "s3": {"bucket": {"name": BUCKET}, "object": {"size": 1, "eTag": "e"}}}
    ),
    "empty-key": records_body(put_record(key="")),
    "key-not-a-string": records_body(put_record(key=17)),
    "missing-bucket": records_body({**put_record(), "s3": {"object": {"key": "k", "size": 1}}}),
    "bucket-without-name": records_body({**put_record(), "s3": {"bucket": {}, "object": {"key": "k"}}}),
    "s3-not-an-object": records_body({**put_record(), "s3": "s3://bucket/key"}),
    "negative-size": records_body(put_record(size=-1)),
    "boolean-size": records_body(put_record(size=True)),
    "float-size": records_body(put_record(size=1.5)),
    "string-size": records_body(put_record(size="87")),
    "one-bad-record-among-good": records_body(put_record(), put_record(size=-5)),
    "sns-message-not-a-string": sns_around(load_event("s3_put")),
    "sns-message-not-json": sns_around("not json"),
    "sns-message-json-array": sns_around("[]"),
    "sns-inside-sns": sns_around(sns_around(json.dumps(load_event("s3_put")))),
    "eventbridge-without-object": json.dumps(
        {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": BUCKET}}}
    ),
    "eventbridge-detail-not-an-object": json.dumps(
        {"source": "aws.s3", "detail-type": "Object Created", "detail": "x"}
    ),
    "unknown-document": json.dumps({"hello": "world"}),
    "sns-subscription-confirmation": json.dumps({"Type": "SubscriptionConfirmation", "Message": "x"}),
    "other-eventbridge-source": json.dumps({"source": "aws.ec2", "detail": {}}),
    "deeply-nested": "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("body", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
def test_malformed_bodies_raise_envelope_error(body: str) -> None:
    """Every malformed shape is an EnvelopeError: permanent, with the invalid-envelope reason."""
    with pytest.raises(EnvelopeError) as caught:
        parse_body(body)

    assert isinstance(caught.value, PermanentError)
    assert caught.value.reason == "invalid-envelope"


def test_envelope_error_names_the_offending_record() -> None:
    """The error text points at the record index, so an operator can find it in the DLQ."""
    with pytest.raises(EnvelopeError, match="record 1"):
        parse_body(records_body(put_record(), {**put_record(), "eventSource": "aws:sqs"}))
