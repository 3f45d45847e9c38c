"""``cloud-job-metrics demo``: the whole flow on the embedded emulator and a local receiver.

Creates a bucket, a queue with a dead-letter queue and the bucket notification, uploads generated
job files (some failed, one invalid, and a burst of runs of one job finishing in the same second),
drains them with distributions on, and shows what the agent received beside what Datadog would
store from it (app/local/datadog_view.py).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, TextIO

from app.aws.clients import aws_clients
from app.commands.progress import Progress
from app.core.catalog import DEFAULT_NAMESPACE, DISTRIBUTION_PREFIX, JOBS, SELF_PREFIX
from app.core.metrics import LEGACY_TAG
from app.drain.service import drain_queue
from app.generator import make_job_metadata, object_key
from app.local.datadog_view import DatadogView
from app.local.dogstatsd import DogStatsdReceiver
from app.local.emulator import emulator_session, moto_server
from app.local.provision import provision
from app.settings import Settings, StatsdTarget, resolve
from app.sinks.dogstatsd import statsd_client

BURST_JOB = "nightly-etl"
PERCENTILE_FIELD = "duration_seconds"
TYPE_NAMES = {"c": "count", "g": "gauge", "d": "distribution"}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand."""
    parser = commands.add_parser("demo", help="run the whole flow on a local emulator and receiver")
    parser.add_argument("--jobs", type=int, default=36, help="job files to generate; default 36")
    parser.add_argument(
        "--sink",
        choices=("dogstatsd", "api"),
        default="dogstatsd",
        help="send to a local DogStatsD receiver or to a local Datadog HTTP intake; default dogstatsd",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run the demo with the requested number of job files."""
    if args.sink == "api":
        return run_api_demo(jobs=args.jobs)
    return run_demo(jobs=args.jobs)


def _upload(s3: Any, bucket: str, jobs: int, rng: random.Random, out: TextIO) -> None:
    failed = max(1, jobs // 8)
    now = time.time()
    for index in range(jobs - 1):
        metadata = make_job_metadata(rng, now=now - rng.uniform(0, 600), success=index >= failed)
        s3.put_object(Bucket=bucket, Key=object_key(metadata), Body=json.dumps(metadata).encode())
    s3.put_object(
        Bucket=bucket, Key="jobs/broken/producer-bug.json", Body=b'{"job_success": true, "loss": NaN}'
    )
    print(f"uploaded   {jobs} job files to s3://{bucket}/jobs/ ({failed} failed, 1 invalid)\n", file=out)


def run_api_demo(*, jobs: int = 36, out: TextIO = sys.stdout, seed: int = 7) -> int:
    """The demo with the HTTP API sink and a local intake; prints what the intake accepted."""
    from app.local.intake import SERIES_PATH, LocalIntake
    from app.sinks.api import api_sink

    rng = random.Random(seed)
    key = "demo-api-key"
    with moto_server() as endpoint, LocalIntake(api_key=key) as intake:
        settings = resolve(
            {"sink": "api", "tags": "env:demo"},
            {"DD_API_KEY": key, "DD_DD_URL": intake.url, "DD_HOSTNAME": "demo-forwarder"},
        ).with_changes(endpoint_url=endpoint)
        sqs, s3 = aws_clients(settings, session=emulator_session())
        stack = provision(sqs, s3, bucket="cloud-job-results", queue="cloud-job-results-queue")
        print(f"emulator   {endpoint}  (moto, in-process)", file=out)
        print(f"intake     {intake.url}  (local Datadog HTTP intake)", file=out)
        print(f"queue      {stack.queue_url}", file=out)
        _upload(s3, stack.bucket, jobs, rng, out)
        sink = api_sink(settings.with_changes(queue_url=stack.queue_url))
        try:
            with Progress(sys.stderr) as progress:
                summary = drain_queue(
                    settings.with_changes(queue_url=stack.queue_url),
                    sqs=sqs,
                    s3=s3,
                    sink=sink,
                    progress=progress,
                )
        finally:
            sink.close()
        by_job: Counter[tuple[str, str]] = Counter()
        for event in intake.events():
            job = next((t.split(":", 1)[1] for t in event["tags"] if t.startswith("job:")), "(rejected file)")
            by_job[(job, event["alert_type"])] += 1
        print(f"{'job':<20} {'alert':<8} {'events':>6}", file=out)
        print(f"{'-' * 20} {'-' * 8} {'-' * 6}", file=out)
        for (job, alert), count in sorted(by_job.items()):
            print(f"{job:<20} {alert:<8} {count:>6}", file=out)
        stored = [p for p in intake.stored() if not p.metric.startswith("cloud_job_metrics.")]
        print(f"\n{'series kept by Datadog':<36} {'points':>6}  total/example", file=out)
        print(f"{'-' * 36} {'-' * 6}  {'-' * 30}", file=out)
        for name in sorted({p.metric for p in stored}):
            points = [p for p in stored if p.metric == name]
            shown = (
                f"{sum(p.value for p in points):g} jobs" if points[0].type == 1 else f"{points[0].value:g}"
            )
            print(f"{name:<36} {len(points):>6}  {shown} @{points[0].timestamp}", file=out)
        statuses = Counter(status for _, status in intake.requests())
        print(
            f"\nintake answers: {dict(sorted(statuses.items()))}; requests to {SERIES_PATH}: "
            f"{len(intake.requests(SERIES_PATH))}",
            file=out,
        )
        print(summary.to_json(), file=out)
    return 0 if summary.forwarded == jobs - 1 and summary.rejected == 1 else 1


def run_demo(*, jobs: int = 36, out: TextIO = sys.stdout, seed: int = 7) -> int:
    """Run the demo; print the received metrics as a table and the summary line; return 0/1."""
    rng = random.Random(seed)
    with moto_server() as endpoint, DogStatsdReceiver() as receiver:
        settings = Settings(
            endpoint_url=endpoint, statsd=StatsdTarget(port=receiver.port), constant_tags=("env:demo",)
        )
        sqs, s3 = aws_clients(settings, session=emulator_session())
        stack = provision(sqs, s3, bucket="cloud-job-results", queue="cloud-job-results-queue")
        print(f"emulator   {endpoint}  (moto, in-process)", file=out)
        print(f"dogstatsd  {receiver.url}  (local receiver)", file=out)
        print(f"queue      {stack.queue_url}", file=out)
        failed = max(1, jobs // 8)
        burst = jobs // 3
        now = time.time()
        for index in range(jobs - 1):
            finished = now - 45 if index < burst else now - rng.uniform(0, 600)
            metadata = make_job_metadata(rng, now=finished, success=index >= failed)
            if index < burst:
                metadata["job_name"] = BURST_JOB
            s3.put_object(Bucket=stack.bucket, Key=object_key(metadata), Body=json.dumps(metadata).encode())
        s3.put_object(
            Bucket=stack.bucket,
            Key="jobs/broken/producer-bug.json",
            Body=b'{"job_success": true, "loss": NaN}',
        )
        print(
            f"uploaded   {jobs} job files to s3://{stack.bucket}/jobs/ ({failed} failed, 1 invalid; "
            f"{burst} runs of {BURST_JOB} finished in the same second)\n",
            file=out,
        )
        settings = settings.with_changes(queue_url=stack.queue_url, distributions=True)
        with Progress(sys.stderr) as progress:
            summary = drain_queue(settings, sqs=sqs, s3=s3, statsd=statsd_client(settings), progress=progress)
        receiver.wait_for(lambda r: len(r.events()) >= jobs, timeout_seconds=3)
        _print_sent(receiver, out)
        _print_datadog_view(receiver.datadog_view(), out)
        dead = sqs.get_queue_attributes(
            QueueUrl=stack.dead_letter_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
        print(
            f"\ndead-letter queue now holds {dead} message(s); malformed datagrams: {len(receiver.errors)}",
            file=out,
        )
        print(summary.to_json(), file=out)
    # One invalid file is part of the demo, so a rejected message is the expected result.
    return 0 if summary.forwarded == jobs - 1 and summary.rejected == 1 else 1


def _print_sent(receiver: DogStatsdReceiver, out: TextIO) -> None:
    """What crossed the wire: lines per metric name and type, and the events."""
    print("SENT (DogStatsD lines the receiver parsed)", file=out)
    metrics = [m for m in receiver.metrics() if not m.name.startswith(SELF_PREFIX)]
    lines = Counter((m.name, TYPE_NAMES.get(m.type, m.type)) for m in metrics)
    print(f"  {'metric':<44} {'type':<12} {'lines':>5}", file=out)
    for (name, kind), count in sorted(lines.items(), key=lambda item: (item[0][1], item[0][0])):
        print(f"  {name:<44} {kind:<12} {count:>5}", file=out)
    events = [e for e in receiver.events() if LEGACY_TAG in e.tags]
    alerts = Counter(e.alert_type for e in events)
    print(
        f"  events: {sum(alerts.values())} ({', '.join(f'{n} {a}' for a, n in sorted(alerts.items()))})",
        file=out,
    )
    for event in (e for e in events if e.title == "job metadata rejected"):
        print(f"  rejected: {event.text.splitlines()[0]} -> {event.text.splitlines()[2]}", file=out)


def _print_datadog_view(view: DatadogView, out: TextIO) -> None:
    """What Datadog would keep: runs per job and status, value percentiles, gauge points kept."""
    jobs = f"{DEFAULT_NAMESPACE}.{JOBS}"
    print(f"\nWHAT DATADOG SHOWS\n  runs: sum:{jobs}{{*}} by {{job,status}}.as_count()", file=out)
    print(f"  {'job':<20} {'status':<8} {'runs':>5}", file=out)
    for (job, status), runs in sorted(view.count_by(jobs, "job", "status").items()):
        print(f"  {job:<20} {status:<8} {runs:>5g}", file=out)
    field = f"{DEFAULT_NAMESPACE}.{DISTRIBUTION_PREFIX}.{PERCENTILE_FIELD}"
    print(f"\n  {PERCENTILE_FIELD} per job (distribution {field}: every value kept)", file=out)
    print(f"  {'job':<20} {'values':>6} {'p50':>9} {'p95':>9}", file=out)
    for job in sorted({job for job, _ in view.count_by(jobs, "job", "status")}):
        values = view.distribution_values(field, f"job:{job}")
        p50, p95 = view.percentile(field, 0.5, f"job:{job}"), view.percentile(field, 0.95, f"job:{job}")
        print(f"  {job:<20} {len(values):>6} {p50 or 0:>9.1f} {p95 or 0:>9.1f}", file=out)
    print("\n  gauges: one point per series and second survives (the latest value per job)", file=out)
    print(f"  {'gauge':<44} {'sent':>5} {'kept':>5}", file=out)
    for name in sorted({name for name, _ in view.gauges}):
        if not name.startswith(SELF_PREFIX):
            print(f"  {name:<44} {view.sent[name]:>5} {view.gauge_points(name):>5}", file=out)
