"""End to end: ``drain --max-runtime`` under a steady inflow ends in time, and nothing is lost.

A thread keeps sending notifications (ten every 0.1 s) before, during and after the first drain,
so the queue never runs dry and only the deadline can end that run. The first drain must stop
receiving at its deadline, settle what it holds and exit 0 with ``stopped_at_deadline`` and the
messages it left visible; a second drain forwards the rest; the jobs forwarded by the two runs
together are exactly the jobs sent. The figures (deadline, overshoot, messages left, exit code)
are printed, so ``pytest -s`` shows them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from app.local.dogstatsd import DogStatsdReceiver
from app.local.notifications import s3_event_record, s3_notification
from app.local.provision import Stack
from tests.conftest import REPO, Aws, CliResult, cli_env

Cli = Callable[..., CliResult]
MAX_RUNTIME_SECONDS = 4
OBJECTS = 900
BACKLOG = 500
# What settling the messages in hand may add to the deadline on a loaded 2-core machine.
OVERSHOOT_LIMIT_SECONDS = 3.0


class Inflow:
    """Sends notifications for the next unsent objects, ten every ``interval_seconds``, until stopped."""

    def __init__(self, aws: Aws, stack: Stack, keys: list[str], *, interval_seconds: float = 0.1) -> None:
        self.aws = aws
        self.stack = stack
        self.keys = keys
        self.interval_seconds = interval_seconds
        self.sent: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inflow", daemon=True)

    def __enter__(self) -> Inflow:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop sending and wait for the last batch to be sent."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.sent) < len(self.keys):
            start = len(self.sent)
            batch = list(range(start, min(start + 10, len(self.keys))))
            self.aws.sqs.send_message_batch(
                QueueUrl=self.stack.queue_url,
                Entries=[
                    {
                        "Id": str(n),
                        "MessageBody": s3_notification(s3_event_record(self.stack.bucket, self.keys[n])),
                    }
                    for n in batch
                ],
            )
            self.sent.extend(batch)
            self._stop.wait(self.interval_seconds)


def seed_objects(aws: Aws, stack: Stack, count: int) -> list[str]:
    """Write ``count`` job files, job ``n`` with ``job_result == n``; return their keys in order."""
    now = time.time()
    keys = [f"jobs/steady/{n:05d}.json" for n in range(count)]
    for n, key in enumerate(keys):
        document: dict[str, Any] = {"job_success": True, "job_result": n, "timestamp": now}
        aws.s3.put_object(Bucket=stack.bucket, Key=key, Body=json.dumps(document).encode())
    return keys


def results_forwarded(receiver: DogStatsdReceiver) -> set[int]:
    """The ``job_result`` of every job whose gauges arrived."""
    return {int(m.value) for m in receiver.metrics("cloud_job.job_result")}


def test_drain_stops_at_its_deadline_under_steady_inflow_and_the_next_run_forwards_the_rest(
    aws: Aws, quiet_stack: Stack, run_cli: Cli, receiver: DogStatsdReceiver
) -> None:
    """A 4 s deadline under steady inflow: exits 0 in time, says so, and two runs forward every job."""
    stack = quiet_stack
    keys = seed_objects(aws, stack, OBJECTS)
    env = {"SQS_QUEUE_URL": stack.queue_url, "DD_DOGSTATSD_URL": receiver.url}

    with Inflow(aws, stack, keys) as inflow:
        time.sleep(0.5)
        started = time.monotonic()
        # Long polls as long as the deadline allows: a drain also ends at its first empty poll, and
        # on a busy machine the inflow can pause for a second, which would end it before the deadline.
        first = run_cli(
            "drain",
            *("--max-runtime", str(MAX_RUNTIME_SECONDS), "--concurrency", "2", "--wait-time-seconds", "20"),
            env=env,
        )
        wall_seconds = time.monotonic() - started
        # The inflow goes on after the run: what arrives then is the next run's work too.
        time.sleep(1.0)
        inflow.stop()
        sent = set(inflow.sent)

    assert first.returncode == 0, first.stderr[-2000:]
    summary = first.summary
    overshoot = summary["seconds"] - MAX_RUNTIME_SECONDS
    print(
        f"\nmax-runtime {MAX_RUNTIME_SECONDS}s: run {summary['seconds']:.2f}s (overshoot {overshoot:.2f}s), "
        f"process {wall_seconds:.2f}s, forwarded {summary['forwarded']}, left visible {summary['left_visible']}, "
        f"exit {first.returncode}, sent {len(sent)}"
    )
    assert summary["stopped_at_deadline"] is True
    assert 0 <= overshoot < OVERSHOOT_LIMIT_SECONDS
    assert isinstance(summary["left_visible"], int)
    assert summary["left_visible"] >= 0
    assert summary["forwarded"] == summary["received"] > 0
    assert summary["retried"] == summary["rejected"] == 0
    assert "drain.deadline" in first.stderr

    second = run_cli("drain", env=env)

    assert second.returncode == 0, second.stderr[-2000:]
    assert second.summary["stopped_at_deadline"] is False
    assert second.summary["left_visible"] is None
    assert second.summary["forwarded"] > 0
    assert aws.queue_depth(stack.queue_url) == (0, 0)
    assert receiver.wait_for(lambda r: results_forwarded(r) >= sent, timeout_seconds=10)
    assert results_forwarded(receiver) == sent
    assert summary["forwarded"] + second.summary["forwarded"] >= len(sent)


def test_follow_with_an_explicit_max_runtime_warns_that_it_is_ignored(
    aws: Aws, quiet_stack: Stack, run_cli: Cli, receiver: DogStatsdReceiver
) -> None:
    """--follow --max-runtime 1: a warning says the deadline is ignored, and the poller outlives it."""
    env = cli_env(aws, {"SQS_QUEUE_URL": quiet_stack.queue_url, "DD_DOGSTATSD_URL": receiver.url})
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "drain", "--follow", "--max-runtime", "1", "--wait-time-seconds", "1"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(4)
        assert process.poll() is None, "the poller ended by itself"
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert "drain.max_runtime_ignored" in stderr
    assert json.loads(stdout.strip().splitlines()[-1])["stopped_at_deadline"] is False


def test_a_backlog_larger_than_one_run_is_left_visible_and_counted(
    aws: Aws, quiet_stack: Stack, run_cli: Cli, receiver: DogStatsdReceiver
) -> None:
    """A backlog of 500 queued messages and a 1 s deadline: what the run did not receive is left visible, counted exactly."""
    stack = quiet_stack
    (key,) = seed_objects(aws, stack, 1)
    bodies = [s3_notification(s3_event_record(stack.bucket, key)) for _ in range(BACKLOG)]
    for start in range(0, len(bodies), 10):
        aws.sqs.send_message_batch(
            QueueUrl=stack.queue_url,
            Entries=[
                {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start : start + 10])
            ],
        )
    env = {"SQS_QUEUE_URL": stack.queue_url, "DD_DOGSTATSD_URL": receiver.url}

    result = run_cli("drain", "--max-runtime", "1", "--concurrency", "1", env=env)

    assert result.returncode == 0, result.stderr[-2000:]
    summary = result.summary
    print(
        f"\nmax-runtime 1s on a backlog of {BACKLOG}: run {summary['seconds']:.2f}s, forwarded {summary['forwarded']}, "
        f"left visible {summary['left_visible']}"
    )
    assert summary["stopped_at_deadline"] is True
    assert summary["forwarded"] == summary["received"] > 0
    assert summary["left_visible"] == BACKLOG - summary["received"] > 0
    assert aws.queue_depth(stack.queue_url) == (BACKLOG - summary["received"], 0)
