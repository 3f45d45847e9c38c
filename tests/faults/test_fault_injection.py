"""AWS misbehaving under the forwarder: throttling, 5xx and dropped connections through a proxy.

The drain subprocess talks to the emulator only through :class:`FaultInjectingProxy`. With a fifth
of all calls failing, the jobs that reach the receiver must be exactly the jobs a fault-free run
delivers, nothing may be dead-lettered, and nothing may stay on the queue.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

import pytest

from app.local.dogstatsd import DogStatsdReceiver
from app.local.provision import Stack
from tests.conftest import Aws, CliResult
from tests.faults.conftest import (
    DrainRuns,
    elapsed_since,
    env_for,
    job_document,
    job_results,
    put_object,
    summary_counts,
    wait_for_results,
)
from tests.faults.proxy import Fault, FaultInjectingProxy

pytestmark = pytest.mark.fault

JOBS = 100
FAULT_RATE = 0.2
SEED = 20240611
# Short timings so retried messages come back within the test: a receive hides a message for
# 3 s, a retried one for 2 s, and an empty 1 s long poll ends a drain.
FAST_RETRY = (
    "--wait-time-seconds",
    "1",
    "--visibility-timeout-seconds",
    "3",
    "--max-backoff-seconds",
    "2",
)

Cli = Callable[..., CliResult]
Fingerprint = frozenset[tuple[str, float, tuple[str, ...], int | None]]


def gauges_per_job(receiver: DogStatsdReceiver) -> dict[str, Fingerprint]:
    """Every distinct gauge received, grouped by its ``job:`` tag; the bucket tag is left out.

    Sets, not lists: a redelivered job sends the very same points again, which Datadog
    deduplicates (same name, tags and timestamp).
    """
    grouped: dict[str, set[tuple[str, float, tuple[str, ...], int | None]]] = {}
    for metric in receiver.metrics():
        job = next((tag for tag in metric.tags if tag.startswith("job:")), None)
        if job is None or metric.type != "g":
            continue
        tags = tuple(sorted(tag for tag in metric.tags if not tag.startswith("bucket:")))
        grouped.setdefault(job, set()).add((metric.name, metric.value, tags, metric.timestamp))
    return {job: frozenset(points) for job, points in grouped.items()}


def seed_jobs(aws: Aws, stack: Stack, documents: list[dict[str, Any]]) -> None:
    """Write every document; the emulator's S3 notification announces each on the queue."""
    for document in documents:
        put_object(aws, stack.bucket, f"jobs/{document['job_name']}.json", json.dumps(document).encode())


def fresh_stack(make_stack: Callable[..., Stack], aws: Aws) -> Stack:
    """A stack whose set-up TestEvent is already gone."""
    stack = make_stack()
    aws.drain_raw(stack.queue_url)
    return stack


def transient_startup_failure(result: CliResult) -> bool:
    """True for a run that gave up at start-up because AWS was briefly unavailable."""
    return result.returncode == 2 and "failed" in result.stderr and "configuration" not in result.stderr


def test_jobs_survive_a_fifth_of_aws_calls_failing(
    aws: Aws,
    make_stack: Callable[..., Stack],
    run_cli: Cli,
    drain_until_empty: Callable[..., DrainRuns],
    fault_proxy: Callable[..., FaultInjectingProxy],
    report_figure: Callable[[str], None],
) -> None:
    """With 20 % of AWS calls throttled, failed or dropped, every job arrives exactly as without faults."""
    now = time.time()
    documents = [job_document(index, now=now) for index in range(JOBS)]
    expected = {document["job_result"] for document in documents}
    clean_stack, faulty_stack = fresh_stack(make_stack, aws), fresh_stack(make_stack, aws)
    seed_jobs(aws, clean_stack, documents)
    seed_jobs(aws, faulty_stack, documents)

    with DogStatsdReceiver() as clean:
        baseline = run_cli("drain", env=env_for(clean.url, SQS_QUEUE_URL=clean_stack.queue_url))
        assert baseline.returncode == 0, baseline.stderr[-2000:]
        # SQS delivers at least once (the emulator, too, under concurrent receives): count jobs.
        assert summary_counts(baseline)["forwarded"] >= JOBS
        assert wait_for_results(clean, expected)
        assert set(job_results(clean)) == expected
    reference = gauges_per_job(clean)
    assert len(reference) == JOBS

    proxy = fault_proxy(rate=FAULT_RATE, seed=SEED)
    started = time.monotonic()
    with DogStatsdReceiver() as faulty:
        runs = drain_until_empty(
            faulty_stack.queue_url,
            *FAST_RETRY,
            env=env_for(faulty.url, proxy.url),
            accept=lambda r: r.returncode in (0, 1) or transient_startup_failure(r),
        )
        assert runs.emptied, f"the queue never emptied:\n{runs.describe()}"
        assert wait_for_results(faulty, expected), sorted(expected - set(job_results(faulty)))
        assert faulty.errors == []
        observed = gauges_per_job(faulty)
        deliveries = job_results(faulty)

    assert proxy.total_injected > 0
    assert all(r.returncode in (0, 1) or transient_startup_failure(r) for r in runs.results), runs.describe()
    assert "Traceback" not in "".join(r.stderr for r in runs.results)
    assert aws.queue_depth(faulty_stack.queue_url) == (0, 0)
    assert aws.drain_raw(faulty_stack.dead_letter_queue_url) == []
    assert runs.total("dead_lettered") == runs.total("rejected") == 0
    assert sorted(observed) == sorted(reference)
    differing = [job for job in reference if observed[job] != reference[job]]
    assert differing == [], f"{len(differing)} jobs differ, e.g. {differing[:3]}"
    duplicated = len(deliveries) - len(set(deliveries))
    report_figure(
        f"fault injection: {JOBS} jobs, {sum(proxy.requests.values())} AWS calls, "
        f"{proxy.total_injected} faults injected {proxy.by_fault()} on {proxy.by_operation()}, "
        f"{len(runs.results)} drain runs "
        f"(exit codes {[r.returncode for r in runs.results]}), retried {runs.total('retried')}, "
        f"lost 0, duplicated deliveries {duplicated}, dead-lettered 0, {elapsed_since(started)} s"
    )


