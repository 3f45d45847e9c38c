"""End to end with the HTTP API sink: `drain` and `check` as subprocesses, the emulator, the local intake.

Every assertion reads what crossed the wire: what the intake accepted (and what Datadog would keep
of it), the queues afterwards, the summary line and the exit code.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.local.intake import EVENTS_PATH, SERIES_PATH, LocalIntake
from app.local.provision import Stack
from tests.conftest import REPO, Aws, CliResult, cli_env

Put = Callable[..., dict[str, Any]]
Cli = Callable[..., CliResult]
KEY = "e2e0api0key0that0must0never0show"


@pytest.fixture
def intake() -> Iterator[LocalIntake]:
    """A local Datadog intake accepting ``KEY``."""
    with LocalIntake(api_key=KEY) as started:
        yield started


def api_env(stack: Stack, intake_url: str, **extra: str) -> dict[str, str]:
    """Environment of a drain with the API sink pointed at ``intake_url``."""
    return {
        "SQS_QUEUE_URL": stack.queue_url,
        "SINK": "api",
        "DD_API_KEY": KEY,
        "DD_DD_URL": intake_url,
        "DD_HOSTNAME": "forwarder-test",
        **extra,
    }


def put_jobs(put_job: Put, stack: Stack, count: int, *, when: float, name: str = "nightly-etl") -> None:
    """Upload ``count`` successful jobs finished at ``when``, ``job_result`` 0..count-1."""
    for index in range(count):
        document = {"job_success": True, "job_result": index, "job_name": name, "timestamp": when}
        put_job(stack.bucket, f"jobs/{name}/{index}.json", document)


def stored_job_count(intake: LocalIntake) -> float:
    """The job counter as Datadog would keep it: ``count:cloud_job.runs``, every value kept."""
    return intake.datadog_view().runs("cloud_job.runs")


def assert_key_hidden(result: CliResult) -> None:
    """The API key appears in neither output stream."""
    assert KEY not in result.stdout
    assert KEY not in result.stderr


def test_jobs_arrive_with_their_time_and_every_job_is_counted(
    aws: Aws, stack: Stack, put_job: Put, intake, run_cli: Cli
):
    """25 jobs finished in one second: gauges at that second, 25 counter values kept, 25 events, queue empty."""
    when = int(time.time()) - 120
    put_jobs(put_job, stack, 25, when=when)
    result = run_cli("drain", env=api_env(stack, intake.url, CONCURRENCY="4"))
    assert result.returncode == 0, result.stderr
    assert result.summary["forwarded"] == 25 and result.summary["jobs"] == 25
    assert stored_job_count(intake) == 25
    runs = [
        (series.get("host"), ts)
        for doc in intake.accepted("/api/v1/distribution_points")
        for series in doc["series"]
        if series["metric"] == "cloud_job.runs"
        for ts, _values in series["points"]
    ]
    assert set(runs) == {("forwarder-test", when)}
    results = intake.stored("cloud_job.job_result")
    assert results and {p.timestamp for p in results} == {when}
    assert len([e for e in intake.events() if e["alert_type"] == "success"]) == 25
    assert {e["date_happened"] for e in intake.events() if "job:nightly-etl" in e["tags"]} == {when}
    assert aws.queue_depth(stack.queue_url) == (0, 0)
    assert intake.state.keys_seen == {KEY}
    assert_key_hidden(result)


def test_distributions_go_to_distribution_points_with_the_job_time(
    stack: Stack, put_job: Put, intake, run_cli: Cli
):
    """With --distributions every job's value arrives, stamped with the job's time."""
    when = int(time.time()) - 60
    put_jobs(put_job, stack, 5, when=when)
    result = run_cli("drain", "--distributions", env=api_env(stack, intake.url))
    assert result.returncode == 0, result.stderr
    values = [
        (ts, value)
        for doc in intake.accepted("/api/v1/distribution_points")
        for series in doc["series"]
        if series["metric"] == "cloud_job.distribution.job_result"
        for ts, batch in series["points"]
        for value in batch
    ]
    assert sorted(values) == [(when, float(i)) for i in range(5)]


def test_transient_intake_errors_are_absorbed_within_the_run(
    aws: Aws, stack: Stack, put_job: Put, intake, run_cli: Cli
):
    """503s, a 429 with Retry-After, a 408 and a dropped connection: exit 0, queue empty, all counted."""
    put_jobs(put_job, stack, 8, when=time.time() - 30)
    intake.inject(503, times=2, path=SERIES_PATH)
    intake.inject(429, times=1, headers={"Retry-After": "1"})
    intake.inject(0, times=1, path=EVENTS_PATH)
    intake.inject(408, times=1, path=EVENTS_PATH)
    result = run_cli("drain", env=api_env(stack, intake.url, CONCURRENCY="1"))
    assert result.returncode == 0, result.stderr
    assert result.summary["forwarded"] == 8 and result.summary["retried"] == 0
    statuses = {status for _, status in intake.requests()}
    assert {503, 429, 408, 0} <= statuses
    assert stored_job_count(intake) == 8
    assert aws.queue_depth(stack.queue_url) == (0, 0)


def test_a_bad_key_exits_2_and_leaves_the_queue_untouched(
    aws: Aws, stack: Stack, put_job: Put, intake, run_cli: Cli
):
    """403 at start-up: one clear line, exit 2, every message still visible, the key not printed."""
    put_jobs(put_job, stack, 3, when=time.time())
    result = run_cli("drain", env={**api_env(stack, intake.url), "DD_API_KEY": "wrong-key-1234"})
    assert result.returncode == 2
    assert "refused the API key" in result.stderr and "DD_API_KEY" in result.stderr
    assert "wrong-key-1234" not in result.stderr + result.stdout
    assert aws.queue_depth(stack.queue_url) == (3, 0)
    assert intake.accepted() == []


def test_a_403_mid_run_exits_2_and_deletes_nothing(
    aws: Aws, stack: Stack, put_job: Put, intake, run_cli: Cli
):
    """The key is revoked after start-up: the run stops with exit 2 and no message is deleted."""
    put_jobs(put_job, stack, 4, when=time.time())
    intake.inject(403, times=100, path=SERIES_PATH)
    result = run_cli("drain", env=api_env(stack, intake.url, CONCURRENCY="1"))
    assert result.returncode == 2, result.stderr
    visible, in_flight = aws.queue_depth(stack.queue_url)
    assert visible + in_flight == 4
    assert_key_hidden(result)


def test_intake_down_exits_1_and_deletes_nothing(aws: Aws, stack: Stack, put_job: Put, run_cli: Cli):
    """Nothing listens at DD_DD_URL: exit 1 (an outage, not a mistake), every message kept."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    put_jobs(put_job, stack, 3, when=time.time())
    result = run_cli("drain", env=api_env(stack, f"http://127.0.0.1:{port}"))
    assert result.returncode == 1, result.stderr
    assert "not reachable" in result.stderr
    assert aws.queue_depth(stack.queue_url) == (3, 0)
    assert_key_hidden(result)


