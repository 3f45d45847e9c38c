"""End to end: real-world inputs through `drain` (EventBridge keys, gzip, many jobs per file, bad buckets).

Objects are real objects in the emulator; where the emulator sends S3 → SQS notifications itself,
those are what the forwarder reads. EventBridge events and an invalid bucket name are sent by hand
from the real-shaped fixtures, since the emulator does not route S3 to EventBridge.
"""

from __future__ import annotations

import copy
import gzip
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from app.local.dogstatsd import DogStatsdReceiver
from app.local.notifications import s3_event_record, s3_notification
from app.local.provision import Stack
from tests.conftest import Aws, CliResult, load_event

Cli = Callable[..., CliResult]
Drain = Callable[..., CliResult]


@pytest.fixture
def drain(aws: Aws, run_cli: Cli, receiver: DogStatsdReceiver) -> Drain:
    """Factory: run ``drain`` on a stack once its notifications have landed."""

    def run(stack: Stack, *args: str, **env: str) -> CliResult:
        aws.settle(stack.queue_url)
        return run_cli(
            "drain", *args, env={"SQS_QUEUE_URL": stack.queue_url, "DD_DOGSTATSD_URL": receiver.url, **env}
        )

    return run


def job(result: int, **extra: Any) -> dict[str, Any]:
    """A successful job identified by ``job_result``, finished now."""
    return {"job_success": True, "job_result": result, "timestamp": time.time(), **extra}


def results(receiver: DogStatsdReceiver) -> list[float]:
    """The ``job_result`` values received, sorted."""
    return sorted(m.value for m in receiver.metrics("cloud_job.job_result"))


def dead_letters(aws: Aws, stack: Stack) -> list[dict[str, str]]:
    """The dead-letter queue's messages as their ``reason``/``detail`` attributes."""
    return [
        {name: value["StringValue"] for name, value in m.get("MessageAttributes", {}).items()}
        for m in aws.drain_raw(stack.dead_letter_queue_url)
    ]


