"""CloudResourceHandler against real boto3 clients wrapped in ``botocore.stub.Stubber``.

The Stubber checks every request against the service model, so a parameter SQS or S3 would refuse
fails here too; no request leaves the process.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from app.aws.resources import CloudResourceHandler, dead_letter_queue_url
from app.core.envelope import ObjectRef, QueueMessage
from app.errors import (
    AccessDeniedError,
    AwsUnavailableError,
    ConfigurationError,
    EnvelopeError,
    ObjectNotFoundError,
    PermanentError,
)
from tests.conftest import load_event

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/cloud-job-results"
DLQ_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/cloud-job-results-dlq"
BUCKET = "cloud-job-results"
KEY = "jobs/train-resnet/run-0001.json"
ETAG = "0123456789abcdef0123456789abcdef"
DOCUMENT = b'{"job_success": true, "job_result": 123}'


@dataclass
class Stubbed:
    """A handler whose SQS and S3 clients are stubbed."""

    handler: CloudResourceHandler
    sqs: Stubber
    s3: Stubber


@pytest.fixture
def stubbed() -> Iterator[Stubbed]:
    """A CloudResourceHandler on stubbed clients; every queued response must be consumed."""
    # Real clients with dummy credentials: the Stubber answers before any request is signed or sent.
    sqs = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(sqs) as sqs_stub, Stubber(s3) as s3_stub:
        yield Stubbed(
            CloudResourceHandler(sqs_client=sqs, s3_client=s3, queue_url=QUEUE_URL), sqs_stub, s3_stub
        )
        sqs_stub.assert_no_pending_responses()
        s3_stub.assert_no_pending_responses()


def message(index: int) -> QueueMessage:
    """The ``index``-th queue message, with a unique id and receipt handle."""
    return QueueMessage(message_id=f"m-{index}", receipt_handle=f"rh-{index}", body="{}")


def delete_params(*indexes: int, ids: list[str] | None = None) -> dict[str, Any]:
    """Expected DeleteMessageBatch parameters for the messages at ``indexes``."""
    entry_ids = ids or [str(i) for i in range(len(indexes))]
    return {
        "QueueUrl": QUEUE_URL,
        "Entries": [
            {"Id": entry_id, "ReceiptHandle": f"rh-{index}"}
            for entry_id, index in zip(entry_ids, indexes, strict=True)
        ],
    }


def failure(entry_id: str, code: str = "InternalError") -> dict[str, Any]:
    """A ``Failed`` entry of a batch response."""
    return {"Id": entry_id, "SenderFault": False, "Code": code, "Message": f"{code} for {entry_id}"}


def ref(**overrides: Any) -> ObjectRef:
    """A notified object (unversioned, with an ETag and size); override any attribute."""
    values: dict[str, Any] = {"bucket": BUCKET, "key": KEY, "size": len(DOCUMENT), "etag": ETAG}
    values.update(overrides)
    return ObjectRef(**values)


class TrackedStream(io.BytesIO):
    """A raw HTTP body that remembers whether it was closed."""

    def __init__(self, data: bytes, *, fail_with: Exception | None = None) -> None:
        super().__init__(data)
        self.fail_with = fail_with
        self.was_closed = False
        self.was_read = False

    def read(self, size: int | None = -1) -> bytes:
        """Read, or raise the configured error (a connection dropped mid-body)."""
        self.was_read = True
        if self.fail_with is not None:
            raise self.fail_with
        return super().read(size)

    def close(self) -> None:
        """Record the close."""
        self.was_closed = True
        super().close()


def get_object_response(
    data: bytes, *, content_length: int | None = None, content_encoding: str | None = None
) -> tuple[dict[str, Any], TrackedStream]:
    """A GetObject response with ``data`` as its body, and the raw stream behind it."""
    raw = TrackedStream(data)
    length = len(data) if content_length is None else content_length
    response: dict[str, Any] = {
        "Body": StreamingBody(raw, len(data)),
        "ContentLength": length,
        "ETag": f'"{ETAG}"',
    }
    if content_encoding is not None:
        response["ContentEncoding"] = content_encoding
    return response, raw


# --- receive -------------------------------------------------------------------------------------


@pytest.mark.parametrize("wait", [0, 2, 20])
def test_receive_asks_for_ten_messages_with_the_wait_time(stubbed: Stubbed, wait: int) -> None:
    """ReceiveMessage asks for 10 messages, long-polls for ``wait`` s, and wants the receive count."""
    stubbed.sqs.add_response(
        "receive_message",
        load_event("sqs_receive_message"),
        {
            "QueueUrl": QUEUE_URL,
            "MaxNumberOfMessages": 10,
            "WaitTimeSeconds": wait,
            "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp"],
        },
    )

    messages = stubbed.handler.receive(wait_time_seconds=wait)

    assert [m.message_id for m in messages] == ["d6790f8d-d575-4f01-bc51-40122EXAMPLE"]
    assert messages[0].receive_count == 3


def test_receive_passes_a_configured_visibility_timeout(stubbed: Stubbed) -> None:
    """A configured visibility timeout is sent with the receive."""
    stubbed.sqs.add_response(
        "receive_message",
        {},
        {
            "QueueUrl": QUEUE_URL,
            "MaxNumberOfMessages": 10,
            "WaitTimeSeconds": 1,
            "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp"],
            "VisibilityTimeout": 120,
        },
    )

    assert stubbed.handler.receive(wait_time_seconds=1, visibility_timeout_seconds=120) == []


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("InternalError", 500, AwsUnavailableError),
        ("ServiceUnavailable", 503, AwsUnavailableError),
        ("ThrottlingException", 400, AwsUnavailableError),
        ("AWS.SimpleQueueService.NonExistentQueue", 400, ConfigurationError),
        ("AccessDenied", 403, ConfigurationError),
    ],
)
def test_receive_failures_are_translated(
    stubbed: Stubbed, code: str, status: int, error: type[Exception]
) -> None:
    """Server-side and throttling errors are transient; a missing queue or denied access is config."""
    stubbed.sqs.add_client_error("receive_message", service_error_code=code, http_status_code=status)

    with pytest.raises(error):
        stubbed.handler.receive(wait_time_seconds=0)


# --- delete --------------------------------------------------------------------------------------


def test_delete_retries_only_the_failed_entries(stubbed: Stubbed) -> None:
    """After a partial failure, only the failed entry is sent again, and all end deleted."""
    stubbed.sqs.add_response(
        "delete_message_batch",
        {"Successful": [{"Id": "0"}, {"Id": "2"}], "Failed": [failure("1")]},
        delete_params(0, 1, 2),
    )
    stubbed.sqs.add_response(
        "delete_message_batch", {"Successful": [{"Id": "1"}], "Failed": []}, delete_params(1, ids=["1"])
    )

    result = stubbed.handler.delete([message(0), message(1), message(2)])

    assert result.deleted == 3
    assert dict(result.failed) == {}


def test_delete_reports_entries_still_failing_after_every_attempt(stubbed: Stubbed) -> None:
    """An entry that fails on every attempt is reported by message id with SQS's message."""
    stubbed.sqs.add_response(
        "delete_message_batch",
        {"Successful": [{"Id": "0"}], "Failed": [failure("1", "ReceiptHandleIsInvalid")]},
        delete_params(0, 1),
    )
    for _ in range(2):
        stubbed.sqs.add_response(
            "delete_message_batch",
            {"Successful": [], "Failed": [failure("1", "ReceiptHandleIsInvalid")]},
            delete_params(1, ids=["1"]),
        )

    result = stubbed.handler.delete([message(0), message(1)], attempts=3)

    assert result.deleted == 1
    assert dict(result.failed) == {"m-1": "ReceiptHandleIsInvalid for 1"}


