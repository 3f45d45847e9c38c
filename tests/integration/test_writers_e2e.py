"""Every job counted once in what Datadog keeps, however many processes, runs and environments wrote it.

The seams of production, each through the real entry points: three ``drain`` processes side by side
on one queue, two scheduled runs one after the other for jobs of the same second, a 3-hour-old job
brought back by ``redrive``, and three Lambda execution environments at once. Every scenario runs
for both sinks: DogStatsD into the local receiver (one agent on one host) and the HTTP API into
the local intake; the assertions read the Datadog view (app/local/datadog_view.py), which keeps one
point per series (name, tags, host) and second for gauges and counts and every distribution value.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from app.lambda_handler import build_consumer
from app.local.datadog_view import DatadogView
from app.local.dogstatsd import DogStatsdReceiver
from app.local.intake import LocalIntake
from app.local.notifications import s3_event_record, s3_notification
from app.local.provision import Stack
from app.local.writers import DrainRun, merged, run_drains
from app.settings import resolve
from app.sinks.factory import build_sink
from tests.conftest import Aws, CliResult, cli_env
from tests.integration.test_lambda import FakeContext, lambda_event

Put = Callable[..., dict[str, Any]]
Cli = Callable[..., CliResult]

RUNS = "cloud_job.runs"
KEY = "writers-test-key"
BURST = 240
WRITERS = 3


@dataclass
class Destination:
    """One sink's local Datadog: what a drain needs in its environment, and what Datadog keeps."""

    sink: str
    env: dict[str, str]
    view: Callable[[], DatadogView]
    settle: Callable[[int], None]


@pytest.fixture(params=["dogstatsd", "api"])
def destination(request: pytest.FixtureRequest) -> Iterator[Destination]:
    """The local DogStatsD receiver or the local intake, with the drain environment that reaches it."""
    if request.param == "api":
        with LocalIntake(api_key=KEY) as intake:
            yield Destination(
                "api",
                {"SINK": "api", "DD_API_KEY": KEY, "DD_DD_URL": intake.url},
                intake.datadog_view,
                lambda _count: None,  # the intake stores a request before it answers 2xx
            )
        return
    with DogStatsdReceiver() as receiver:
        yield Destination(
            "dogstatsd",
            {"DD_DOGSTATSD_URL": receiver.url},
            receiver.datadog_view,
            lambda count: receiver.wait_for(lambda r: len(r.metrics(RUNS)) >= count, timeout_seconds=10),
        )


def put_runs(put_job: Put, stack: Stack, count: int, *, when: float, prefix: str) -> None:
    """Upload ``count`` successful runs of the job ``burst`` that all finished at ``when``."""
    for index in range(count):
        document = {"job_success": True, "job_name": "burst", "timestamp": when, "job_result": index}
        put_job(stack.bucket, f"jobs/{prefix}/{index:04d}.json", document)


def drains(aws: Aws, stack: Stack, destination: Destination, count: int) -> list[DrainRun]:
    """Run ``count`` drain processes at once on ``stack``'s queue; every one must exit 0."""
    aws.settle(stack.queue_url)
    env = cli_env(aws, {"SQS_QUEUE_URL": stack.queue_url, **destination.env})
    runs = run_drains(count, env)
    assert all(run.returncode == 0 for run in runs), [run.stderr[-2000:] for run in runs]
    return runs


def test_three_processes_on_one_host_count_a_same_second_burst_whole(
    aws: Aws, stack: Stack, put_job: Put, destination: Destination
) -> None:
    """240 runs of one job in one second, drained by three processes at once: Datadog keeps 240 in one series."""
    put_runs(put_job, stack, BURST, when=int(time.time()) - 30, prefix="burst")

    runs = drains(aws, stack, destination, WRITERS)

    assert merged(runs)["forwarded"] == BURST
    assert sum(1 for run in runs if run.summary["forwarded"]) >= 2, "the burst was not shared out"
    destination.settle(BURST)
    view = destination.view()
    assert view.runs(RUNS, "job:burst") == BURST
    assert view.series(RUNS) == 1
    assert aws.queue_depth(stack.queue_url) == (0, 0)