def test_a_payload_the_intake_refuses_dead_letters_only_its_message(
    aws: Aws, stack: Stack, put_job: Put, intake, run_cli: Cli
):
    """A 400 is traced to the one message causing it: it alone goes to the DLQ as payload-rejected."""
    intake.refuse_when(
        lambda path, doc: (
            "tag job:poison is refused" if path == SERIES_PATH and "job:poison" in json.dumps(doc) else None
        )
    )
    put_jobs(put_job, stack, 4, when=time.time())
    put_jobs(put_job, stack, 1, when=time.time(), name="poison")
    result = run_cli("drain", env=api_env(stack, intake.url, CONCURRENCY="1"))
    assert result.returncode == 1
    assert result.summary["forwarded"] == 4 and result.summary["rejected"] == 1
    dead = aws.drain_raw(stack.dead_letter_queue_url, first_wait_seconds=1)
    assert len(dead) == 1
    attributes = dead[0]["MessageAttributes"]
    assert attributes["reason"]["StringValue"] == "payload-rejected"
    assert "job:poison is refused" in attributes["detail"]["StringValue"]
    assert KEY not in json.dumps(dead)
    assert stored_job_count(intake) == 4
    assert aws.queue_depth(stack.queue_url) == (0, 0)


def test_oversized_requests_are_split_and_all_data_arrives(
    aws: Aws, stack: Stack, put_job: Put, intake, run_cli: Cli
):
    """An intake with a 700-byte limit answers 413; the sink halves and resends until everything lands."""
    intake.limit(SERIES_PATH, compressed_bytes=700, uncompressed_bytes=8_000)
    when = int(time.time()) - 10
    for index in range(10):
        fields = {f"metric_{n}": n * index for n in range(30)}
        put_job(
            stack.bucket,
            f"jobs/wide/{index}.json",
            {"job_success": True, "job_name": f"wide-{index}", "timestamp": when, **fields},
        )
    result = run_cli("drain", env=api_env(stack, intake.url, CONCURRENCY="1"))
    assert result.returncode == 0, result.stderr
    assert (SERIES_PATH, 413) in intake.requests(SERIES_PATH)
    assert stored_job_count(intake) == 10
    sent = [
        point["value"]
        for doc in intake.accepted(SERIES_PATH)
        for series in doc["series"]
        if series["metric"] == "cloud_job.metric_29"
        for point in series["points"]
    ]
    assert sorted(set(sent)) == [29.0 * i for i in range(10)]
    assert aws.queue_depth(stack.queue_url) == (0, 0)