def test_delete_splits_more_than_ten_messages_into_tens(stubbed: Stubbed) -> None:
    """23 messages are deleted in calls of 10, 10 and 3 entries, ids numbered per call."""
    for start, stop in [(0, 10), (10, 20), (20, 23)]:
        indexes = range(start, stop)
        stubbed.sqs.add_response(
            "delete_message_batch",
            {"Successful": [{"Id": str(i)} for i in range(len(indexes))], "Failed": []},
            delete_params(*indexes),
        )

    result = stubbed.handler.delete([message(i) for i in range(23)])

    assert result.deleted == 23
    assert dict(result.failed) == {}


def test_delete_retries_a_batch_call_that_failed_as_a_whole(stubbed: Stubbed) -> None:
    """A throttled DeleteMessageBatch is tried again with the same entries."""
    stubbed.sqs.add_client_error(
        "delete_message_batch", service_error_code="RequestThrottled", http_status_code=400
    )
    stubbed.sqs.add_response(
        "delete_message_batch", {"Successful": [{"Id": "0"}], "Failed": []}, delete_params(0)
    )

    result = stubbed.handler.delete([message(0)])

    assert (result.deleted, dict(result.failed)) == (1, {})


def test_delete_of_nothing_makes_no_call(stubbed: Stubbed) -> None:
    """An empty list is a no-op (the stubber would fail on an unexpected call)."""
    result = stubbed.handler.delete([])

    assert (result.deleted, dict(result.failed)) == (0, {})


