"""End to end: real objects and notifications in the emulator, `drain` as a subprocess, real receivers.

Every assertion reads what actually crossed the wire: the datagrams the receiver parsed, the
queues afterwards, the summary line and the exit code.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from app.local.dogstatsd import DogStatsdReceiver
from app.local.notifications import s3_event_record
from app.local.provision import Stack
from tests.conftest import Aws, CliResult

Put = Callable[..., dict[str, Any]]
Cli = Callable[..., CliResult]
Drain = Callable[..., CliResult]


def job(result: int, *, success: bool = True, **extra: Any) -> dict[str, Any]:
    """A job-metadata document identified by its ``job_result``."""
    return {"job_success": success, "job_result": result, "job_name": "nightly-etl", **extra}


@pytest.fixture
def drain(aws: Aws, run_cli: Cli, receiver: DogStatsdReceiver) -> Drain:
    """Factory: run ``drain`` on a stack, once every notification has landed, against a receiver."""

    def run(stack: Stack, *args: str, statsd: DogStatsdReceiver | None = None, **env: str) -> CliResult:
        aws.settle(stack.queue_url)
        target = statsd or receiver
        return run_cli(
            "drain", *args, env={"SQS_QUEUE_URL": stack.queue_url, "DD_DOGSTATSD_URL": target.url, **env}
        )

    return run


def s3_event(bucket: str, key: str, *, name: str = "ObjectCreated:Put", **obj: Any) -> dict[str, Any]:
    """One record in the exact S3 notification format (``versionId``/``eTag`` as S3 spells them)."""
    return s3_event_record(
        bucket, key, event_name=name, version_id=obj.get("versionId"), etag=obj.get("eTag")
    )


def send(aws: Aws, stack: Stack, body: dict[str, Any] | str) -> None:
    """Send one message body to the stack's queue."""
    text = body if isinstance(body, str) else json.dumps(body)
    aws.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=text)


def results_received(receiver: DogStatsdReceiver) -> list[float]:
    """The ``job_result`` values of every gauge received, sorted."""
    return sorted(m.value for m in receiver.metrics("cloud_job.job_result"))


def test_notified_jobs_become_gauges_and_events(aws: Aws, stack: Stack, receiver, put_job: Put, drain: Drain):
    """Each object S3 notifies about becomes its gauges, a success event and a deleted message."""
    now = time.time()
    for result in (11, 22, 33):
        put_job(
            stack.bucket, f"jobs/etl/{result}.json", job(result, timestamp=now, images={"train": result * 10})
        )
    outcome = drain(stack)
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.summary["forwarded"] == 3
    assert outcome.summary["rejected"] == outcome.summary["retried"] == 0
    assert receiver.wait_for(lambda r: len(results_received(r)) == 3)
    assert results_received(receiver) == [11, 22, 33]
    assert sorted(m.value for m in receiver.metrics("cloud_job.images.train")) == [110, 220, 330]
    success = receiver.metrics("cloud_job.success")
    assert [m.value for m in success] == [1.0, 1.0, 1.0]
    gauge = success[0]
    assert {"cloud_job_metric", "status:success", f"bucket:{stack.bucket}", "job:nightly-etl"} <= set(
        gauge.tags
    )
    assert not any(tag.startswith(("key:", "timestamp:")) for tag in gauge.tags)
    assert gauge.timestamp == int(now)
    events = [e for e in receiver.events() if "cloud_job_metric" in e.tags]
    assert len(events) == 3
    assert {e.alert_type for e in events} == {"success"}
    assert all(e.title == "Job nightly-etl succeeded" for e in events)
    assert any(f"s3://{stack.bucket}/jobs/etl/11.json" in e.text for e in events)
    assert len({e.aggregation_key for e in events}) == 3
    assert receiver.errors == []
    assert aws.queue_depth(stack.queue_url) == (0, 0)


