"""What the emulator allows: the AWS calls alone, no parsing beyond the key, no metrics.

Shaped like the forwarder (``Settings.concurrency`` receive loops, ``Settings.fetch_workers`` S3
GETs in flight on one shared pool): each loop receives 10 (long poll), fetches their objects
concurrently on the pool, reads the bodies, and deletes the 10 with one DeleteMessageBatch. A loop
stops at its first empty receive.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_plus


def drain_ceiling(
    queue_url: str, *, sqs: Any, s3: Any, loops: int, fetch_workers: int, wait_seconds: int = 1
) -> int:
    """Drain ``queue_url`` with bare AWS calls; return the number of messages deleted."""
    get_pool = ThreadPoolExecutor(max_workers=fetch_workers, thread_name_prefix="ceiling-get")

    def fetch(message: dict[str, Any]) -> int:
        s3_info = json.loads(message["Body"])["Records"][0]["s3"]
        response = s3.get_object(Bucket=s3_info["bucket"]["name"], Key=unquote_plus(s3_info["object"]["key"]))
        return len(response["Body"].read())

    def loop() -> int:
        deleted = 0
        while True:
            response = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
            )
            messages = response.get("Messages")
            if not messages:
                return deleted
            list(get_pool.map(fetch, messages))
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
            result = sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
            if result.get("Failed"):
                raise RuntimeError(f"DeleteMessageBatch failed: {result['Failed']}")
            deleted += len(messages)

    try:
        with ThreadPoolExecutor(max_workers=loops, thread_name_prefix="ceiling-loop") as loop_pool:
            return sum(future.result() for future in [loop_pool.submit(loop) for _ in range(loops)])
    finally:
        get_pool.shutdown()