# --- fetch ---------------------------------------------------------------------------------------


def test_fetch_pins_the_version_when_the_notification_has_one(stubbed: Stubbed) -> None:
    """With a versionId, GetObject asks for that version (and no ETag precondition)."""
    response, raw = get_object_response(DOCUMENT)
    stubbed.s3.add_response("get_object", response, {"Bucket": BUCKET, "Key": KEY, "VersionId": "v-1"})

    assert stubbed.handler.fetch(ref(version_id="v-1"), max_bytes=1024) == DOCUMENT
    assert raw.was_closed


@pytest.mark.parametrize("etag", [ETAG, f'"{ETAG}"'], ids=["bare", "already-quoted"])
def test_fetch_pins_the_etag_without_a_version(stubbed: Stubbed, etag: str) -> None:
    """Without a version, GetObject sends IfMatch with the ETag quoted exactly once."""
    response, _ = get_object_response(DOCUMENT)
    stubbed.s3.add_response("get_object", response, {"Bucket": BUCKET, "Key": KEY, "IfMatch": f'"{ETAG}"'})

    assert stubbed.handler.fetch(ref(etag=etag), max_bytes=1024) == DOCUMENT


def test_fetch_without_version_or_etag_reads_the_current_object(stubbed: Stubbed) -> None:
    """With neither, only Bucket and Key are sent."""
    response, _ = get_object_response(DOCUMENT)
    stubbed.s3.add_response("get_object", response, {"Bucket": BUCKET, "Key": KEY})

    assert stubbed.handler.fetch(ref(etag=None), max_bytes=1024) == DOCUMENT


def test_fetch_refuses_an_oversize_notification_without_calling_s3(stubbed: Stubbed) -> None:
    """A notified size over the cap is refused before any GetObject (none is queued)."""
    with pytest.raises(PermanentError) as caught:
        stubbed.handler.fetch(ref(size=2048), max_bytes=1024)

    assert caught.value.reason == "object-too-large"


def test_fetch_refuses_a_response_whose_length_exceeds_the_cap(stubbed: Stubbed) -> None:
    """A ContentLength over the cap is refused before the body is read, and the body is closed."""
    response, raw = get_object_response(b"{}", content_length=4096)
    stubbed.s3.add_response("get_object", response, {"Bucket": BUCKET, "Key": KEY, "IfMatch": f'"{ETAG}"'})

    with pytest.raises(PermanentError) as caught:
        stubbed.handler.fetch(ref(size=None), max_bytes=1024)

    assert caught.value.reason == "object-too-large"
    assert not raw.was_read
    assert raw.was_closed


