"""Several forwarders on one queue, the follow mode's idle cost, and graceful shutdown."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from app.aws.resources import DeleteResult, QueueAttributes
from app.core.envelope import ObjectRef, QueueMessage
from app.drain.service import Forwarder
from app.local.dogstatsd import DogStatsdReceiver
from app.local.provision import Stack
from app.settings import Settings
from app.sinks.dogstatsd import MetricSubmitter
from tests.conftest import REPO, Aws, cli_env

Put = Callable[..., dict[str, Any]]


def test_three_drains_side_by_side_share_the_work_without_double_processing(
    aws: Aws, stack: Stack, receiver: DogStatsdReceiver, put_job: Put
):
    """Three drains on one queue forward every job exactly once between them and empty it."""
    jobs = 150
    for n in range(jobs):
        put_job(stack.bucket, f"jobs/shared/{n}.json", {"job_success": True, "job_result": n})
    aws.settle(stack.queue_url)
    env = cli_env(aws, {"SQS_QUEUE_URL": stack.queue_url, "DD_DOGSTATSD_URL": receiver.url})
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "app", "drain", "--concurrency", "2"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(3)
    ]
    summaries = []
    for process in processes:
        stdout, _ = process.communicate(timeout=180)
        assert process.returncode == 0
        summaries.append(json.loads(stdout.strip().splitlines()[-1]))
    assert sum(s["forwarded"] for s in summaries) == jobs
    assert sum(1 for s in summaries if s["forwarded"] > 0) >= 2, summaries
    assert receiver.wait_for(lambda r: len(r.metrics("cloud_job.job_result")) >= jobs)
    seen = Counter(int(m.value) for m in receiver.metrics("cloud_job.job_result"))
    assert sorted(seen) == list(range(jobs))
    assert max(seen.values()) == 1
    assert aws.queue_depth(stack.queue_url) == (0, 0)


class IdleQueue:
    """An in-memory queue that is always empty; each receive blocks like a long poll, time-scaled."""

    def __init__(self, *, seconds_per_second: float) -> None:
        self.scale = seconds_per_second
        self.receives = 0
        self._lock = threading.Lock()
        self.queue_url = "memory://idle"

    def queue_attributes(self) -> QueueAttributes:
        """A queue with a 30 s visibility timeout and no DLQ."""
        return QueueAttributes(30, None, None)

    def receive(
        self, *, wait_time_seconds: int, visibility_timeout_seconds: int | None = None
    ) -> list[QueueMessage]:
        """Count the call and wait out the long poll (scaled)."""
        with self._lock:
            self.receives += 1
        time.sleep(wait_time_seconds / self.scale)
        return []

    def fetch(self, ref: ObjectRef, *, max_bytes: int) -> bytes:
        """Never called: the queue is empty."""
        raise AssertionError("an empty queue has nothing to fetch")

    def delete(self, messages: Sequence[QueueMessage]) -> DeleteResult:
        """Never called with anything."""
        return DeleteResult(0, {})

    def change_visibility(self, items: Sequence[tuple[QueueMessage, int]]) -> int:
        """Nothing to change."""
        return 0


class NullStatsd:
    """A statsd client that accepts everything; this test is about SQS calls only."""

    packets_dropped_writer = 0

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def test_follow_on_an_idle_queue_costs_at_most_three_receives_a_minute():
    """Four receive loops following an empty queue make one long poll at a time: 3 calls a minute."""
    speedup = 60.0  # one simulated minute per real second
    queue = IdleQueue(seconds_per_second=speedup)
    forwarder = Forwarder(
        resources=queue,  # type: ignore[arg-type]
        sink=MetricSubmitter(NullStatsd()),  # type: ignore[arg-type]
        settings=Settings(queue_url=queue.queue_url, concurrency=4),
    )
    stop = threading.Event()
    runner = threading.Thread(target=forwarder.run, kwargs={"follow": True, "stop": stop})
    runner.start()
    time.sleep(3.0)  # three simulated minutes
    stop.set()
    runner.join(timeout=10)
    assert not runner.is_alive()
    assert 3 <= queue.receives <= 3 * 3 + 1, queue.receives


def test_sigterm_finishes_in_hand_work_and_prints_the_summary(
    aws: Aws, stack: Stack, receiver: DogStatsdReceiver, put_job: Put
):
    """SIGTERM to a following drain ends it cleanly: summary printed, exit 0, nothing left behind."""
    for n in range(5):
        put_job(stack.bucket, f"jobs/sig/{n}.json", {"job_success": True, "job_result": n})
    env = cli_env(aws, {"SQS_QUEUE_URL": stack.queue_url, "DD_DOGSTATSD_URL": receiver.url})
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "drain", "--follow", "--wait-time-seconds", "1"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert receiver.wait_for(lambda r: len(r.metrics("cloud_job.job_result")) == 5, timeout_seconds=60)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["forwarded"] == 5
    assert "shutdown.requested" in stderr
    assert aws.queue_depth(stack.queue_url) == (0, 0)
