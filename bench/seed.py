"""Seed the emulator: job files in a bucket, and one queue per variant with their S3 notifications.

Objects come from :mod:`app.generator` (the same generator as the demo), so the forwarder sees what
production sends. Notifications are written here in the exact shape S3 gives them (event version 2.1,
object key URL-encoded with ``quote_plus``) and sent with SendMessageBatch in tens, which is much
faster and more deterministic than configuring bucket notifications in the emulator.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from app.generator import make_job_metadata, object_key
from app.local.notifications import s3_event_record, s3_notification
from bench.aws import REGION

#: Gauges (without namespace) whose values are compared job by job against what was seeded.
CHECKED_FIELDS = ("job_result", "files_processed")


@dataclass(frozen=True)
class Job:
    key: str
    body: bytes
    etag: str
    values: dict[str, float]  # CHECKED_FIELDS -> value, for the receiver check


@dataclass
class Dataset:
    bucket: str
    jobs: list[Job]

    def expected(self, n: int) -> dict[str, Counter[float]]:
        """Multiset of the checked gauge values for the first ``n`` jobs."""
        return {field: Counter(job.values[field] for job in self.jobs[:n]) for field in CHECKED_FIELDS}


def make_dataset(bucket: str, count: int, *, seed: int = 20240501) -> Dataset:
    """``count`` job files, deterministic for a given seed (their timestamps are 'now')."""
    rng = random.Random(seed)
    now = time.time()
    jobs = []
    for i in range(count):
        # spread finishing times over the last minute, well inside Datadog's timestamp window
        metadata = make_job_metadata(rng, now=now - 60.0 + 60.0 * i / max(count, 1))
        body = json.dumps(metadata).encode()
        jobs.append(
            Job(
                key=object_key(metadata),
                body=body,
                etag=hashlib.md5(body).hexdigest(),
                values={field: float(metadata[field]) for field in CHECKED_FIELDS},
            )
        )
    return Dataset(bucket=bucket, jobs=jobs)


def put_objects(s3: Any, dataset: Dataset, *, workers: int = 8) -> None:
    """Create the bucket and upload every job file (in parallel)."""
    s3.create_bucket(Bucket=dataset.bucket)

    def put(job: Job) -> None:
        s3.put_object(Bucket=dataset.bucket, Key=job.key, Body=job.body, ContentType="application/json")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(put, dataset.jobs):
            pass


def s3_event(dataset: Dataset, index: int) -> str:
    """The notification S3 sends for job ``index`` (ObjectCreated:Put, as delivered to SQS)."""
    job = dataset.jobs[index]
    record = s3_event_record(dataset.bucket, job.key, size=len(job.body), etag=job.etag, region=REGION)
    return s3_notification(record)


def create_queue(sqs: Any, name: str) -> str:
    """A queue with a dead-letter queue behind it (maxReceiveCount 5), like the Terraform one."""
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    attributes = {"VisibilityTimeout": "60", "RedrivePolicy": redrive}
    return str(sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])


def send_notifications(sqs: Any, queue_url: str, dataset: Dataset, count: int, *, workers: int = 4) -> None:
    """Send the notifications of the first ``count`` jobs, ten per SendMessageBatch."""

    def send(start: int) -> None:
        entries = [
            {"Id": str(i - start), "MessageBody": s3_event(dataset, i)}
            for i in range(start, min(start + 10, count))
        ]
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if response.get("Failed"):
            raise RuntimeError(f"SendMessageBatch failed: {response['Failed']}")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(send, range(0, count, 10)):
            pass


def queue_depth(sqs: Any, queue_url: str) -> int:
    """Visible + in-flight messages left on a queue."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)