def test_the_key_can_come_from_secrets_manager(aws: Aws, stack: Stack, put_job: Put, intake, run_cli: Cli):
    """DD_API_KEY_SECRET_ARN is read once from Secrets Manager; the drain then delivers."""
    import boto3

    secrets = boto3.client(
        "secretsmanager",
        endpoint_url=aws.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    arn = secrets.create_secret(Name=f"dd-key-{stack.bucket}", SecretString=KEY)["ARN"]
    put_jobs(put_job, stack, 2, when=time.time())
    env = api_env(stack, intake.url, DD_API_KEY_SECRET_ARN=arn)
    del env["DD_API_KEY"]
    result = run_cli("drain", env=env)
    assert result.returncode == 0, result.stderr
    assert stored_job_count(intake) == 2
    assert_key_hidden(result)


def test_check_validates_the_key_without_printing_it(stack: Stack, intake, run_cli: Cli):
    """`check` makes one /api/v1/validate request: ok with the key, FAIL with another."""
    good = run_cli("check", env=api_env(stack, intake.url))
    assert "ok    Datadog API key valid" in good.stdout, good.stdout + good.stderr
    bad = run_cli("check", env={**api_env(stack, intake.url), "DD_API_KEY": "another-key-5678"})
    assert bad.returncode == 1
    assert "FAIL  Datadog API key valid" in bad.stdout and "DD_API_KEY" in bad.stdout
    assert "another-key-5678" not in bad.stdout + bad.stderr
    assert_key_hidden(good)


def test_kill_9_during_a_hand_off_loses_nothing(aws: Aws, make_stack, put_job: Put, intake):
    """A drain killed while the intake holds its request: every message comes back and is delivered."""
    stack = make_stack(visibility_timeout_seconds=2)
    put_jobs(put_job, stack, 6, when=time.time() - 20)
    intake.inject(200, times=1, path=SERIES_PATH, delay_seconds=30)  # a slow answer, then normal
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "drain"],
        env=cli_env(aws, api_env(stack, intake.url, CONCURRENCY="1", VISIBILITY_TIMEOUT_SECONDS="2")),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert intake.wait_for(lambda i: i.arrived >= 1, timeout_seconds=30)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    visible, in_flight = aws.queue_depth(stack.queue_url)
    assert visible + in_flight == 6
    time.sleep(2.5)
    rerun = subprocess.run(
        [sys.executable, "-m", "app", "drain"],
        env=cli_env(aws, api_env(stack, intake.url)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout.strip().splitlines()[-1])["forwarded"] == 6
    assert stored_job_count(intake) == 6
    assert aws.queue_depth(stack.queue_url) == (0, 0)
