"""End to end: the operator's commands (`backfill`, `dlq`, `redrive`) as subprocesses on the emulator."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from app.local.dogstatsd import DogStatsdReceiver
from app.local.provision import Stack
from tests.conftest import Aws, CliResult

Cli = Callable[..., CliResult]


def job(result: int) -> bytes:
    """A successful job document identified by ``job_result``."""
    return json.dumps({"job_success": True, "job_result": result, "timestamp": time.time()}).encode()


def queue_bodies(aws: Aws, queue_url: str) -> list[dict[str, Any]]:
    """Receive and delete everything on ``queue_url``; return the parsed bodies."""
    return [json.loads(m["Body"]) for m in aws.drain_raw(queue_url)]


def dead_letter(aws: Aws, stack: Stack, reason: str | None, key: str) -> None:
    """Put a message on the DLQ as the forwarder would (reason attribute), or as SQS would (none)."""
    body = json.dumps(
        {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": stack.bucket}, "object": {"key": key}},
                }
            ]
        }
    )
    attributes = {}
    if reason is not None:
        attributes = {
            "reason": {"DataType": "String", "StringValue": reason},
            "detail": {"DataType": "String", "StringValue": f"{reason} in {key}"},
        }
    aws.sqs.send_message(QueueUrl=stack.dead_letter_queue_url, MessageBody=body, MessageAttributes=attributes)


def test_backfill_enqueues_one_notification_per_object_and_drain_forwards_them(
    aws: Aws, quiet_stack: Stack, run_cli: Cli, receiver: DogStatsdReceiver
) -> None:
    """Objects without notifications are enqueued with ETag and version, then forwarded by drain."""
    for n in (1, 2, 3):
        aws.s3.put_object(Bucket=quiet_stack.bucket, Key=f"jobs/run {n}.json", Body=job(n))
    aws.s3.put_object(Bucket=quiet_stack.bucket, Key="other/skip.json", Body=job(9))
    aws.s3.put_object(Bucket=quiet_stack.bucket, Key="jobs/folder/", Body=b"")
    env = {"SQS_QUEUE_URL": quiet_stack.queue_url}

    outcome = run_cli("backfill", "--bucket", quiet_stack.bucket, "--prefix", "jobs/", env=env)

    assert outcome.returncode == 0, outcome.stderr
    assert outcome.summary["listed"] == 4
    assert outcome.summary["matched"] == outcome.summary["enqueued"] == 3
    drained = run_cli("drain", env={**env, "DD_DOGSTATSD_URL": receiver.url})
    assert drained.summary["forwarded"] == 3, drained.stderr
    assert receiver.wait_for(lambda r: len(r.metrics("cloud_job.job_result")) == 3)
    assert sorted(m.value for m in receiver.metrics("cloud_job.job_result")) == [1, 2, 3]


def test_backfill_notifications_carry_etag_version_and_encoded_key(
    aws: Aws, quiet_stack: Stack, run_cli: Cli
) -> None:
    """The enqueued body is an S3 notification: key URL-encoded, ETag and versionId of the object."""
    put = aws.s3.put_object(Bucket=quiet_stack.bucket, Key="jobs/date=1/a b.json", Body=job(1))

    outcome = run_cli(
        "backfill", "--bucket", quiet_stack.bucket, env={"SQS_QUEUE_URL": quiet_stack.queue_url}
    )

    assert outcome.returncode == 0, outcome.stderr
    [body] = queue_bodies(aws, quiet_stack.queue_url)
    obj = body["Records"][0]["s3"]["object"]
    assert obj["key"] == "jobs/date%3D1/a+b.json"
    assert obj["eTag"] == put["ETag"].strip('"')
    assert obj["versionId"] == put["VersionId"]


def test_backfill_since_and_dry_run_send_nothing_they_should_not(
    aws: Aws, quiet_stack: Stack, run_cli: Cli
) -> None:
    """--since in the future matches nothing; --dry-run counts matches but sends nothing."""
    aws.s3.put_object(Bucket=quiet_stack.bucket, Key="jobs/a.json", Body=job(1))
    env = {"SQS_QUEUE_URL": quiet_stack.queue_url}

    future = run_cli("backfill", "--bucket", quiet_stack.bucket, "--since", "2999-01-01T00:00:00Z", env=env)
    dry = run_cli("backfill", "--bucket", quiet_stack.bucket, "--since", "1h", "--dry-run", env=env)

    assert future.returncode == 0 and future.summary["matched"] == 0
    assert dry.returncode == 0, dry.stderr
    assert dry.summary["matched"] == 1 and dry.summary["enqueued"] == 0 and dry.summary["dry_run"] is True
    assert aws.queue_depth(quiet_stack.queue_url) == (0, 0)


def test_backfill_of_a_missing_bucket_is_one_clear_line_and_exit_2(quiet_stack: Stack, run_cli: Cli) -> None:
    """A bucket that does not exist: exit 2, one line naming it, no traceback."""
    outcome = run_cli(
        "backfill", "--bucket", "no-such-bucket-here", env={"SQS_QUEUE_URL": quiet_stack.queue_url}
    )

    assert outcome.returncode == 2
    assert outcome.stderr.strip().splitlines() == [
        "cloud-job-metrics: error: bucket 'no-such-bucket-here' does not exist"
    ]


def test_dlq_counts_per_reason_with_examples_and_changes_nothing(
    aws: Aws, quiet_stack: Stack, run_cli: Cli
) -> None:
    """The dlq --json report groups by reason (SQS-moved ones as '(none)'); every message stays visible."""
    for key in ("jobs/a.json", "jobs/b.json", "jobs/c.json"):
        dead_letter(aws, quiet_stack, "invalid-json", key)
    dead_letter(aws, quiet_stack, "object-not-found", "jobs/gone.json")
    dead_letter(aws, quiet_stack, None, "jobs/poison.json")
    env = {"SQS_QUEUE_URL": quiet_stack.queue_url}

    outcome = run_cli("dlq", "--json", "--examples", "2", env=env)

    assert outcome.returncode == 0, outcome.stderr
    report = outcome.summary
    assert report["read"] == 5
    assert [(r["reason"], r["count"], len(r["examples"])) for r in report["reasons"]] == [
        ("invalid-json", 3, 2),
        ("(none)", 1, 1),
        ("object-not-found", 1, 1),
    ]
    example = report["reasons"][2]["examples"][0]
    assert example["s3_uris"] == [f"s3://{quiet_stack.bucket}/jobs/gone.json"]
    assert example["detail"] == "object-not-found in jobs/gone.json"
    assert aws.queue_depth(quiet_stack.dead_letter_queue_url) == (5, 0)

    table = run_cli("dlq", env=env)
    assert table.returncode == 0
    assert "invalid-json" in table.stdout and "     3" in table.stdout
    assert aws.queue_depth(quiet_stack.dead_letter_queue_url) == (5, 0)


def test_redrive_by_reason_moves_only_those_and_leaves_the_rest(
    aws: Aws, quiet_stack: Stack, run_cli: Cli
) -> None:
    """A redrive with --reason sends matching messages to the source, deletes them from the DLQ, releases the rest."""
    dead_letter(aws, quiet_stack, "invalid-json", "jobs/a.json")
    dead_letter(aws, quiet_stack, "invalid-json", "jobs/b.json")
    dead_letter(aws, quiet_stack, "object-not-found", "jobs/gone.json")

    outcome = run_cli("redrive", "--reason", "invalid-json", env={"SQS_QUEUE_URL": quiet_stack.queue_url})

    assert outcome.returncode == 0, outcome.stderr
    assert outcome.summary["moved"] == 2 and outcome.summary["native"] is False
    keys = sorted(b["Records"][0]["s3"]["object"]["key"] for b in queue_bodies(aws, quiet_stack.queue_url))
    assert keys == ["jobs/a.json", "jobs/b.json"]
    assert aws.queue_depth(quiet_stack.dead_letter_queue_url) == (1, 0)


def test_redrive_max_and_unfiltered_move_everything_once(aws: Aws, quiet_stack: Stack, run_cli: Cli) -> None:
    """--max moves at most N; without a filter the rest moves (message by message where SQS's task is missing)."""
    for n in range(5):
        dead_letter(aws, quiet_stack, "invalid-json", f"jobs/{n}.json")
    env = {"SQS_QUEUE_URL": quiet_stack.queue_url}

    first = run_cli("redrive", "--max", "2", env=env)
    rest = run_cli("redrive", env=env)

    assert first.summary["moved"] == 2, first.stderr
    assert rest.returncode == 0, rest.stderr
    if rest.summary["native"]:
        # An endpoint with StartMessageMoveTask (AWS, LocalStack) moves the rest itself.
        assert rest.summary["task_handle"]
        return
    assert rest.summary["moved"] == 3
    keys = sorted(b["Records"][0]["s3"]["object"]["key"] for b in queue_bodies(aws, quiet_stack.queue_url))
    assert keys == [f"jobs/{n}.json" for n in range(5)]
    assert aws.queue_depth(quiet_stack.dead_letter_queue_url) == (0, 0)