def test_failed_job_sends_error_event_and_zero_success(
    aws: Aws, stack: Stack, receiver, put_job: Put, drain: Drain
):
    """A job that reports failure is forwarded: success gauge 0, status:failure, an error event."""
    put_job(stack.bucket, "jobs/etl/failed.json", job(7, success=False))
    outcome = drain(stack)
    assert outcome.returncode == 0
    assert receiver.wait_for(lambda r: len(r.events()) >= 1)
    (success,) = receiver.metrics("cloud_job.success")
    assert success.value == 0.0
    assert "status:failure" in success.tags
    (event,) = [e for e in receiver.events() if "cloud_job_metric" in e.tags]
    assert event.alert_type == "error"
    assert event.title == "Job nightly-etl failed"
    assert aws.queue_depth(stack.queue_url) == (0, 0)


def test_every_record_of_a_multi_record_notification_is_forwarded(
    aws: Aws, quiet_stack: Stack, receiver, put_job: Put, drain: Drain
):
    """One message naming three objects forwards all three, not just the first."""
    stack = quiet_stack
    keys = [f"jobs/batch/{n}.json" for n in (1, 2, 3)]
    for n, key in enumerate(keys, start=1):
        put_job(stack.bucket, key, job(100 + n))
    send(aws, stack, {"Records": [s3_event(stack.bucket, key) for key in keys]})
    outcome = drain(stack)
    assert outcome.returncode == 0
    assert outcome.summary["received"] == 1
    assert outcome.summary["jobs"] == 3
    assert receiver.wait_for(lambda r: len(results_received(r)) == 3)
    assert results_received(receiver) == [101, 102, 103]


@pytest.mark.parametrize("shape", ["sns", "eventbridge"])
def test_sns_and_eventbridge_envelopes_are_detected(
    shape: str, aws: Aws, quiet_stack: Stack, receiver, put_job: Put, drain: Drain
):
    """SNS-wrapped and EventBridge notifications reach the same object and the same gauges."""
    stack = quiet_stack
    key = "jobs/eval suite/run 9.json"
    put_job(stack.bucket, key, job(909))
    if shape == "sns":
        body: dict[str, Any] = {
            "Type": "Notification",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:job-results",
            "Message": json.dumps({"Records": [s3_event(stack.bucket, key)]}),
        }
    else:
        body = {
            "source": "aws.s3",
            "detail-type": "Object Created",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "detail": {"bucket": {"name": stack.bucket}, "object": {"key": key}},
        }
    send(aws, stack, body)
    outcome = drain(stack)
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.summary["forwarded"] == 1
    assert receiver.wait_for(lambda r: results_received(r) == [909])


@pytest.mark.parametrize(
    "key",
    ["jobs/my job/run 1.json", "jobs/a+b/c+d.json", "jobs/100%/done.json", "jobs/café/résumé.json"],
)
def test_keys_with_spaces_plus_percent_and_unicode_are_decoded(
    key: str, aws: Aws, quiet_stack: Stack, receiver, put_job: Put, drain: Drain
):
    """Keys URL-encoded the way AWS does (space as '+') are fetched under their real name."""
    stack = quiet_stack
    put_job(stack.bucket, key, job(5))
    send(aws, stack, {"Records": [s3_event(stack.bucket, key)]})
    outcome = drain(stack)
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.summary["forwarded"] == 1
    assert receiver.wait_for(lambda r: results_received(r) == [5])


def test_emulator_delivered_notifications_for_odd_keys_are_forwarded(
    aws: Aws, stack: Stack, receiver, put_job: Put, drain: Drain
):
    """Whatever encoding the emulator itself uses for keys, unquote_plus recovers them."""
    for n, key in enumerate(["jobs/x y/1.json", "jobs/p+q/2.json", "jobs/ü/3.json"], start=1):
        put_job(stack.bucket, key, job(n))
    outcome = drain(stack)
    assert outcome.summary["forwarded"] == 3, outcome.stderr
    assert receiver.wait_for(lambda r: results_received(r) == [1, 2, 3])


def test_test_event_and_removals_are_acknowledged_and_ignored(
    aws: Aws, make_stack: Callable[..., Stack], receiver, drain: Drain
):
    """The set-up TestEvent and ObjectRemoved events are deleted, counted as ignored, exit 0."""
    stack = make_stack(keep_test_event=True)
    send(aws, stack, {"Records": [s3_event(stack.bucket, "jobs/gone.json", name="ObjectRemoved:Delete")]})
    outcome = drain(stack)
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.summary["ignored"] >= 2
    assert outcome.summary["forwarded"] == 0
    assert receiver.metrics("cloud_job.success") == []
    assert aws.queue_depth(stack.queue_url) == (0, 0)