def test_fetch_object_exactly_at_the_cap_is_read(stubbed: Stubbed) -> None:
    """An object of exactly max_bytes is within the cap."""
    response, _ = get_object_response(DOCUMENT)
    stubbed.s3.add_response("get_object", response, {"Bucket": BUCKET, "Key": KEY, "IfMatch": f'"{ETAG}"'})

    assert stubbed.handler.fetch(ref(), max_bytes=len(DOCUMENT)) == DOCUMENT


@pytest.mark.parametrize(
    ("code", "status"), [("NoSuchKey", 404), ("NoSuchVersion", 404), ("NoSuchBucket", 404)]
)
def test_fetch_missing_objects_are_not_found(stubbed: Stubbed, code: str, status: int) -> None:
    """A missing key, version or bucket is ObjectNotFoundError (permanent)."""
    stubbed.s3.add_client_error("get_object", service_error_code=code, http_status_code=status)

    with pytest.raises(ObjectNotFoundError) as caught:
        stubbed.handler.fetch(ref(version_id="v-1"), max_bytes=1024)

    assert caught.value.reason == "object-not-found"
    assert code in str(caught.value)


def test_fetch_denied_for_want_of_list_bucket_is_a_missing_object(stubbed: Stubbed) -> None:
    """A 403 whose message blames s3:ListBucket is S3 hiding a missing key: object-not-found."""
    stubbed.s3.add_client_error(
        "get_object",
        service_error_code="AccessDenied",
        service_message=(
            "User: arn:aws:iam::123456789012:user/forwarder is not authorized to perform: s3:ListBucket "
            'on resource: "arn:aws:s3:::cloud-job-results" because no identity-based policy allows '
            "the s3:ListBucket action"
        ),
        http_status_code=403,
    )

    with pytest.raises(ObjectNotFoundError) as caught:
        stubbed.handler.fetch(ref(), max_bytes=1024)

    assert caught.value.reason == "object-not-found"


@pytest.mark.parametrize(
    ("version_id", "permission"), [(None, "s3:GetObject"), ("v-1", "s3:GetObjectVersion")]
)
def test_fetch_denied_is_an_access_denied_error_naming_the_permission(
    stubbed: Stubbed, version_id: str | None, permission: str
) -> None:
    """A bare 403 on GetObject is the policy refusing the read: a configuration error naming it."""
    stubbed.s3.add_client_error(
        "get_object", service_error_code="AccessDenied", service_message="Access Denied", http_status_code=403
    )

    with pytest.raises(AccessDeniedError) as caught:
        stubbed.handler.fetch(ref(version_id=version_id), max_bytes=1024)

    assert caught.value.permission == permission
    assert isinstance(caught.value, ConfigurationError)
    assert f"GetObject on s3://{BUCKET}/{KEY} needs the IAM permission {permission}" in str(caught.value)


def test_fetch_denied_by_the_kms_key_names_kms_decrypt(stubbed: Stubbed) -> None:
    """A 403 that blames kms:Decrypt (an SSE-KMS object) names kms:Decrypt, not s3:GetObject."""
    stubbed.s3.add_client_error(
        "get_object",
        service_error_code="AccessDenied",
        service_message=(
            "User: arn:aws:iam::123456789012:user/forwarder is not authorized to perform: kms:Decrypt "
            "on resource: arn:aws:kms:us-east-1:123456789012:key/1 because no identity-based policy "
            "allows the kms:Decrypt action"
        ),
        http_status_code=403,
    )

    with pytest.raises(AccessDeniedError) as caught:
        stubbed.handler.fetch(ref(), max_bytes=1024)

    assert caught.value.permission == "kms:Decrypt"


