"""kill -9 of the drain at random instants: a crash may duplicate work, never lose it.

Each trial seeds fresh notifications for the same 200 objects, starts a drain, SIGKILLs it once the
receiver has seen a randomly chosen number of jobs plus a random fraction of a second, then drains
again until the queue is empty. Messages the killed process held come back after their short
visibility timeout. Two lanes (a queue and a receiver each) run trials side by side to keep the
suite short; the kill instants are drawn up front from one seeded generator.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from app.local.dogstatsd import DogStatsdReceiver
from app.local.provision import Stack
from tests.conftest import Aws
from tests.faults.conftest import (
    JOB_GAUGES,
    DrainRuns,
    elapsed_since,
    env_for,
    gauge_names_by_job,
    job_document,
    job_results,
    notification,
    put_object,
    s3_record,
    send_bodies,
    start_drain,
    wait_for_results,
)

pytestmark = pytest.mark.fault

TRIALS = 10
MESSAGES = 200
LANES = 3
SEED = 9
# Messages a killed drain held reappear 2 s after their receive, usually before the restart has
# worked through the rest; an empty 1 s long poll ends a drain (and the loop runs another if some
# are still hidden).
SHORT_VISIBILITY = ("--visibility-timeout-seconds", "2", "--wait-time-seconds", "1")
# The kill lands up to this long after the chosen progress mark, anywhere in a batch's cycle of
# receive, fetch, send, delete.
MAX_JITTER_SECONDS = 0.3
KILL_WAIT_SECONDS = 30


@dataclass(frozen=True, slots=True)
class KillPlan:
    """When to kill: after ``target`` job deliveries, plus ``jitter_seconds``."""

    target: int
    jitter_seconds: float


@dataclass(frozen=True, slots=True)
class Trial:
    """What one kill-and-restart trial observed."""

    plan: KillPlan
    jobs_seen_at_kill: int
    killed_while_running: bool
    restarts: int
    duplicated_jobs: int


def kill_after_progress(
    process: subprocess.Popen[str], receiver: DogStatsdReceiver, plan: KillPlan
) -> tuple[bool, int]:
    """SIGKILL ``process`` at the planned instant; return (killed while running, jobs seen by then)."""
    deadline = time.monotonic() + KILL_WAIT_SECONDS
    while (
        len(receiver.metrics("cloud_job.job_result")) < plan.target
        and process.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.01)
    time.sleep(plan.jitter_seconds)
    running = process.poll() is None
    if running:
        process.kill()
    process.communicate(timeout=10)
    return running, len(set(job_results(receiver)))


def run_trial(
    aws: Aws,
    stack: Stack,
    bodies: list[str],
    plan: KillPlan,
    drain_until_empty: Callable[..., DrainRuns],
) -> Trial:
    """Seed, start, kill as planned, restart until empty; check that no job was lost."""
    send_bodies(aws, stack.queue_url, bodies)
    expected = set(range(len(bodies)))
    with DogStatsdReceiver() as receiver:
        env = env_for(receiver.url)
        process = start_drain(aws, *SHORT_VISIBILITY, env={**env, "SQS_QUEUE_URL": stack.queue_url})
        killed, seen = kill_after_progress(process, receiver, plan)
        runs = drain_until_empty(stack.queue_url, *SHORT_VISIBILITY, env=env, budget_seconds=60)
        assert runs.emptied, f"{plan}: the queue never emptied:\n{runs.describe()}"
        assert [r.returncode for r in runs.results] == [0] * len(runs.results), runs.describe()
        lost = expected - set(job_results(receiver))
        assert wait_for_results(receiver, expected), f"{plan}: lost {sorted(lost)}"
        assert receiver.errors == []
        by_job = gauge_names_by_job(receiver)
        incomplete = {job: JOB_GAUGES - names for job, names in by_job.items() if names != JOB_GAUGES}
        assert len(by_job) == len(bodies)
        assert incomplete == {}, f"{plan}: jobs missing gauges: {dict(list(incomplete.items())[:3])}"
        deliveries = Counter(job_results(receiver))
    assert aws.queue_depth(stack.queue_url) == (0, 0)
    assert aws.drain_raw(stack.dead_letter_queue_url) == []
    return Trial(
        plan=plan,
        jobs_seen_at_kill=seen,
        killed_while_running=killed,
        restarts=len(runs.results),
        duplicated_jobs=sum(1 for count in deliveries.values() if count > 1),
    )


def test_kill_9_at_random_instants_loses_no_job(
    aws: Aws,
    quiet_stack: Callable[..., Stack],
    drain_until_empty: Callable[..., DrainRuns],
    report_figure: Callable[[str], None],
) -> None:
    """After a SIGKILL at any instant and a restart, every job reached the agent and the queue is empty."""
    started = time.monotonic()
    rng = random.Random(SEED)
    plans = [KillPlan(rng.randrange(MESSAGES), rng.uniform(0, MAX_JITTER_SECONDS)) for _ in range(TRIALS)]
    lanes = [quiet_stack() for _ in range(LANES)]
    now = time.time()
    # The objects live in the first lane's bucket; every lane's notifications point at them.
    stored = [
        put_object(aws, lanes[0].bucket, f"jobs/{i:04d}.json", json.dumps(job_document(i, now=now)).encode())
        for i in range(MESSAGES)
    ]
    bodies = [notification(s3_record(obj)) for obj in stored]

    def run_lane(lane: int) -> list[Trial]:
        return [run_trial(aws, lanes[lane], bodies, plan, drain_until_empty) for plan in plans[lane::LANES]]

    with ThreadPoolExecutor(LANES, thread_name_prefix="kill-lane") as pool:
        per_lane = list(pool.map(run_lane, range(LANES)))
    trials = [trial for lane in per_lane for trial in lane]

    assert len(trials) == TRIALS
    assert all(trial.killed_while_running for trial in trials), trials
    assert sum(0 < trial.jobs_seen_at_kill < MESSAGES for trial in trials) >= TRIALS // 2, (
        f"too few kills landed mid-drain: {trials}"
    )
    duplicated = sum(trial.duplicated_jobs for trial in trials)
    report_figure(
        f"kill -9: {TRIALS} trials x {MESSAGES} messages ({TRIALS * MESSAGES} in all), lost 0, "
        f"jobs duplicated {duplicated} (per trial {[t.duplicated_jobs for t in trials]}), "
        f"jobs seen at kill {[t.jobs_seen_at_kill for t in trials]}, "
        f"restart runs {[t.restarts for t in trials]}, {elapsed_since(started)} s"
    )