def test_keys_outside_the_filter_are_ignored(aws: Aws, stack: Stack, receiver, put_job: Put, drain: Drain):
    """With --key-prefix, notifications for other keys are deleted without reading the object."""
    put_job(stack.bucket, "jobs/in.json", job(1))
    put_job(stack.bucket, "other/out.json", job(2))
    outcome = drain(stack, "--key-prefix", "jobs/")
    assert outcome.returncode == 0
    assert (outcome.summary["forwarded"], outcome.summary["ignored"]) == (1, 1)
    assert receiver.wait_for(lambda r: results_received(r) == [1])


def test_invalid_object_is_dead_lettered_with_its_reason(
    aws: Aws, stack: Stack, receiver, put_job: Put, drain: Drain
):
    """An invalid object goes to the DLQ with a reason, an error event is sent, exit code 1."""
    put_job(stack.bucket, "jobs/good.json", job(1))
    put_job(stack.bucket, "jobs/bad.json", b'{"job_success": true, "loss": NaN}')
    outcome = drain(stack)
    assert outcome.returncode == 1
    assert (outcome.summary["forwarded"], outcome.summary["rejected"], outcome.summary["dead_lettered"]) == (
        1,
        1,
        1,
    )
    (dead,) = aws.drain_raw(stack.dead_letter_queue_url)
    assert dead["MessageAttributes"]["reason"]["StringValue"] == "non-finite-number"
    assert "bad.json" in dead["Body"]
    assert receiver.wait_for(lambda r: any(e.title == "job metadata rejected" for e in r.events()))
    (rejected,) = [e for e in receiver.events() if e.title == "job metadata rejected"]
    assert rejected.alert_type == "error"
    assert f"s3://{stack.bucket}/jobs/bad.json" in rejected.text
    assert aws.queue_depth(stack.queue_url) == (0, 0)


def test_oversized_object_is_rejected_from_its_notified_size(
    aws: Aws, stack: Stack, receiver, put_job: Put, drain: Drain
):
    """An object over --max-object-bytes is rejected as object-too-large."""
    put_job(stack.bucket, "jobs/huge.json", job(1, padding="x" * 5000))
    outcome = drain(stack, "--max-object-bytes", "1024")
    assert outcome.returncode == 1
    (dead,) = aws.drain_raw(stack.dead_letter_queue_url)
    assert dead["MessageAttributes"]["reason"]["StringValue"] == "object-too-large"


def test_the_notified_version_is_read_not_the_latest(
    aws: Aws, quiet_stack: Stack, receiver, put_job: Put, drain: Drain
):
    """Notifications naming a versionId read that version, even after an overwrite."""
    stack = quiet_stack
    first = put_job(stack.bucket, "jobs/same.json", job(1))
    second = put_job(stack.bucket, "jobs/same.json", job(2))
    for put in (first, second):
        send(aws, stack, {"Records": [s3_event(stack.bucket, "jobs/same.json", versionId=put["VersionId"])]})
    outcome = drain(stack)
    assert outcome.summary["forwarded"] == 2, outcome.stderr
    assert receiver.wait_for(lambda r: results_received(r) == [1, 2])


def test_an_overwritten_object_without_version_is_not_mistaken_for_the_notified_one(
    aws: Aws, quiet_stack: Stack, receiver, put_job: Put, drain: Drain
):
    """With only an eTag, an object overwritten since the event is rejected as superseded, not misread."""
    stack = quiet_stack
    first = put_job(stack.bucket, "jobs/same.json", job(1))
    put_job(stack.bucket, "jobs/same.json", job(2))
    send(aws, stack, {"Records": [s3_event(stack.bucket, "jobs/same.json", eTag=first["ETag"].strip('"'))]})
    outcome = drain(stack)
    assert outcome.returncode == 1
    assert results_received(receiver) == []
    (dead,) = aws.drain_raw(stack.dead_letter_queue_url)
    assert dead["MessageAttributes"]["reason"]["StringValue"] == "object-superseded"