def test_two_runs_one_after_the_other_for_the_same_second_add_up(
    aws: Aws, stack: Stack, put_job: Put, destination: Destination
) -> None:
    """A scheduled run forwards 5 runs of a second, the next one 3 late ones of that second: Datadog keeps 8."""
    when = int(time.time()) - 30
    put_runs(put_job, stack, 5, when=when, prefix="first")
    drains(aws, stack, destination, 1)
    put_runs(put_job, stack, 3, when=when, prefix="late")

    drains(aws, stack, destination, 1)

    destination.settle(8)
    view = destination.view()
    assert view.runs(RUNS, "job:burst") == 8
    assert view.series(RUNS) == 1


def test_a_redriven_job_from_three_hours_ago_adds_one_and_no_series(
    aws: Aws, stack: Stack, put_job: Put, destination: Destination, run_cli: Cli
) -> None:
    """Redrive then drain a 3-hour-old job beside two fresh ones: the counter adds 1 at hand-off, the series stay 1."""
    old = int(time.time()) - 3 * 3600
    # The old job's object is there, but its notification was dead-lettered hours ago.
    put_job(stack.bucket, "jobs/old/run.json", {"job_success": True, "job_name": "burst", "timestamp": old})
    aws.settle(stack.queue_url)
    assert len(aws.drain_raw(stack.queue_url)) == 1
    aws.sqs.send_message(
        QueueUrl=stack.dead_letter_queue_url,
        MessageBody=s3_notification(s3_event_record(stack.bucket, "jobs/old/run.json", event_time=old)),
    )
    put_runs(put_job, stack, 2, when=int(time.time()) - 30, prefix="fresh")
    drains(aws, stack, destination, 1)

    # The emulator has no StartMessageMoveTask; the operator command moves the messages itself.
    redrive = run_cli("redrive", "--message-by-message", env={"SQS_QUEUE_URL": stack.queue_url})
    assert redrive.returncode == 0, redrive.stderr
    runs = drains(aws, stack, destination, 1)

    assert runs[0].summary["forwarded"] == 1
    destination.settle(3)
    view = destination.view()
    assert view.runs(RUNS, "job:burst") == 3
    assert view.series(RUNS) == 1
    assert view.gauge_points("cloud_job.job_result") == 1, "the old job must not stamp a gauge now"


def test_three_lambda_environments_at_once_count_every_record(
    aws: Aws, stack: Stack, put_job: Put, destination: Destination
) -> None:
    """Three execution environments, each its own sink, handle 24 batches of 10 at once: 240 kept, one series."""
    when = int(time.time()) - 30
    keys = [f"jobs/lambda/{index:04d}.json" for index in range(BURST)]
    for index, key in enumerate(keys):
        put_job(stack.bucket, key, {"job_success": True, "job_name": "burst", "timestamp": when, "n": index})
    env = {"SQS_QUEUE_URL": stack.queue_url, **destination.env}
    with ThreadPoolExecutor(4) as fetchers, ThreadPoolExecutor(WRITERS) as environments:
        consumers = []
        for _ in range(WRITERS):
            settings = resolve({}, env)
            consumers.append(
                build_consumer(settings, sqs=aws.sqs, s3=aws.s3, sink=build_sink(settings), executor=fetchers)
            )
        batches = [keys[start : start + 10] for start in range(0, BURST, 10)]
        responses = list(
            environments.map(
                lambda numbered: consumers[numbered[0] % WRITERS](
                    lambda_event(stack, numbered[1]), FakeContext()
                ),
                enumerate(batches),
            )
        )

    assert all(response == {"batchItemFailures": []} for response in responses), json.dumps(responses)[:500]
    destination.settle(BURST)
    view = destination.view()
    assert view.runs(RUNS, "job:burst") == BURST
    assert view.series(RUNS) == 1
