"""CloudResourceHandler: the SQS and S3 side, behind one narrow interface.

The boto3 clients are injected; botocore exceptions never leave this module: they become
:class:`~app.errors.PermanentError` or :class:`~app.errors.TransientError` subclasses here.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
)

from app.core.decompress import gunzip_capped, looks_gzipped, read_capped
from app.core.envelope import ObjectRef, QueueMessage
from app.errors import (
    AccessDeniedError,
    AwsUnavailableError,
    CloudJobMetricsError,
    ConfigurationError,
    EndpointUnreachableError,
    EnvelopeError,
    ObjectNotFoundError,
    PermanentError,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

SQS_BATCH_LIMIT = 10
READ_CHUNK_BYTES = 64 * 1024
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "NoSuchBucket", "404"})
_QUEUE_MISSING_CODES = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "InvalidAddress"}
)
_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "403"})
# SQS answers these when the queue's KMS key refuses the caller (SSE-KMS queues).
_KMS_DENIED_CODES = frozenset({"KmsAccessDenied", "KMS.AccessDeniedException", "KMS.DisabledException"})
_CONFIG_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidSecurity",
    }
)


# Characters SQS accepts in message bodies and attributes
# (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html).
_SQS_UNSAFE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def sqs_safe(text: str) -> str:
    """Replace the characters SQS refuses (control characters, lone surrogates) with ``?``."""
    return _SQS_UNSAFE.sub("?", text)


@dataclass(frozen=True, slots=True)
class QueueAttributes:
    """What the forwarder needs to know about its queue."""

    visibility_timeout_seconds: int
    dead_letter_queue_arn: str | None
    max_receive_count: int | None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """Receipt handles deleted, and the ones SQS still refused after retries (id → reason)."""

    deleted: int
    failed: Mapping[str, str]


# The IAM permission each API call needs (AWS checks the batch calls under the single-message
# permission: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-api-permissions-reference.html).
PERMISSIONS: Mapping[str, str] = {
    "GetQueueAttributes": "sqs:GetQueueAttributes",
    "ReceiveMessage": "sqs:ReceiveMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "SendMessage": "sqs:SendMessage",
    "SendMessageBatch": "sqs:SendMessage",
    "StartMessageMoveTask": "sqs:StartMessageMoveTask",
    "GetObject": "s3:GetObject",
    "HeadBucket": "s3:ListBucket",
    "GetBucketVersioning": "s3:GetBucketVersioning",
    "ListObjectsV2": "s3:ListBucket",
    # https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectVersions.html
    "ListObjectVersions": "s3:ListBucketVersions",
}
# The KMS permission an SSE-KMS queue needs for a call, when SQS blames the key.
_KMS_PERMISSIONS: Mapping[str, str] = {
    "SendMessage": "kms:GenerateDataKey",
    "SendMessageBatch": "kms:GenerateDataKey",
}
# AWS's access-denied messages for same-account requests name the action they refused:
# "User: arn:… is not authorized to perform: kms:Decrypt on resource: …"
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html).
_NAMED_ACTION = re.compile(r"not authorized to perform:? ([a-z0-9-]+:[A-Za-z0-9*]+)")


def error_code(exc: ClientError) -> str:
    """The AWS error code of ``exc`` (``AccessDenied``, ``NoSuchKey`` …), or ``""``."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def _is_server_side(exc: ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return (
        int(status) >= 500
        or "Throttl" in error_code(exc)
        or error_code(exc)
        in {
            "RequestThrottled",
            "SlowDown",
            "RequestTimeout",
            "ServiceUnavailable",
            "InternalError",
            "KMS.ThrottlingException",
        }
    )


def named_action(exc: ClientError) -> str | None:
    """The IAM action an access-denied message names (``kms:Decrypt``), if it names one."""
    match = _NAMED_ACTION.search(str(exc.response.get("Error", {}).get("Message", "")))
    return match.group(1) if match else None


def access_denied(
    action: str, exc: ClientError, *, resource: str = "", permission: str | None = None
) -> AccessDeniedError | None:
    """An :class:`AccessDeniedError` if ``exc`` is AWS refusing ``action``, else None.

    The permission is ``permission`` or the one :data:`PERMISSIONS` lists for ``action``, unless the message
    blames another service's permission (``kms:Decrypt`` behind an S3 read or an SQS receive).
    The message's own name for an action of the same service is not used: emulators name the
    API call (``sqs:DeleteMessageBatch``) where AWS checks ``sqs:DeleteMessage``.
    """
    code = error_code(exc)
    service = PERMISSIONS.get(action, "").split(":")[0]
    if code in _KMS_DENIED_CODES:
        return AccessDeniedError(
            action, _KMS_PERMISSIONS.get(action, "kms:Decrypt"), resource=resource, code=code
        )
    if code not in _DENIED_CODES:
        return None
    named = named_action(exc)
    needed = permission or PERMISSIONS.get(action, action)
    if named and named.split(":")[0] != service:
        needed = named
    return AccessDeniedError(action, needed, resource=resource, code=code)