def eventbridge_body(fixture: str, bucket: str) -> str:
    """The EventBridge fixture for ``bucket``, unpinned (the emulator's ETag and version differ)."""
    document: dict[str, Any] = copy.deepcopy(load_event(fixture))
    document["detail"]["bucket"]["name"] = bucket
    document["resources"] = [f"arn:aws:s3:::{bucket}"]
    for pin in ("etag", "version-id", "size"):
        document["detail"]["object"].pop(pin, None)
    document["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return json.dumps(document)


@pytest.mark.parametrize(
    ("fixture", "stored_key"),
    [
        ("eventbridge_hive_partitioned", "jobs/date=2026-11-25/hour=10/my job.json"),
        ("eventbridge_unicode_key", "jobs/r\u00e9sum\u00e9 \u65e5\u672c/c++ (1).json"),
    ],
)
def test_eventbridge_encoded_keys_are_read_decoded(
    aws: Aws, quiet_stack: Stack, receiver: DogStatsdReceiver, drain: Drain, fixture: str, stored_key: str
) -> None:
    """A Hive-partitioned or unicode key, URL-encoded in an EventBridge event, is found and forwarded."""
    aws.s3.put_object(Bucket=quiet_stack.bucket, Key=stored_key, Body=json.dumps(job(7)).encode())
    aws.sqs.send_message(
        QueueUrl=quiet_stack.queue_url, MessageBody=eventbridge_body(fixture, quiet_stack.bucket)
    )

    outcome = drain(quiet_stack)

    assert outcome.returncode == 0, outcome.stderr
    assert outcome.summary["forwarded"] == 1
    assert receiver.wait_for(lambda r: results(r) == [7])


def test_eventbridge_key_written_raw_is_found_by_the_fallback(
    aws: Aws, quiet_stack: Stack, receiver: DogStatsdReceiver, drain: Drain
) -> None:
    """If the event spelled the key unencoded ('a+b' meaning a plus), the raw key is read after a miss."""
    aws.s3.put_object(Bucket=quiet_stack.bucket, Key="jobs/c++/a+b.json", Body=json.dumps(job(8)).encode())
    document = json.loads(eventbridge_body("eventbridge_object_created", quiet_stack.bucket))
    document["detail"]["object"]["key"] = "jobs/c++/a+b.json"
    aws.sqs.send_message(QueueUrl=quiet_stack.queue_url, MessageBody=json.dumps(document))

    outcome = drain(quiet_stack, LOG_LEVEL="INFO")

    assert outcome.returncode == 0, outcome.stderr
    assert outcome.summary["forwarded"] == 1
    assert "object.raw_key_fallback" in outcome.stderr
    assert receiver.wait_for(lambda r: results(r) == [8])


def test_eventbridge_key_missing_under_both_spellings_is_dead_lettered(
    aws: Aws, quiet_stack: Stack, drain: Drain
) -> None:
    """Neither the decoded nor the raw key exists: object-not-found, and the detail names both."""
    document = json.loads(eventbridge_body("eventbridge_hive_partitioned", quiet_stack.bucket))
    aws.sqs.send_message(QueueUrl=quiet_stack.queue_url, MessageBody=json.dumps(document))

    outcome = drain(quiet_stack)

    assert outcome.returncode == 1
    assert outcome.summary["rejected"] == 1
    [letter] = dead_letters(aws, quiet_stack)
    assert letter["reason"] == "object-not-found"
    assert "date=2026-11-25" in letter["detail"] and "date%3D2026-11-25" in letter["detail"]


def test_gzip_objects_are_inflated_and_a_bomb_is_refused(
    aws: Aws, make_stack: Callable[..., Stack], receiver: DogStatsdReceiver, drain: Drain
) -> None:
    """Real notifications for .gz objects: gzip inflates, plain JSON labelled gzip is read as it is, a bomb and a cut stream are rejected."""
    stack = make_stack(suffix=".gz")
    aws.s3.put_object(
        Bucket=stack.bucket,
        Key="jobs/ok.json.gz",
        Body=gzip.compress(json.dumps(job(5)).encode()),
        ContentEncoding="gzip",
    )
    aws.s3.put_object(
        Bucket=stack.bucket,
        Key="jobs/plain.json.gz",
        Body=json.dumps(job(7)).encode(),
        ContentEncoding="gzip",
    )
    padding = "x" * 200_000
    bomb = gzip.compress(json.dumps(job(6, note=padding)).encode())
    assert len(bomb) < 4096
    aws.s3.put_object(Bucket=stack.bucket, Key="jobs/bomb.json.gz", Body=bomb)
    aws.s3.put_object(
        Bucket=stack.bucket, Key="jobs/cut.json.gz", Body=gzip.compress(b'{"job_success": true}')[:-5]
    )

    outcome = drain(stack, "--max-object-bytes", "65536")

    assert outcome.summary["forwarded"] == 2
    assert outcome.summary["rejected"] == 2
    assert receiver.wait_for(lambda r: results(r) == [5, 7])
    reasons = {letter["reason"]: letter["detail"] for letter in dead_letters(aws, stack)}
    assert set(reasons) == {"object-too-large", "invalid-gzip"}
    assert "bomb.json.gz" in reasons["object-too-large"]
    assert "truncated" in reasons["invalid-gzip"]


def test_a_json_array_and_json_lines_each_yield_every_job(
    aws: Aws, make_stack: Callable[..., Stack], receiver: DogStatsdReceiver, drain: Drain
) -> None:
    """Real notifications for an array file and an .ndjson file: each job is its own metrics and event."""
    stack = make_stack(suffix="json")
    aws.s3.put_object(
        Bucket=stack.bucket, Key="jobs/batch.json", Body=json.dumps([job(1), job(2), job(3)]).encode()
    )
    jsonl = "\n".join(json.dumps(job(n, job_name=f"shard-{n}")) for n in (4, 5)) + "\n"
    aws.s3.put_object(Bucket=stack.bucket, Key="jobs/batch.ndjson", Body=jsonl.encode())

    outcome = drain(stack)

    assert outcome.returncode == 0, outcome.stderr
    assert outcome.summary["forwarded"] == 2
    assert receiver.wait_for(lambda r: results(r) == [1, 2, 3, 4, 5])
    job_tags = {t for e in receiver.events() for t in e.tags if t.startswith("job:")}
    assert job_tags == {"job:shard-4", "job:shard-5"}


def test_a_file_with_one_invalid_job_is_rejected_whole(
    aws: Aws, make_stack: Callable[..., Stack], receiver: DogStatsdReceiver, drain: Drain
) -> None:
    """One bad job (index 1) dead-letters the file with the index in the detail; no job of it is sent."""
    stack = make_stack(suffix=".ndjson")
    body = json.dumps(job(1)) + "\n" + '{"job_success": "maybe"}\n' + json.dumps(job(3)) + "\n"
    aws.s3.put_object(Bucket=stack.bucket, Key="jobs/bad.ndjson", Body=body.encode())

    outcome = drain(stack)

    assert outcome.returncode == 1
    assert outcome.summary["rejected"] == 1
    [letter] = dead_letters(aws, stack)
    assert letter["reason"] == "invalid-field"
    assert "job 1 (line 2)" in letter["detail"]
    assert results(receiver) == []


def test_an_invalid_bucket_name_is_dead_lettered_at_once(aws: Aws, quiet_stack: Stack, drain: Drain) -> None:
    """A bucket name botocore refuses is invalid-envelope on the first receive, not retried as an outage."""
    body = s3_notification(s3_event_record("Not_A:Valid Bucket", "jobs/a.json"))
    aws.sqs.send_message(QueueUrl=quiet_stack.queue_url, MessageBody=body)

    outcome = drain(quiet_stack)

    assert outcome.summary["rejected"] == 1
    assert outcome.summary["retried"] == 0
    [letter] = dead_letters(aws, quiet_stack)
    assert letter["reason"] == "invalid-envelope"
    assert "Invalid bucket name" in letter["detail"]
    assert letter["receive_count"] == "1"


def test_more_jobs_than_max_jobs_per_object_rejects_the_file(
    aws: Aws, stack: Stack, receiver: DogStatsdReceiver, drain: Drain
) -> None:
    """MAX_JOBS_PER_OBJECT=2: a three-job array is too-many-jobs; a two-job array is forwarded."""
    aws.s3.put_object(
        Bucket=stack.bucket, Key="jobs/three.json", Body=json.dumps([job(1), job(2), job(3)]).encode()
    )
    aws.s3.put_object(Bucket=stack.bucket, Key="jobs/two.json", Body=json.dumps([job(4), job(5)]).encode())

    outcome = drain(stack, MAX_JOBS_PER_OBJECT="2")

    assert outcome.summary["forwarded"] == 1
    assert outcome.summary["rejected"] == 1
    [letter] = dead_letters(aws, stack)
    assert letter["reason"] == "too-many-jobs"
    assert "3 jobs, over the limit of 2" in letter["detail"]
    assert receiver.wait_for(lambda r: results(r) == [4, 5])
