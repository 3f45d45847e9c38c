"""Finding the queues an operator's command works on, from the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.aws.resources import CloudResourceHandler
from app.errors import ConfigurationError
from app.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


def require_queue_url(settings: Settings) -> str:
    """The source queue, or a configuration error saying how to give it."""
    if not settings.queue_url:
        raise ConfigurationError("no queue URL: pass --queue-url or set SQS_QUEUE_URL")
    return settings.queue_url


def dead_letter_queue_url(settings: Settings, sqs: SQSClient, s3: S3Client) -> str:
    """``--dead-letter-queue-url``, else the one the source queue's RedrivePolicy names."""
    if settings.dead_letter_queue_url:
        return settings.dead_letter_queue_url
    if not settings.queue_url:
        raise ConfigurationError(
            "no dead-letter queue: pass --dead-letter-queue-url, "
            "or --queue-url of a queue with a RedrivePolicy"
        )
    resources = CloudResourceHandler(sqs_client=sqs, s3_client=s3, queue_url=settings.queue_url)
    arn = resources.queue_attributes().dead_letter_queue_arn
    if not arn:
        raise ConfigurationError(
            f"the queue {settings.queue_url} has no RedrivePolicy: pass --dead-letter-queue-url"
        )
    return resources.queue_url_for_arn(arn)
