"""The SQS and S3 calls of the operator's commands (backfill, dlq, redrive).

Kept apart from :class:`~app.aws.resources.CloudResourceHandler`, the forwarder's narrow
interface: these calls need permissions the forwarder does not (``s3:ListBucket``,
``sqs:SendMessage`` on the source queue, ``sqs:StartMessageMoveTask``). botocore errors are
translated here as there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from app.aws.resources import SQS_BATCH_LIMIT, access_denied, aws_call, error_code, translate
from app.core.operator import ListedObject
from app.errors import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReceivedLetter:
    """A message received for inspection or a move, with its message attributes as strings."""

    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, str]


def list_objects(s3: S3Client, bucket: str, prefix: str) -> Iterator[ListedObject]:
    """Every object under ``prefix``; on a versioned bucket, the latest version with its id.

    A missing bucket is a :class:`~app.errors.ConfigurationError`; a denied call an
    :class:`~app.errors.AccessDeniedError` naming the permission (``s3:GetBucketVersioning``, then
    ``s3:ListBucketVersions`` on a versioned bucket or ``s3:ListBucket`` on another).
    """
    if _versioned(s3, bucket):
        yield from _list_versions(s3, bucket, prefix)
        return
    paginator = s3.get_paginator("list_objects_v2")
    with _listing(bucket, "ListObjectsV2"):
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield _listed(bucket, item)


def _list_versions(s3: S3Client, bucket: str, prefix: str) -> Iterator[ListedObject]:
    paginator = s3.get_paginator("list_object_versions")
    with _listing(bucket, "ListObjectVersions"):
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            # Delete markers are listed apart; a key whose latest entry is one is simply absent.
            for item in page.get("Versions", []):
                if not item.get("IsLatest"):
                    continue
                version = item.get("VersionId")
                yield _listed(bucket, item, version_id=version if version and version != "null" else None)


def _listed(bucket: str, item: Mapping[str, Any], *, version_id: str | None = None) -> ListedObject:
    """One entry of a ListObjectsV2 or ListObjectVersions page."""
    return ListedObject(
        bucket=bucket,
        key=item["Key"],
        size=int(item.get("Size", 0)),
        etag=str(item.get("ETag", "")).strip('"'),
        last_modified=item["LastModified"].timestamp(),
        version_id=version_id,
    )


def _versioned(s3: S3Client, bucket: str) -> bool:
    # A refusal stops the run rather than listing without versions: which call lists, and whether
    # the notifications name a version, must not depend on a permission quietly missing.
    with _listing(bucket, "GetBucketVersioning"):
        status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    return status in {"Enabled", "Suspended"}


@contextmanager
def _listing(bucket: str, action: str) -> Iterator[None]:
    """Translate failures of the bucket call ``action``: a missing bucket, access denied, the rest."""
    try:
        yield
    except ClientError as exc:
        if error_code(exc) in {"NoSuchBucket", "404"}:
            raise ConfigurationError(f"bucket {bucket!r} does not exist") from None
        raise translate(action, exc, resource=f"bucket {bucket}") from exc
    except BotoCoreError as exc:
        raise translate(action, exc, resource=f"bucket {bucket}") from exc


def send_batch(sqs: SQSClient, queue_url: str, bodies: Sequence[str], *, attempts: int = 3) -> list[int]:
    """Send ``bodies`` (at most ten) with SendMessageBatch; return the indexes still failing."""
    pending = dict(enumerate(bodies))
    for _ in range(attempts):
        entries = [{"Id": str(i), "MessageBody": body} for i, body in pending.items()]
        with aws_call("SendMessageBatch", resource=queue_url):
            response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)  # type: ignore[arg-type]
        for ok in response.get("Successful", []):
            pending.pop(int(ok["Id"]), None)
        hopeless = {int(f["Id"]) for f in response.get("Failed", []) if f.get("SenderFault")}
        if not pending or hopeless >= pending.keys():
            break
    return sorted(pending)


def receive_letters(
    sqs: SQSClient, queue_url: str, *, visibility_timeout_seconds: int
) -> list[ReceivedLetter]:
    """Receive up to ten messages with their message attributes, hidden for the given time."""
    with aws_call("ReceiveMessage", resource=queue_url):
        response = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=SQS_BATCH_LIMIT,
            WaitTimeSeconds=1,
            VisibilityTimeout=visibility_timeout_seconds,
            MessageAttributeNames=["All"],
        )
    letters = []
    for raw in response.get("Messages", []):
        attributes = {
            name: str(value.get("StringValue", ""))
            for name, value in (raw.get("MessageAttributes") or {}).items()
        }
        letters.append(
            ReceivedLetter(raw["MessageId"], raw["ReceiptHandle"], raw.get("Body", ""), attributes)
        )
    return letters


def release(sqs: SQSClient, queue_url: str, letters: Sequence[ReceivedLetter]) -> int:
    """Make ``letters`` visible again at once; return how many SQS accepted."""
    accepted = 0
    for start in range(0, len(letters), SQS_BATCH_LIMIT):
        chunk = letters[start : start + SQS_BATCH_LIMIT]
        entries = [
            {"Id": str(i), "ReceiptHandle": letter.receipt_handle, "VisibilityTimeout": 0}
            for i, letter in enumerate(chunk)
        ]
        with aws_call("ChangeMessageVisibilityBatch", resource=queue_url):
            response = sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)  # type: ignore[arg-type]
        accepted += len(response.get("Successful", []))
    return accepted


def delete_letters(sqs: SQSClient, queue_url: str, letters: Sequence[ReceivedLetter]) -> int:
    """Delete ``letters`` (at most ten); return how many SQS deleted."""
    if not letters:
        return 0
    entries = [{"Id": str(i), "ReceiptHandle": letter.receipt_handle} for i, letter in enumerate(letters)]
    with aws_call("DeleteMessageBatch", resource=queue_url):
        response = sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)  # type: ignore[arg-type]
    for failure in response.get("Failed", []):
        log.warning("redrive.delete_failed id=%s code=%s", failure["Id"], failure.get("Code"))
    return len(response.get("Successful", []))


def queue_arn(sqs: SQSClient, queue_url: str) -> str:
    """The ARN of the queue at ``queue_url``."""
    with aws_call("GetQueueAttributes", resource=queue_url):
        response = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return response["Attributes"]["QueueArn"]


def approximate_count(sqs: SQSClient, queue_url: str) -> int:
    """``ApproximateNumberOfMessages`` of the queue (visible messages)."""
    with aws_call("GetQueueAttributes", resource=queue_url):
        response = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )
    return int(response["Attributes"].get("ApproximateNumberOfMessages", 0))


def start_move_task(sqs: SQSClient, *, source_arn: str, destination_arn: str) -> str | None:
    """Start SQS's own dead-letter redrive; None when the endpoint refuses or lacks it.

    Any refusal (not implemented by an emulator, ``sqs:StartMessageMoveTask`` not granted, a task
    already running) leaves the move to the caller's message-by-message path, which needs only
    receive, send and delete (as the native move does) and visibility changes; a connection
    failure is raised. A refusal for want of the permission is logged naming it.
    """
    request: dict[str, Any] = {"SourceArn": source_arn, "DestinationArn": destination_arn}
    try:
        response = sqs.start_message_move_task(**request)
    except ClientError as exc:
        denied = access_denied("StartMessageMoveTask", exc, resource=source_arn)
        log.warning(
            "redrive.native_unavailable code=%s%s: moving message by message",
            error_code(exc) or "error",
            f" missing={denied.permission}" if denied is not None else "",
        )
        return None
    except BotoCoreError as exc:
        raise translate("StartMessageMoveTask", exc) from exc
    return str(response.get("TaskHandle", ""))
