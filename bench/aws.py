"""boto3 clients for the emulator, with connection pools big enough for the chosen concurrency."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

REGION = "us-east-1"


def make_client(service: str, endpoint_url: str, *, pool_size: int = 10) -> Any:
    """A boto3 client for ``service`` on the emulator (static dummy credentials, path-style S3)."""
    config = Config(
        region_name=REGION,
        max_pool_connections=max(10, pool_size),
        retries={"mode": "standard", "max_attempts": 3},
        s3={"addressing_style": "path"},
    )
    session: Any = boto3.session.Session()  # a fresh session per client: thread-safe to create
    return session.client(
        service,
        endpoint_url=endpoint_url,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name=REGION,
        config=config,
    )