@pytest.mark.parametrize(
    ("operation", "call", "permission"),
    [
        ("receive_message", lambda h: h.receive(wait_time_seconds=0), "sqs:ReceiveMessage"),
        ("get_queue_attributes", lambda h: h.queue_attributes(), "sqs:GetQueueAttributes"),
        ("delete_message_batch", lambda h: h.delete([message(1)]), "sqs:DeleteMessage"),
        (
            "change_message_visibility_batch",
            lambda h: h.change_visibility([(message(1), 30)]),
            "sqs:ChangeMessageVisibility",
        ),
        (
            "send_message",
            lambda h: h.send_to_dead_letter_queue(DLQ_URL, message(1), reason="r", detail="d"),
            "sqs:SendMessage",
        ),
    ],
)
def test_sqs_access_denied_names_the_iam_permission(
    stubbed: Stubbed, operation: str, call: Any, permission: str
) -> None:
    """AccessDenied on any SQS call is an AccessDeniedError naming the permission, even for batches."""
    stubbed.sqs.add_client_error(
        operation,
        service_error_code="AccessDenied",
        # An emulator names the API call; AWS checks the batch calls under the single-message name.
        service_message="User: arn:aws:iam::123456789012:user/x is not authorized to perform: sqs:Whatever",
        http_status_code=403,
    )

    with pytest.raises(AccessDeniedError) as caught:
        call(stubbed.handler)

    assert caught.value.permission == permission
    assert permission in str(caught.value)
    assert "\n" not in str(caught.value)


def test_kms_refusal_on_a_dead_letter_send_names_generate_data_key(stubbed: Stubbed) -> None:
    """SQS's KmsAccessDenied on SendMessage to an encrypted DLQ names kms:GenerateDataKey."""
    stubbed.sqs.add_client_error("send_message", service_error_code="KmsAccessDenied", http_status_code=400)

    with pytest.raises(AccessDeniedError) as caught:
        stubbed.handler.send_to_dead_letter_queue(DLQ_URL, message(1), reason="r", detail="d")

    assert caught.value.permission == "kms:GenerateDataKey"


def test_fetch_precondition_failed_means_superseded(stubbed: Stubbed) -> None:
    """An ETag that no longer matches means the object was overwritten: object-superseded."""
    stubbed.s3.add_client_error("get_object", service_error_code="PreconditionFailed", http_status_code=412)

    with pytest.raises(ObjectNotFoundError) as caught:
        stubbed.handler.fetch(ref(), max_bytes=1024)

    assert caught.value.reason == "object-superseded"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("InternalError", 500),
        ("ServiceUnavailable", 503),
        ("SlowDown", 503),
        ("Throttling", 400),
        ("RequestTimeout", 400),
    ],
)
def test_fetch_server_side_errors_are_transient(stubbed: Stubbed, code: str, status: int) -> None:
    """5xx, SlowDown, throttling and timeouts are AwsUnavailableError, so the message is retried."""
    stubbed.s3.add_client_error("get_object", service_error_code=code, http_status_code=status)

    with pytest.raises(AwsUnavailableError):
        stubbed.handler.fetch(ref(), max_bytes=1024)


def test_fetch_connection_dropped_mid_body_is_transient(stubbed: Stubbed) -> None:
    """A read timeout while streaming the body is transient, and the body is still closed."""
    response, raw = get_object_response(DOCUMENT)
    raw.fail_with = ReadTimeoutError(endpoint_url="https://s3.amazonaws.com")
    stubbed.s3.add_response("get_object", response, {"Bucket": BUCKET, "Key": KEY, "IfMatch": f'"{ETAG}"'})

    with pytest.raises(AwsUnavailableError):
        stubbed.handler.fetch(ref(), max_bytes=1024)

    assert raw.was_closed


def test_fetch_other_client_errors_are_permanent_with_their_code(stubbed: Stubbed) -> None:
    """An unexpected 4xx is permanent and carries the AWS code in its reason."""
    stubbed.s3.add_client_error("get_object", service_error_code="InvalidObjectState", http_status_code=403)

    with pytest.raises(PermanentError) as caught:
        stubbed.handler.fetch(ref(), max_bytes=1024)

    assert caught.value.reason == "aws-InvalidObjectState"


