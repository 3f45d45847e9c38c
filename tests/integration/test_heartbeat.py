"""The heartbeat: a message held past half its visibility timeout is extended, not redelivered."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from app.drain.service import Summary, drain_queue
from app.local.dogstatsd import DogStatsdReceiver
from app.local.provision import Stack
from app.settings import Settings, StatsdTarget
from app.sinks.dogstatsd import statsd_client
from tests.conftest import Aws


class SlowAgent:
    """A real DogStatsD client whose flush takes ``delay_seconds``, like an agent under load."""

    def __init__(self, client: Any, delay_seconds: float) -> None:
        self._client = client
        self._delay_seconds = delay_seconds

    def flush(self) -> object:
        """Wait, then flush for real."""
        time.sleep(self._delay_seconds)
        return self._client.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_slow_hand_off_keeps_the_message_invisible(
    aws: Aws, make_stack: Callable[..., Stack], receiver: DogStatsdReceiver, put_job: Callable[..., Any]
):
    """With a 2 s visibility timeout and a 4 s hand-off, nobody else can receive the message meanwhile."""
    stack = make_stack(visibility_timeout_seconds=2)
    put_job(stack.bucket, "jobs/slow.json", {"job_success": True, "job_result": 77})
    aws.settle(stack.queue_url)
    settings = Settings(
        queue_url=stack.queue_url, statsd=StatsdTarget(port=receiver.port), concurrency=1, self_metrics=False
    )
    statsd = SlowAgent(statsd_client(settings), delay_seconds=4.0)
    outcome: list[Summary] = []
    runner = threading.Thread(
        target=lambda: outcome.append(drain_queue(settings, sqs=aws.sqs, s3=aws.s3, statsd=statsd))
    )
    runner.start()
    time.sleep(3.0)  # past the original 2 s visibility timeout, inside the hand-off
    stolen = aws.sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=0).get("Messages", [])
    runner.join(timeout=30)
    assert stolen == []
    assert outcome and outcome[0].forwarded == 1
    assert receiver.wait_for(lambda r: [m.value for m in r.metrics("cloud_job.job_result")] == [77])
    assert aws.queue_depth(stack.queue_url) == (0, 0)
