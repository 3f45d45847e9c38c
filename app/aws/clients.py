"""The real boto3 clients, built from :class:`~app.settings.Settings`; only entry points call this."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
from botocore.config import Config

from app.aws.timestamps import use_fast_timestamps
from app.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

_REGION_IN_URL = re.compile(r"sqs[.-]([a-z]{2}(?:-[a-z]+)+-\d)\.")


def region_for(settings: Settings) -> str | None:
    """The configured region, else the one in an AWS queue URL (``sqs.<region>.amazonaws.com``)."""
    if settings.region:
        return settings.region
    match = _REGION_IN_URL.search(settings.queue_url or "")
    return match.group(1) if match else None


def aws_clients(settings: Settings, *, session: boto3.Session | None = None) -> tuple[SQSClient, S3Client]:
    """SQS and S3 clients sharing one session (``AWS_PROFILE``) and one retry policy."""
    if session is None:
        session = _session(settings, region_for(settings))
    if session.region_name is None and settings.endpoint_url:
        # An emulator ignores the region, but botocore needs one to sign requests.
        session = _session(settings, "us-east-1")
    config = Config(
        # "standard" retries throttling and 5xx with jittered backoff and a retry quota; the
        # forwarder's own backoff (message visibility) takes over once these few attempts fail.
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=5,
        # Above the 20 s long poll, so a quiet queue is never mistaken for a dead connection.
        read_timeout=30,
        max_pool_connections=settings.connection_pool_size(),
    )
    sqs = session.client("sqs", endpoint_url=settings.endpoint_url, config=config)
    s3 = session.client("s3", endpoint_url=settings.endpoint_url, config=config)
    return sqs, s3


def _session(settings: Settings, region: str | None) -> boto3.Session:
    core = botocore.session.get_session()
    use_fast_timestamps(core)
    return boto3.Session(profile_name=settings.profile, region_name=region, botocore_session=core)


def secrets_client(settings: Settings, secret_arn: str) -> Any:
    """A Secrets Manager client in the secret's region (from its ARN), on the same profile and endpoint."""
    parts = secret_arn.split(":")
    region = parts[3] if len(parts) > 3 and parts[3] else region_for(settings) or "us-east-1"
    session = boto3.Session(profile_name=settings.profile, region_name=region)
    config = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=10)
    return session.client("secretsmanager", endpoint_url=settings.endpoint_url, config=config)