@pytest.mark.parametrize(
    ("key", "encoding"),
    [(KEY, "gzip"), (KEY + ".gz", None), (KEY, None)],
    ids=["content-encoding", "gz-suffix", "magic-bytes"],
)
def test_fetch_inflates_gzip_objects(stubbed: Stubbed, key: str, encoding: str | None) -> None:
    """A gzip body is inflated whether marked by Content-Encoding, a .gz key or only its magic bytes."""
    response, raw = get_object_response(gzip.compress(DOCUMENT), content_encoding=encoding)
    stubbed.s3.add_response("get_object", response, {"Bucket": BUCKET, "Key": key, "IfMatch": f'"{ETAG}"'})

    assert stubbed.handler.fetch(ref(key=key, size=None), max_bytes=1024) == DOCUMENT
    assert raw.was_closed


def test_fetch_caps_the_inflated_size_not_the_stored_one(stubbed: Stubbed) -> None:
    """A small gzip object that inflates past the cap is object-too-large, and the body is closed."""
    inflated = b'{"job_success": true, "pad": "' + b"x" * 5000 + b'"}'
    compressed = gzip.compress(inflated)
    assert len(compressed) < 1024
    response, raw = get_object_response(compressed, content_encoding="gzip")
    stubbed.s3.add_response("get_object", response, {"Bucket": BUCKET, "Key": KEY, "IfMatch": f'"{ETAG}"'})

    with pytest.raises(PermanentError) as caught:
        stubbed.handler.fetch(ref(size=len(compressed)), max_bytes=1024)

    assert caught.value.reason == "object-too-large"
    assert raw.was_closed


def test_fetch_truncated_gzip_is_permanent(stubbed: Stubbed) -> None:
    """A gzip object cut short is rejected as invalid-gzip, not retried."""
    response, _ = get_object_response(gzip.compress(DOCUMENT)[:-4])
    stubbed.s3.add_response("get_object", response, {"Bucket": BUCKET, "Key": KEY, "IfMatch": f'"{ETAG}"'})

    with pytest.raises(PermanentError) as caught:
        stubbed.handler.fetch(ref(size=None), max_bytes=1024)

    assert caught.value.reason == "invalid-gzip"


def test_fetch_falls_back_to_the_raw_eventbridge_key(stubbed: Stubbed) -> None:
    """When the decoded key is missing, the key as the event spelled it is read (one extra GET)."""
    raw_key = "jobs/date%3D2026-11-25/my+job.json"
    decoded = "jobs/date=2026-11-25/my job.json"
    stubbed.s3.add_client_error(
        "get_object",
        service_error_code="NoSuchKey",
        http_status_code=404,
        expected_params={"Bucket": BUCKET, "Key": decoded, "IfMatch": f'"{ETAG}"'},
    )
    response, _ = get_object_response(DOCUMENT)
    stubbed.s3.add_response(
        "get_object", response, {"Bucket": BUCKET, "Key": raw_key, "IfMatch": f'"{ETAG}"'}
    )

    assert stubbed.handler.fetch(ref(key=decoded, raw_key=raw_key), max_bytes=1024) == DOCUMENT


def test_fetch_raw_key_missing_too_names_both_keys(stubbed: Stubbed) -> None:
    """If neither spelling exists the object is not found, and the detail names both keys."""
    raw_key = "jobs/a+b.json"
    for key in ("jobs/a b.json", raw_key):
        stubbed.s3.add_client_error(
            "get_object",
            service_error_code="NoSuchKey",
            http_status_code=404,
            expected_params={"Bucket": BUCKET, "Key": key, "IfMatch": f'"{ETAG}"'},
        )

    with pytest.raises(ObjectNotFoundError) as caught:
        stubbed.handler.fetch(ref(key="jobs/a b.json", raw_key=raw_key), max_bytes=1024)

    assert caught.value.reason == "object-not-found"
    assert "jobs/a b.json" in str(caught.value) and raw_key in str(caught.value)