def test_every_kind_of_fault_on_object_reads_is_retried_not_rejected(
    aws: Aws,
    make_stack: Callable[..., Stack],
    drain_until_empty: Callable[..., DrainRuns],
    fault_proxy: Callable[..., FaultInjectingProxy],
    report_figure: Callable[[str], None],
) -> None:
    """GetObject failing (5xx, dropped) beyond botocore's retries leaves messages for later, never the DLQ."""
    now = time.time()
    documents = [job_document(index, now=now) for index in range(20)]
    stack = fresh_stack(make_stack, aws)
    seed_jobs(aws, stack, documents)
    # Seven reads in ten fail, so about a quarter exhaust botocore's four attempts and the
    # forwarder's own backoff must take over. (Throttling is covered above; its backoff is slow.)
    proxy = fault_proxy(
        rate=0.7,
        seed=SEED + 1,
        faults=(Fault.INTERNAL_ERROR, Fault.UNAVAILABLE, Fault.DROP),
        operations={"s3:GET"},
    )
    with DogStatsdReceiver() as receiver:
        runs = drain_until_empty(stack.queue_url, *FAST_RETRY, env=env_for(receiver.url, proxy.url))
        assert runs.emptied, f"the queue never emptied:\n{runs.describe()}"
        assert wait_for_results(receiver, {d["job_result"] for d in documents})
        assert receiver.errors == []
    assert runs.total("retried") > 0, "no read ever exhausted botocore's retries: the test proves nothing"
    assert runs.total("rejected") == 0
    assert aws.drain_raw(stack.dead_letter_queue_url) == []
    report_figure(
        f"object-read faults: 20 jobs, {proxy.total_injected} GetObject faults {proxy.by_fault()}, "
        f"{runs.total('retried')} messages retried by the forwarder over {len(runs.results)} runs, 0 lost"
    )


def test_aws_outage_at_startup_is_not_reported_as_a_configuration_error(
    aws: Aws,
    make_stack: Callable[..., Stack],
    run_cli: Cli,
    fault_proxy: Callable[..., FaultInjectingProxy],
) -> None:
    """When SQS is unavailable at start-up, the drain exits 1 (try again later), not 2 (fix the configuration)."""
    stack = fresh_stack(make_stack, aws)
    put_object(aws, stack.bucket, "jobs/one.json", json.dumps(job_document(1, now=time.time())).encode())
    proxy = fault_proxy(
        rate=1.0, seed=SEED, faults=(Fault.UNAVAILABLE,), operations={"sqs:GetQueueAttributes"}
    )
    with DogStatsdReceiver() as receiver:
        result = run_cli(
            "drain", *FAST_RETRY, env=env_for(receiver.url, proxy.url, SQS_QUEUE_URL=stack.queue_url)
        )
    assert proxy.injected, "no call failed"
    assert aws.queue_depth(stack.queue_url) == (1, 0), "the message must stay for a later run"
    assert result.returncode == 1, f"exit {result.returncode}: {result.stderr.strip().splitlines()[-1:]}"


def test_poison_waits_on_the_queue_while_the_dead_letter_queue_cannot_be_written(
    aws: Aws,
    make_stack: Callable[..., Stack],
    drain_until_empty: Callable[..., DrainRuns],
    fault_proxy: Callable[..., FaultInjectingProxy],
    report_figure: Callable[[str], None],
) -> None:
    """A rejected message whose copy to the DLQ fails stays on the queue until a later copy succeeds."""
    stack = fresh_stack(make_stack, aws)
    poison = [f"jobs/poison-{index}.json" for index in range(12)]
    for key in poison:
        put_object(aws, stack.bucket, key, b"{not json")
    proxy = fault_proxy(
        rate=0.75, seed=SEED + 2, faults=(Fault.UNAVAILABLE, Fault.DROP), operations={"sqs:SendMessage"}
    )
    with DogStatsdReceiver() as receiver:
        runs = drain_until_empty(stack.queue_url, *FAST_RETRY, env=env_for(receiver.url, proxy.url))
    assert runs.emptied, f"the queue never emptied:\n{runs.describe()}"
    dead = aws.drain_raw(stack.dead_letter_queue_url)
    reasons = {m["MessageAttributes"]["reason"]["StringValue"] for m in dead}
    keys = {unquote_plus(json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"]) for m in dead}
    assert keys == set(poison), "a poison message was lost on the way to the DLQ"
    assert reasons == {"invalid-json"}, "a message reached the DLQ without its reason (SQS redrive?)"
    assert runs.total("rejected") > runs.total("dead_lettered") >= len(poison), (
        "no copy to the DLQ ever failed beyond botocore's retries: the test proves nothing"
    )
    report_figure(
        f"DLQ writes failing: {len(poison)} poison messages, {proxy.total_injected} SendMessage faults, "
        f"{len(runs.results)} runs, {len(dead)} DLQ copies (duplicates {len(dead) - len(poison)}), 0 lost"
    )