def translate(action: str, exc: ClientError | BotoCoreError, *, resource: str = "") -> CloudJobMetricsError:
    """Map a botocore failure of the API call ``action`` onto the package's error tree."""
    if isinstance(exc, BotoCoreError):
        return _translate_transport(action, exc)
    code = error_code(exc)
    if _is_server_side(exc):
        return AwsUnavailableError(f"{action} failed ({code or 'server error'}): {exc}")
    if code in _QUEUE_MISSING_CODES:
        return ConfigurationError(f"{action}: the queue does not exist ({code})")
    denied = access_denied(action, exc, resource=resource)
    if denied is not None:
        return denied
    if code in _CONFIG_CODES:
        return ConfigurationError(f"{action} is not permitted ({code}); check the credentials")
    return PermanentError(f"{action} failed ({code}): {exc}", reason=f"aws-{code or 'error'}")


def _translate_transport(action: str, exc: BotoCoreError) -> CloudJobMetricsError:
    """Map a failure that happened before any AWS answer (parameters, credentials, connection)."""
    if isinstance(exc, ParamValidationError):
        # botocore refused the request before sending it (an invalid bucket name, say): the
        # input can never become valid, so retrying would only delay the dead-letter queue.
        return EnvelopeError(f"{action}: {exc}")
    if isinstance(exc, NoCredentialsError | NoRegionError):
        return ConfigurationError(f"{action}: {exc} (set AWS_PROFILE, AWS_REGION or credentials)")
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return EndpointUnreachableError(f"{action} failed: {exc}")
    return AwsUnavailableError(f"{action} failed: {exc}")