def test_fetch_without_a_raw_key_makes_one_get_only(stubbed: Stubbed) -> None:
    """A missing S3-notification key is not retried under another spelling (one GET queued)."""
    stubbed.s3.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)

    with pytest.raises(ObjectNotFoundError):
        stubbed.handler.fetch(ref(key="jobs/a b.json"), max_bytes=1024)


def test_fetch_superseded_object_does_not_try_the_raw_key(stubbed: Stubbed) -> None:
    """Only a missing object triggers the fallback; a failed ETag precondition does not."""
    stubbed.s3.add_client_error("get_object", service_error_code="PreconditionFailed", http_status_code=412)

    with pytest.raises(ObjectNotFoundError) as caught:
        stubbed.handler.fetch(ref(key="jobs/a b.json", raw_key="jobs/a+b.json"), max_bytes=1024)

    assert caught.value.reason == "object-superseded"


@pytest.mark.parametrize("bucket", ["Not_A_Valid:Bucket!", "bad bucket"])
def test_fetch_invalid_bucket_name_is_a_permanent_invalid_envelope(bucket: str) -> None:
    """A bucket name botocore refuses before sending is invalid-envelope at once, not an outage."""
    # No Stubber here: it answers before botocore validates the bucket name. The endpoint is a
    # closed port, so a request that did go out would fail as a (transient) connection error.
    s3 = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    sqs = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    handler = CloudResourceHandler(sqs_client=sqs, s3_client=s3, queue_url=QUEUE_URL)

    with pytest.raises(EnvelopeError) as caught:
        handler.fetch(ref(bucket=bucket), max_bytes=1024)

    assert caught.value.reason == "invalid-envelope"
    assert "Invalid bucket name" in str(caught.value)


# --- dead-letter queue, visibility and queue attributes ------------------------------------------


def test_send_to_dead_letter_queue_carries_reason_and_origin(stubbed: Stubbed) -> None:
    """The DLQ copy keeps the body and carries reason, detail, source id and receive count."""
    original = QueueMessage(message_id="m-9", receipt_handle="rh-9", body='{"Records": []}', receive_count=4)
    stubbed.sqs.add_response(
        "send_message",
        {"MessageId": "dlq-1", "MD5OfMessageBody": "0" * 32},
        {
            "QueueUrl": DLQ_URL,
            "MessageBody": '{"Records": []}',
            "MessageAttributes": {
                "reason": {"DataType": "String", "StringValue": "invalid-envelope"},
                "detail": {"DataType": "String", "StringValue": "Records must be a non-empty list"},
                "source_message_id": {"DataType": "String", "StringValue": "m-9"},
                "receive_count": {"DataType": "Number", "StringValue": "4"},
            },
        },
    )

    stubbed.handler.send_to_dead_letter_queue(
        DLQ_URL, original, reason="invalid-envelope", detail="Records must be a non-empty list"
    )


def test_dead_letter_detail_is_bounded_and_empty_body_replaced(stubbed: Stubbed) -> None:
    """A long detail is cut to 1000 characters and an empty body (SQS refuses it) is replaced."""
    original = QueueMessage(message_id="m-1", receipt_handle="rh-1", body="")
    stubbed.sqs.add_response(
        "send_message",
        {"MessageId": "dlq-2"},
        {
            "QueueUrl": DLQ_URL,
            "MessageBody": "(empty body)",
            "MessageAttributes": {
                "reason": {"DataType": "String", "StringValue": "invalid-envelope"},
                "detail": {"DataType": "String", "StringValue": "d" * 1000},
                "source_message_id": {"DataType": "String", "StringValue": "m-1"},
                "receive_count": {"DataType": "Number", "StringValue": "1"},
            },
        },
    )

    stubbed.handler.send_to_dead_letter_queue(DLQ_URL, original, reason="invalid-envelope", detail="d" * 5000)


def test_dead_letter_send_failure_is_translated(stubbed: Stubbed) -> None:
    """A throttled SendMessage to the DLQ is transient."""
    stubbed.sqs.add_client_error(
        "send_message", service_error_code="ThrottlingException", http_status_code=400
    )

    with pytest.raises(AwsUnavailableError):
        stubbed.handler.send_to_dead_letter_queue(DLQ_URL, message(1), reason="r", detail="d")