def test_bucket_outside_the_allow_list_is_rejected_unread(
    aws: Aws, stack: Stack, receiver, put_job: Put, drain: Drain
):
    """A notification naming a bucket not in --allowed-buckets is dead-lettered."""
    put_job(stack.bucket, "jobs/a.json", job(1))
    outcome = drain(stack, "--allowed-buckets", "some-other-bucket")
    assert outcome.returncode == 1
    (dead,) = aws.drain_raw(stack.dead_letter_queue_url)
    assert dead["MessageAttributes"]["reason"]["StringValue"] == "bucket-not-allowed"
    assert results_received(receiver) == []


def test_field_names_full_of_statsd_syntax_are_sanitised(
    aws: Aws, stack: Stack, receiver, put_job: Put, drain: Drain
):
    """Names and tags with DogStatsD syntax and newlines are forwarded sanitised, never malformed."""
    document = job(3, **{"evil:name|c#x,y\nz": 4.5}, tags={"team|x": "a,b#c", "env": "prod\nfake:1|c"})
    put_job(stack.bucket, "jobs/evil.json", document)
    outcome = drain(stack)
    assert outcome.returncode == 0, outcome.stderr
    assert receiver.wait_for(lambda r: len(r.metrics("cloud_job.evil_name_c_x_y_z")) == 1)
    assert receiver.errors == []
    tags = receiver.metrics("cloud_job.job_result")[0].tags
    assert "team_x:a_b_c" in tags
    assert all("|" not in t and "," not in t and "#" not in t for t in tags)


def test_old_jobs_send_no_gauge_and_iso_timestamps_are_read(
    aws: Aws, stack: Stack, receiver, put_job: Put, drain: Drain
):
    """A job older than Datadog's window sends its counter value and event but no gauge; an ISO time inside it keeps |T."""
    recent = time.time() - 120
    old = time.time() - 7200
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(recent))
    put_job(stack.bucket, "jobs/old.json", job(1, timestamp=old))
    put_job(stack.bucket, "jobs/iso.json", job(2, timestamp=iso))
    outcome = drain(stack)
    assert outcome.returncode == 0, outcome.stderr
    assert receiver.wait_for(lambda r: len(r.metrics("cloud_job.runs")) == 2)
    assert receiver.wait_for(lambda r: r.metrics("cloud_job_metrics.batch.late_points"))
    stamps = {m.value: m.timestamp for m in receiver.metrics("cloud_job.job_result")}
    assert stamps == {2.0: int(recent)}
    assert all(
        m.timestamp is not None
        for m in receiver.metrics()
        if m.type == "g" and m.name.startswith("cloud_job.")
    )
    dates = sorted(e.date_happened or 0 for e in receiver.events() if "cloud_job_metric" in e.tags)
    assert dates == [int(old), int(recent)]
    (late,) = receiver.metrics("cloud_job_metrics.batch.late_points")
    assert (late.value, late.type, late.tags) == (2.0, "d", ("reason:too-old",))  # success and job_result
    assert "gauges_skipped" in outcome.stderr


def test_unix_socket_receiver_gets_the_metrics(
    aws: Aws, stack: Stack, unix_receiver: DogStatsdReceiver, put_job: Put, drain: Drain
):
    """DD_DOGSTATSD_URL=unix://… sends the same datagrams over a Unix socket."""
    put_job(stack.bucket, "jobs/u.json", job(42))
    outcome = drain(stack, statsd=unix_receiver)
    assert outcome.returncode == 0, outcome.stderr
    assert unix_receiver.wait_for(lambda r: results_received(r) == [42])
    assert unix_receiver.errors == []


def test_namespace_and_constant_tags_are_configurable(
    aws: Aws, stack: Stack, receiver, put_job: Put, drain: Drain
):
    """METRIC_NAMESPACE renames the gauges and CONSTANT_TAGS tags everything."""
    put_job(stack.bucket, "jobs/n.json", job(8))
    outcome = drain(stack, METRIC_NAMESPACE="batch", CONSTANT_TAGS="env:test,team:data")
    assert outcome.returncode == 0
    assert receiver.wait_for(lambda r: len(r.metrics("batch.job_result")) == 1)
    assert {"env:test", "team:data"} <= set(receiver.metrics("batch.job_result")[0].tags)


