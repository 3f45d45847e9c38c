"""The original forwarder loop, re-implemented as the yardstick.

One message per ReceiveMessage (short poll), only ``Records[0]`` of it, GetObject, ``json.loads``,
one DogStatsD gauge per top-level number plus one event, one DeleteMessage per message, strictly
sequential, until a receive comes back empty. The only liberty taken: the key is decoded with
``unquote_plus`` (S3 URL-encodes keys in notifications); without it GetObject fails on real keys.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus


def drain_baseline(queue_url: str, *, sqs: Any, s3: Any, statsd: Any, namespace: str = "cloud_job") -> int:
    """Drain ``queue_url`` the original way; return the number of messages handled."""
    handled = 0
    while True:
        response = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1)
        messages = response.get("Messages")
        if not messages:
            return handled
        message = messages[0]
        record = json.loads(message["Body"])["Records"][0]
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
        job = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

        success = bool(job.get("job_success"))
        tags = ["cloud_job_metric"]
        for name, value in job.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                statsd.gauge(f"{namespace}.{name}", value, tags=tags)
        statsd.event(
            title=f"Job {'succeeded' if success else 'failed'}: {key}",
            message=f"s3://{bucket}/{key}\n{json.dumps(job)}",
            alert_type="success" if success else "error",
            tags=tags,
        )
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        handled += 1
