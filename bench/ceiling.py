"""The ceiling: the fastest bare concurrent boto3 drain, no parsing beyond the key, no metrics.

``threads`` threads, each in a loop: receive 10 (long poll), GET the 10 objects in parallel (a
shared pool of ten workers per thread), read the bodies, delete the 10 with one
DeleteMessageBatch. A thread stops at its first empty receive. The benchmark sweeps ``threads``
and keeps the fastest, so this is what the emulator and the machine allow, not a copy of the
forwarder's design.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_plus


def drain_ceiling(queue_url: str, *, sqs: Any, s3: Any, threads: int, wait_seconds: int = 1) -> int:
    """Drain ``queue_url`` with bare AWS calls; return the number of messages deleted."""
    get_pool = ThreadPoolExecutor(max_workers=10 * threads, thread_name_prefix="ceiling-get")

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
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ceiling-loop") as loop_pool:
            return sum(future.result() for future in [loop_pool.submit(loop) for _ in range(threads)])
    finally:
        get_pool.shutdown()