@contextmanager
def aws_call(action: str, *, resource: str = "") -> Iterator[None]:
    """Translate botocore failures of the API call ``action`` into the package's error tree."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate(action, exc, resource=resource) from exc


def dead_letter_queue_url(queue_url: str, dead_letter_queue_arn: str) -> str:
    """The URL of a dead-letter queue, from its ARN and the URL of its source queue.

    SQS requires a dead-letter queue in the same account and region as its source
    (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html),
    so it lives at the same endpoint; only the account and name in the path differ. No
    GetQueueUrl call, hence no ``sqs:GetQueueUrl`` permission.
    """
    parts = dead_letter_queue_arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[4] or not parts[5]:
        raise ConfigurationError(f"{dead_letter_queue_arn!r} is not an SQS queue ARN")
    split = urlsplit(queue_url)
    if not split.scheme or not split.netloc:
        raise ConfigurationError(f"{queue_url!r} is not a queue URL")
    # The path is /<account>/<name>, after any prefix an emulator or proxy adds.
    prefix = split.path.rstrip("/").rsplit("/", 2)[0] if split.path.count("/") >= 2 else ""
    return urlunsplit((split.scheme, split.netloc, f"{prefix}/{parts[4]}/{parts[5]}", "", ""))


class CloudResourceHandler:
    """Receive, read, acknowledge: every SQS and S3 call the forwarder makes."""

    def __init__(self, *, sqs_client: SQSClient, s3_client: S3Client, queue_url: str) -> None:
        self.sqs = sqs_client
        self.s3 = s3_client
        self.queue_url = queue_url

    def queue_attributes(self) -> QueueAttributes:
        """Read the visibility timeout and the redrive policy (which names the DLQ)."""
        with aws_call("GetQueueAttributes", resource=self.queue_url):
            response = self.sqs.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
            )
        attributes = response.get("Attributes", {})
        policy: dict[str, Any] = {}
        if attributes.get("RedrivePolicy"):
            try:
                policy = json.loads(attributes["RedrivePolicy"])
            except ValueError:
                log.warning("queue.redrive_policy_unreadable queue=%s", self.queue_url)
        max_receive = policy.get("maxReceiveCount")
        return QueueAttributes(
            visibility_timeout_seconds=int(attributes.get("VisibilityTimeout", 30)),
            dead_letter_queue_arn=policy.get("deadLetterTargetArn"),
            max_receive_count=int(max_receive) if max_receive is not None else None,
        )

    def queue_url_for_arn(self, arn: str) -> str:
        """The URL of a queue beside this one (its dead-letter queue) from its ARN, without a call."""
        return dead_letter_queue_url(self.queue_url, arn)

    def bucket_problem(self, bucket: str) -> str | None:
        """None if ``bucket`` answers HeadBucket, else the error code.

        403 is expected without ``s3:ListBucket``, which the forwarder does not need.
        """
        try:
            self.s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            return error_code(exc) or "error"
        except BotoCoreError as exc:
            return type(exc).__name__
        return None

    def receive(
        self, *, wait_time_seconds: int, visibility_timeout_seconds: int | None = None
    ) -> list[QueueMessage]:
        """Receive up to 10 messages with long polling."""
        request: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MaxNumberOfMessages": SQS_BATCH_LIMIT,
            "WaitTimeSeconds": wait_time_seconds,
            "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp"],
        }
        if visibility_timeout_seconds is not None:
            request["VisibilityTimeout"] = visibility_timeout_seconds
        with aws_call("ReceiveMessage", resource=self.queue_url):
            response = self.sqs.receive_message(**request)
        return [QueueMessage.from_sqs(raw) for raw in response.get("Messages", [])]

    def fetch(self, ref: ObjectRef, *, max_bytes: int) -> bytes:
        """Read the notified object (that exact version), at most ``max_bytes`` after inflating.

        The size in the notification and the response's ``ContentLength`` are checked before the
        body is read; gzip (recognised by its magic bytes, whatever the key or ``Content-Encoding``
        say) is inflated as it streams in, and the cap applies to the inflated bytes. When the decoded key is
        missing and the notification spelled it differently (EventBridge), the raw key is read.
        """
        if ref.size is not None and ref.size > max_bytes:
            raise PermanentError(
                f"{ref.uri} is {ref.size} bytes, over the {max_bytes}-byte cap",
                reason="object-too-large",
            )
        try:
            return self._read(ref, ref.key, max_bytes=max_bytes)
        except ObjectNotFoundError as exc:
            if ref.raw_key is None or ref.raw_key == ref.key or exc.reason != ObjectNotFoundError.reason:
                raise
            log.info("object.raw_key_fallback uri=%s raw_key=%r", ref.uri, ref.raw_key)
            try:
                return self._read(ref, ref.raw_key, max_bytes=max_bytes)
            except ObjectNotFoundError as raw_exc:
                raise ObjectNotFoundError(
                    f"{exc}; the key as spelled in the event, {ref.raw_key!r}, cannot be read either",
                    reason=raw_exc.reason,
                ) from raw_exc

    def _read(self, ref: ObjectRef, key: str, *, max_bytes: int) -> bytes:
        uri = f"s3://{ref.bucket}/{key}"
        request: dict[str, Any] = {"Bucket": ref.bucket, "Key": key}
        if ref.version_id:
            request["VersionId"] = ref.version_id
        elif ref.etag:
            # Without a version, the ETag pins the notified content: an object overwritten since
            # the event fails the precondition instead of being mistaken for the notified one.
            request["IfMatch"] = f'"{ref.etag.strip(chr(34))}"'
        try:
            response = self.s3.get_object(**request)
            body = response["Body"]
            try:
                length = int(response.get("ContentLength", 0))
                if length > max_bytes:
                    raise PermanentError(
                        f"{uri} is {length} bytes, over the {max_bytes}-byte cap",
                        reason="object-too-large",
                    )
                chunks = body.iter_chunks(READ_CHUNK_BYTES)
                head = next(chunks, b"")
                stream = itertools.chain((head,), chunks)
                if looks_gzipped(head):
                    return gunzip_capped(stream, max_bytes=max_bytes, what=f"{uri} (gzip)")
                return read_capped(stream, max_bytes=max_bytes, what=uri)
            finally:
                body.close()
        except ClientError as exc:
            raise self._object_error(ref, uri, exc) from exc
        except BotoCoreError as exc:
            raise translate("GetObject", exc, resource=uri) from exc

    @staticmethod
    def _object_error(ref: ObjectRef, uri: str, exc: ClientError) -> CloudJobMetricsError:
        code = error_code(exc)
        version = f" version {ref.version_id}" if ref.version_id else ""
        if _is_server_side(exc):
            return translate("GetObject", exc, resource=uri)
        if code in _MISSING_CODES:
            return ObjectNotFoundError(f"{uri}{version} cannot be read ({code})")
        if code in _DENIED_CODES and named_action(exc) == "s3:ListBucket":
            # Without s3:ListBucket, S3 answers 403 instead of 404 for a missing key; AWS's message
            # then blames s3:ListBucket, which the forwarder does not need: the object is gone.
            return ObjectNotFoundError(f"{uri}{version} cannot be read ({code}, no s3:ListBucket)")
        # Any other 403 (a bare "Access Denied" included) is treated as the policy refusing the
        # read: stopping the run keeps the message on the queue, whereas dead-lettering would
        # empty the queue into the DLQ when the policy lacks s3:GetObject.
        # Reading a given version is checked as s3:GetObjectVersion
        # (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html#API_GetObject_Permissions).
        permission = "s3:GetObjectVersion" if ref.version_id else "s3:GetObject"
        denied = access_denied("GetObject", exc, resource=uri, permission=permission)
        if denied is not None:
            return denied
        if code in {"PreconditionFailed", "412"}:
            return ObjectNotFoundError(
                f"{uri} was overwritten after the notification (ETag {ref.etag} no longer current)",
                reason="object-superseded",
            )
        return PermanentError(f"GetObject {uri} failed ({code}): {exc}", reason=f"aws-{code or 'error'}")

    def delete(self, messages: Sequence[QueueMessage], *, attempts: int = 3) -> DeleteResult:
        """Delete ``messages`` in batches of ten, retrying the entries SQS reports as failed."""
        deleted = 0
        failed: dict[str, str] = {}
        for start in range(0, len(messages), SQS_BATCH_LIMIT):
            pending = {str(i): m for i, m in enumerate(messages[start : start + SQS_BATCH_LIMIT])}
            for _ in range(attempts):
                entries = [{"Id": i, "ReceiptHandle": m.receipt_handle} for i, m in pending.items()]
                try:
                    with aws_call("DeleteMessageBatch", resource=self.queue_url):
                        response = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)  # type: ignore[arg-type]
                except (AwsUnavailableError, PermanentError) as exc:
                    failures = {i: str(exc) for i in pending}
                else:
                    deleted += len(response.get("Successful", []))
                    failed_entries = response.get("Failed", [])
                    failures = {f["Id"]: f.get("Message") or f["Code"] for f in failed_entries}
                    # A sender fault (an expired receipt handle, say) fails the same way again.
                    hopeless = {f["Id"] for f in failed_entries if f.get("SenderFault")}
                    for entry_id in hopeless & pending.keys():
                        failed[pending.pop(entry_id).message_id] = failures[entry_id]
                pending = {i: pending[i] for i in failures if i in pending}
                if not pending:
                    break
            for entry_id, message in pending.items():
                failed[message.message_id] = failures.get(entry_id, "unknown")
        return DeleteResult(deleted=deleted, failed=failed)

    def change_visibility(self, items: Sequence[tuple[QueueMessage, int]]) -> int:
        """Set each message's visibility timeout (seconds); return how many SQS accepted."""
        accepted = 0
        for start in range(0, len(items), SQS_BATCH_LIMIT):
            chunk = items[start : start + SQS_BATCH_LIMIT]
            entries = [
                {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": seconds}
                for i, (m, seconds) in enumerate(chunk)
            ]
            with aws_call("ChangeMessageVisibilityBatch", resource=self.queue_url):
                response = self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)  # type: ignore[arg-type]
            accepted += len(response.get("Successful", []))
            for failure in response.get("Failed", []):
                log.info("visibility.change_failed id=%s code=%s", failure["Id"], failure.get("Code"))
        return accepted

    def send_to_dead_letter_queue(
        self, dlq_url: str, message: QueueMessage, *, reason: str, detail: str
    ) -> None:
        """Copy ``message`` to the DLQ with the reason as message attributes."""
        attributes: dict[str, Any] = {
            "reason": {"DataType": "String", "StringValue": sqs_safe(reason)},
            "detail": {"DataType": "String", "StringValue": sqs_safe(detail or reason)[:1000]},
            "source_message_id": {"DataType": "String", "StringValue": message.message_id},
            "receive_count": {"DataType": "Number", "StringValue": str(message.receive_count)},
        }
        with aws_call("SendMessage", resource=dlq_url):
            self.sqs.send_message(
                QueueUrl=dlq_url, MessageBody=message.body or "(empty body)", MessageAttributes=attributes
            )
