"""S3 event notifications in the exact format S3 delivers to SQS, for tests and the benchmark.

Used where the emulator's own notifications would not do: multi-record messages, AWS's key
encoding (``quote_plus`` keeping ``/``: a space becomes ``+``), version ids, or seeding thousands
of messages quickly. See https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any
from urllib.parse import quote_plus

_sequencer = itertools.count(int(time.time() * 1e6))


def s3_event_record(
    bucket: str,
    key: str,
    *,
    event_name: str = "ObjectCreated:Put",
    size: int | None = None,
    etag: str | None = None,
    version_id: str | None = None,
    event_time: float | None = None,
    region: str = "us-east-1",
) -> dict[str, Any]:
    """One record of an S3 event notification, key URL-encoded as S3 does."""
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/")}
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["eTag"] = etag.strip('"')
    if version_id is not None:
        obj["versionId"] = version_id
    obj["sequencer"] = f"{next(_sequencer):016X}"
    when = time.time() if event_time is None else event_time
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + f".{int(when * 1000) % 1000:03d}Z"
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": stamp,
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AROAEXAMPLEID:job-runner"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": f"{next(_sequencer):016X}", "x-amz-id-2": "local"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "job-results-json",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKEXAMPLE"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }


def s3_notification(*records: dict[str, Any]) -> str:
    """The SQS message body S3 sends: ``{"Records": [...]}``."""
    return json.dumps({"Records": list(records)})