def test_change_visibility_goes_in_tens_and_counts_accepted(stubbed: Stubbed) -> None:
    """12 visibility changes are two calls (10 + 2); a failed entry is not counted."""
    items = [(message(i), 30) for i in range(12)]
    stubbed.sqs.add_response(
        "change_message_visibility_batch",
        {"Successful": [{"Id": str(i)} for i in range(9)], "Failed": [failure("9")]},
        {
            "QueueUrl": QUEUE_URL,
            "Entries": [
                {"Id": str(i), "ReceiptHandle": f"rh-{i}", "VisibilityTimeout": 30} for i in range(10)
            ],
        },
    )
    stubbed.sqs.add_response(
        "change_message_visibility_batch",
        {"Successful": [{"Id": "0"}, {"Id": "1"}], "Failed": []},
        {
            "QueueUrl": QUEUE_URL,
            "Entries": [
                {"Id": str(i), "ReceiptHandle": f"rh-{i + 10}", "VisibilityTimeout": 30} for i in range(2)
            ],
        },
    )

    assert stubbed.handler.change_visibility(items) == 11


def test_queue_attributes_read_the_redrive_policy(stubbed: Stubbed) -> None:
    """The visibility timeout and the DLQ ARN and max receive count come from the queue."""
    policy = {"deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:dlq", "maxReceiveCount": "5"}
    stubbed.sqs.add_response(
        "get_queue_attributes",
        {"Attributes": {"VisibilityTimeout": "45", "RedrivePolicy": json.dumps(policy)}},
        {"QueueUrl": QUEUE_URL, "AttributeNames": ["VisibilityTimeout", "RedrivePolicy"]},
    )

    attributes = stubbed.handler.queue_attributes()

    assert attributes.visibility_timeout_seconds == 45
    assert attributes.dead_letter_queue_arn == policy["deadLetterTargetArn"]
    assert attributes.max_receive_count == 5


def test_queue_url_for_arn_is_derived_without_a_call(stubbed: Stubbed) -> None:
    """A DLQ ARN becomes its URL at the source queue's endpoint, with no GetQueueUrl call."""
    url = stubbed.handler.queue_url_for_arn("arn:aws:sqs:us-east-1:123456789012:cloud-job-results-dlq")

    assert url == DLQ_URL


@pytest.mark.parametrize(
    ("queue_url", "expected"),
    [
        (
            "https://sqs.eu-central-1.amazonaws.com/123456789012/jobs",
            "https://sqs.eu-central-1.amazonaws.com/123456789012/jobs-dlq",
        ),
        ("http://127.0.0.1:5000/123456789012/jobs", "http://127.0.0.1:5000/123456789012/jobs-dlq"),
        (
            "http://sqs.eu-central-1.localhost.localstack.cloud:4566/000000000000/jobs",
            "http://sqs.eu-central-1.localhost.localstack.cloud:4566/000000000000/jobs-dlq",
        ),
        ("http://proxy:8080/aws/123456789012/jobs", "http://proxy:8080/aws/123456789012/jobs-dlq"),
    ],
)
def test_dead_letter_queue_url_keeps_the_endpoint(queue_url: str, expected: str) -> None:
    """Scheme, host, port and any path prefix come from the source queue; account and name from the ARN."""
    account = expected.rsplit("/", 2)[1]
    arn = f"arn:aws:sqs:eu-central-1:{account}:jobs-dlq"

    assert dead_letter_queue_url(queue_url, arn) == expected


def test_queue_url_for_a_malformed_arn_is_a_configuration_error(stubbed: Stubbed) -> None:
    """A string that is not an SQS ARN is refused without a call."""
    with pytest.raises(ConfigurationError, match="not an SQS queue ARN"):
        stubbed.handler.queue_url_for_arn("cloud-job-results-dlq")
