"""The DogStatsD agent away on its Unix socket: nothing is deleted until the agent took the metrics.

Over a Unix datagram socket a missing agent is seen on every send, so the forwarder must keep every
message whose metrics did not leave, back it off, and forward it once the agent is back. The agent
stand-in lets the drain's start-up probe (one empty datagram) through, then vanishes, either at
once or after a set number of jobs, so "the agent goes away mid-run" is deterministic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.local.dogstatsd import Metric
from app.local.provision import Stack
from tests.conftest import Aws, CliResult
from tests.faults.conftest import (
    JOB_GAUGES,
    UnixAgent,
    env_for,
    gauge_names_by_job,
    job_document,
    job_results,
    notification,
    put_object,
    s3_record,
    send_bodies,
    summary_counts,
    unix_receiver_at,
    wait_for_results,
)

pytestmark = pytest.mark.fault

Cli = Callable[..., CliResult]
JOBS = 40
BACKOFF_SECONDS = 3
# A retried message hides for 3 s; an empty 1 s long poll ends the drain before it comes back.
FLAGS = ("--wait-time-seconds", "1", "--max-backoff-seconds", str(BACKOFF_SECONDS), "--concurrency", "2")


def seed_jobs(aws: Aws, stack: Stack, count: int) -> set[int]:
    """Write ``count`` jobs and announce each on the queue; return their ``job_result`` values."""
    now = time.time()
    stored = [
        put_object(aws, stack.bucket, f"jobs/{i:04d}.json", json.dumps(job_document(i, now=now)).encode())
        for i in range(count)
    ]
    send_bodies(aws, stack.queue_url, [notification(s3_record(obj)) for obj in stored])
    return set(range(count))


def messages_on(aws: Aws, stack: Stack) -> int:
    """Messages still on the queue, visible or not."""
    return sum(aws.queue_depth(stack.queue_url))


def wait_visible(aws: Aws, stack: Stack, count: int, *, timeout_seconds: float) -> tuple[int, int]:
    """Wait until ``count`` messages are visible again (their backoff over); return the depth."""
    deadline = time.monotonic() + timeout_seconds
    depth = aws.queue_depth(stack.queue_url)
    while depth[0] < count and time.monotonic() < deadline:
        time.sleep(0.2)
        depth = aws.queue_depth(stack.queue_url)
    return depth


def drain(run_cli: Cli, stack: Stack, agent_url: str) -> CliResult:
    """One drain of ``stack`` sending to ``agent_url``."""
    return run_cli("drain", *FLAGS, env=env_for(agent_url, SQS_QUEUE_URL=stack.queue_url))


def test_agent_gone_after_the_probe_deletes_nothing_then_recovers(
    aws: Aws,
    quiet_stack: Callable[..., Stack],
    run_cli: Cli,
    unix_agent: Callable[..., UnixAgent],
) -> None:
    """With the agent gone right after the start-up probe, every message stays (exit 1); once it is back, all are forwarded."""
    stack = quiet_stack()
    expected = seed_jobs(aws, stack, JOBS)
    agent = unix_agent(max_datagrams=1)

    first = drain(run_cli, stack, agent.url)

    assert agent.gone.is_set() and agent.datagrams == [b""], "the agent saw more than the probe"
    assert first.returncode == 1, first.stderr[-3000:]
    counts = summary_counts(first)
    assert (counts["forwarded"], counts["rejected"], counts["dead_lettered"]) == (0, 0, 0), counts
    assert counts["retried"] == counts["received"] >= JOBS, counts
    assert messages_on(aws, stack) == JOBS, "a message was deleted although its metrics never left"
    assert wait_visible(aws, stack, JOBS, timeout_seconds=BACKOFF_SECONDS + 10) == (JOBS, 0)

    with unix_receiver_at(agent.path) as receiver:
        second = drain(run_cli, stack, receiver.url)
        assert second.returncode == 0, second.stderr[-3000:]
        assert summary_counts(second)["forwarded"] >= JOBS
        assert wait_for_results(receiver, expected)
        assert receiver.errors == []
    assert aws.queue_depth(stack.queue_url) == (0, 0)
    assert aws.drain_raw(stack.dead_letter_queue_url) == []


def test_agent_gone_mid_run_keeps_exactly_the_undelivered_messages(
    aws: Aws,
    quiet_stack: Callable[..., Stack],
    run_cli: Cli,
    unix_agent: Callable[..., UnixAgent],
    report_figure: Callable[[str], None],
) -> None:
    """When the agent vanishes mid-run, only messages whose metrics it took are deleted; a rerun forwards the rest."""
    stack = quiet_stack()
    expected = seed_jobs(aws, stack, JOBS)
    # Gone once it saw 15 jobs: the first batch of ten gets through, a later one is cut off.
    agent = unix_agent(max_jobs=15)

    first = drain(run_cli, stack, agent.url)

    assert agent.gone.is_set()
    assert first.returncode == 1, first.stderr[-3000:]
    counts = summary_counts(first)
    assert counts["forwarded"] >= 10, f"not even the first batch got through: {counts}"
    assert counts["retried"] >= 1, f"the agent never went away: {counts}"
    assert counts["rejected"] == counts["dead_lettered"] == 0
    assert messages_on(aws, stack) == JOBS - counts["forwarded"], "deleted and kept do not add up"
    delivered_first = set(job_results(agent.lines))

    with unix_receiver_at(agent.path) as receiver:
        wait_visible(aws, stack, JOBS - counts["forwarded"], timeout_seconds=BACKOFF_SECONDS + 10)
        second = drain(run_cli, stack, receiver.url)
        assert second.returncode == 0, second.stderr[-3000:]
        assert wait_for_results(receiver, expected - delivered_first)
        assert receiver.errors == []
        lines = [*agent.lines, *receiver.metrics()]
    assert aws.queue_depth(stack.queue_url) == (0, 0)
    assert aws.drain_raw(stack.dead_letter_queue_url) == []
    assert set(job_results(lines)) == expected, "a job was deleted without reaching any agent"
    by_job = gauge_names_by_job(lines)
    assert all(by_job.get(f"job-{i:04d}") == JOB_GAUGES for i in expected), "a job's gauges are incomplete"
    counted = {t for m in lines if isinstance(m, Metric) and m.name == "cloud_job.runs" for t in m.tags}
    assert {f"job:job-{i:04d}" for i in expected} <= counted, "a job's count never arrived"
    report_figure(
        f"agent down mid-run: {JOBS} jobs, {counts['forwarded']} forwarded before the agent vanished, "
        f"{counts['retried']} kept for retry, all {JOBS} delivered after it came back, 0 lost"
    )


def test_no_agent_at_start_exits_2_without_touching_the_queue(
    aws: Aws, quiet_stack: Callable[..., Stack], run_cli: Cli, socket_dir: Path
) -> None:
    """With nothing bound at the socket path, the drain says so in one line, exits 2 and receives nothing."""
    stack = quiet_stack()
    seed_jobs(aws, stack, 3)
    result = drain(run_cli, stack, f"unix://{socket_dir / 'nobody.socket'}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not reachable" in lines[0], result.stderr
    assert aws.queue_depth(stack.queue_url) == (3, 0)


def test_a_busy_unix_socket_agent_takes_a_backlog_without_retries(
    aws: Aws, quiet_stack: Callable[..., Stack], run_cli: Cli, unix_agent: Callable[..., UnixAgent]
) -> None:
    """An agent that is listening but reads only 500 datagrams a second still gets every job in one run, none retried.

    Linux queues at most ``net.unix.max_dgram_qlen`` (10 by default) datagrams on a Unix datagram
    socket; a sender that bursts one datagram per metric without waiting overflows it.
    """
    stack = quiet_stack()
    expected = seed_jobs(aws, stack, JOBS)
    agent = unix_agent(read_pause_seconds=0.002)
    result = drain(run_cli, stack, agent.url)
    counts = summary_counts(result)
    assert (result.returncode, counts["retried"]) == (0, 0), result.stderr[-1500:]
    assert aws.queue_depth(stack.queue_url) == (0, 0)
    deadline = time.monotonic() + 10
    while not expected <= set(job_results(agent.lines)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(job_results(agent.lines)) == expected