def test_self_metrics_count_outcomes(aws: Aws, stack: Stack, receiver, put_job: Put, drain: Drain):
    """The forwarder reports its own messages per outcome, as per-batch distribution values."""
    put_job(stack.bucket, "jobs/s.json", job(1))
    drain(stack)
    assert receiver.wait_for(lambda r: len(r.metrics("cloud_job_metrics.batch.messages")) >= 1)
    counted = {
        tag: m.value
        for m in receiver.metrics("cloud_job_metrics.batch.messages")
        for tag in m.tags
        if tag.startswith("outcome:")
    }
    assert counted.get("outcome:forwarded") == 1
    assert {m.type for m in receiver.metrics("cloud_job_metrics.batch.messages")} == {"d"}


def _closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_agent_stops_the_run_before_anything_is_deleted(
    aws: Aws, stack: Stack, put_job: Put, run_cli: Cli
):
    """With nothing listening on the agent's loopback port, drain exits 2 and deletes nothing."""
    put_job(stack.bucket, "jobs/a.json", job(1))
    outcome = run_cli(
        "drain",
        env={"SQS_QUEUE_URL": stack.queue_url, "DD_DOGSTATSD_URL": f"udp://127.0.0.1:{_closed_udp_port()}"},
    )
    assert outcome.returncode == 2
    assert "not reachable" in outcome.stderr
    assert aws.queue_depth(stack.queue_url)[0] == 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "no queue URL"),
        ({"SQS_QUEUE_URL": "{endpoint}/123456789012/no-such-queue"}, "does not exist"),
        (
            {"SQS_QUEUE_URL": "http://127.0.0.1:9/123456789012/q", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
            "failed",
        ),
        (
            {"SQS_QUEUE_URL": "{endpoint}/123456789012/q", "CONCURRENCY": "zero"},
            "CONCURRENCY must be an integer",
        ),
    ],
)
def test_configuration_errors_exit_2_with_one_line(
    env: dict[str, str], message: str, aws: Aws, receiver: DogStatsdReceiver, run_cli: Cli
):
    """Missing queue URL, unknown queue, dead endpoint, bad number: one clear line, exit 2."""
    resolved = {key: value.format(endpoint=aws.endpoint) for key, value in env.items()}
    outcome = run_cli("drain", "--wait-time-seconds", "0", env={"DD_DOGSTATSD_URL": receiver.url, **resolved})
    assert outcome.returncode == 2
    error_lines = [line for line in outcome.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, outcome.stderr
    assert message in error_lines[0]
    assert "Traceback" not in outcome.stderr


def test_usage_error_exits_2(run_cli: Cli):
    """An unknown flag is a usage error with exit code 2."""
    outcome = run_cli("drain", "--no-such-flag")
    assert outcome.returncode == 2
    assert "unrecognized arguments" in outcome.stderr


def test_check_passes_on_a_well_configured_stack(stack: Stack, receiver: DogStatsdReceiver, run_cli: Cli):
    """`check` reports every line ok for a queue with a redrive policy and a reachable agent."""
    outcome = run_cli(
        "check",
        env={
            "SQS_QUEUE_URL": stack.queue_url,
            "DD_DOGSTATSD_URL": receiver.url,
            "ALLOWED_BUCKETS": stack.bucket,
        },
    )
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    lines = outcome.stdout.strip().splitlines()
    assert len(lines) >= 5
    assert all(line.startswith("ok") for line in lines)


def test_check_fails_without_redrive_policy(aws: Aws, receiver: DogStatsdReceiver, run_cli: Cli):
    """`check` flags a queue without a dead-letter queue and exits 1."""
    url = aws.sqs.create_queue(QueueName=f"bare-{time.time_ns()}")["QueueUrl"]
    outcome = run_cli("check", env={"SQS_QUEUE_URL": url, "DD_DOGSTATSD_URL": receiver.url})
    assert outcome.returncode == 1
    assert any(line.startswith("FAIL  redrive policy") for line in outcome.stdout.splitlines())
