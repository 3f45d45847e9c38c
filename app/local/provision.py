"""Create the bucket, queue, dead-letter queue and notification, as the Terraform module does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


@dataclass(frozen=True, slots=True)
class Stack:
    """What :func:`provision` created."""

    bucket: str
    queue_url: str
    queue_arn: str
    dead_letter_queue_url: str


def provision(
    sqs: SQSClient,
    s3: S3Client,
    *,
    bucket: str,
    queue: str,
    max_receive_count: int = 5,
    visibility_timeout_seconds: int = 30,
    versioning: bool = True,
    notification: bool = True,
    suffix: str = ".json",
) -> Stack:
    """Create (or reuse) the resources and wire the ``s3:ObjectCreated:*`` notification."""
    dlq_url = sqs.create_queue(QueueName=f"{queue}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=queue,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout_seconds),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
            ),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    s3.create_bucket(Bucket=bucket)
    if versioning:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    if notification:
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": queue_arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": suffix}]}},
                    }
                ]
            },
        )
    return Stack(bucket=bucket, queue_url=queue_url, queue_arn=queue_arn, dead_letter_queue_url=dlq_url)
