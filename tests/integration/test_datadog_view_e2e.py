"""End to end, what Datadog would *store* from a drain: many runs of one job in one second, late jobs.

The console script drains real notifications from the emulator to a real DogStatsD receiver (UDP
and Unix socket); the assertions read the receiver's model of Datadog's storage rules
(app/local/datadog_view.py), the view a user graphs, not just the datagrams.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from app.local.dogstatsd import DogStatsdReceiver
from app.local.provision import Stack
from tests.conftest import Aws, CliResult

Put = Callable[..., dict[str, Any]]
Cli = Callable[..., CliResult]

BURST = 200
FAILED = 60


def drain(aws: Aws, run_cli: Cli, stack: Stack, target: DogStatsdReceiver, *args: str) -> CliResult:
    """Run ``drain`` on ``stack`` against ``target`` once every notification has landed."""
    aws.settle(stack.queue_url)
    return run_cli("drain", *args, env={"SQS_QUEUE_URL": stack.queue_url, "DD_DOGSTATSD_URL": target.url})


@pytest.mark.parametrize("transport", ["udp", "unix"])
def test_a_same_second_burst_is_counted_whole_and_its_values_kept(
    transport: str,
    aws: Aws,
    stack: Stack,
    run_cli: Cli,
    put_job: Put,
    receiver: DogStatsdReceiver,
    unix_receiver: DogStatsdReceiver,
):
    """200 runs of one job finishing in one second: the counter keeps 200, 200 values kept, the gauge keeps 1 per status."""
    target = receiver if transport == "udp" else unix_receiver
    finished = int(time.time()) - 30
    for run in range(BURST):
        document = {
            "job_success": run >= FAILED,
            "job_name": "nightly-etl",
            "timestamp": finished,
            "job_result": run,
        }
        put_job(stack.bucket, f"jobs/nightly-etl/run-{run:04d}.json", document)

    outcome = drain(aws, run_cli, stack, target, "--distributions")

    assert outcome.returncode == 0, outcome.stderr
    assert outcome.summary["forwarded"] == BURST
    assert target.wait_for(lambda r: len(r.metrics("cloud_job.runs")) == BURST)
    assert target.wait_for(lambda r: len(r.metrics("cloud_job.distribution.job_result")) == BURST)
    assert target.errors == []
    view = target.datadog_view()
    assert view.runs("cloud_job.runs", "job:nightly-etl") == BURST
    assert view.runs_by("cloud_job.runs", "status") == {("success",): BURST - FAILED, ("failure",): FAILED}
    values = view.distribution_values("cloud_job.distribution.job_result", "job:nightly-etl")
    assert sorted(values) == list(range(BURST))
    assert view.distribution_values("cloud_job.distribution.success", "status:failure") == [0.0] * FAILED
    # One gauge point per series (one per status) and second survives: 198 of the 200 are overwritten.
    assert view.sent["cloud_job.job_result"] == BURST
    assert view.gauge_points("cloud_job.job_result") == 2
    assert view.discarded == []
    assert aws.queue_depth(stack.queue_url) == (0, 0)


def test_a_run_older_than_an_hour_is_counted_but_never_graphed_at_the_wrong_time(
    aws: Aws, stack: Stack, run_cli: Cli, put_job: Put, receiver: DogStatsdReceiver
):
    """A 3-hour-old run adds to the job counter and distributions, keeps its event date, and sends no gauge."""
    old = int(time.time()) - 3 * 3600
    fresh = int(time.time()) - 10
    put_job(
        stack.bucket,
        "jobs/etl/old.json",
        {"job_success": True, "job_name": "etl", "timestamp": old, "rows": 5},
    )
    put_job(
        stack.bucket,
        "jobs/etl/new.json",
        {"job_success": True, "job_name": "etl", "timestamp": fresh, "rows": 7},
    )

    outcome = drain(aws, run_cli, stack, receiver, "--distributions")

    assert outcome.returncode == 0, outcome.stderr
    assert receiver.wait_for(lambda r: len(r.metrics("cloud_job.runs")) == 2)
    assert receiver.wait_for(lambda r: r.metrics("cloud_job_metrics.batch.late_points"))
    view = receiver.datadog_view()
    assert view.runs("cloud_job.runs", "job:etl") == 2
    assert sorted(view.distribution_values("cloud_job.distribution.rows")) == [5.0, 7.0]
    assert view.gauges[("cloud_job.rows", frozenset(receiver.metrics("cloud_job.rows")[0].tags), "")] == {
        fresh: 7.0
    }
    assert all(
        m.timestamp == fresh for m in receiver.metrics() if m.type == "g" and m.name.startswith("cloud_job.")
    )
    assert sorted(e.date_happened for e in receiver.events() if e.title.startswith("Job ")) == [old, fresh]
    assert sum(view.distribution_values("cloud_job_metrics.batch.late_points", "reason:too-old")) == 2


def test_field_selection_sends_only_the_chosen_fields_and_warns_of_a_pattern_matching_nothing(
    aws: Aws, stack: Stack, run_cli: Cli, put_job: Put, receiver: DogStatsdReceiver
):
    """FIELDS=images.*,typo_* sends success and images.*, the job counter stays, and typo_* is named in a warning."""
    document = {
        "job_success": True,
        "timestamp": int(time.time()),
        "loss": 0.5,
        "images": {"train": 3, "val": 4},
    }
    put_job(stack.bucket, "jobs/select.json", document)

    outcome = drain(aws, run_cli, stack, receiver, "--fields", "images.*,typo_*")

    assert outcome.returncode == 0, outcome.stderr
    assert receiver.wait_for(lambda r: len(r.metrics("cloud_job.runs")) == 1)
    assert receiver.wait_for(lambda r: len(r.events()) >= 1)
    sent = {m.name for m in receiver.metrics() if m.name.startswith("cloud_job.")}
    assert sent == {"cloud_job.runs", "cloud_job.success", "cloud_job.images.train", "cloud_job.images.val"}
    assert "fields.pattern_unused" in outcome.stderr
    assert "typo_*" in outcome.stderr
    assert "images.*" not in outcome.stderr.split("fields.pattern_unused", 1)[1].splitlines()[0]
