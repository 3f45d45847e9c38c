"""``cloud-job-metrics demo``: the whole flow on the embedded emulator and a local Datadog.

Creates a bucket, a queue with a dead-letter queue and the bucket notification, uploads generated
job files (some failed, one invalid, and a burst of runs of one job finishing in the same second),
drains them with two ``drain`` processes side by side (as replicas or overlapping cron runs do),
with distributions on, and shows what was sent beside what Datadog would keep from it
(app/local/datadog_view.py). ``--sink api`` does the same through the HTTP API into a local intake.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from app.aws.clients import aws_clients
from app.core.catalog import DEFAULT_NAMESPACE, DISTRIBUTION_PREFIX, RUNS, SELF_PREFIX, SUCCESS
from app.generator import make_job_metadata, object_key
from app.local.datadog_view import DatadogView
from app.local.dogstatsd import DogStatsdReceiver
from app.local.emulator import emulator_session, moto_server
from app.local.provision import provision
from app.local.writers import emulator_env, merged, run_drains
from app.settings import Settings

# Not one of the generator's job names, so the burst stands apart in every table.
BURST_JOB = "hourly-ingest"
PERCENTILE_FIELD = "duration_seconds"
WRITERS = 2
DEMO_API_KEY = "demo-api-key"


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
    """Run the demo with the requested number of job files and sink."""
    return run_demo(jobs=args.jobs, sink=args.sink)


@dataclass(frozen=True, slots=True)
class Destination:
    """Where the drains send: what to tell them, and how to read back what Datadog would keep."""

    label: str
    env: Mapping[str, str]
    receiver: DogStatsdReceiver | None = None
    intake: Any = None

    def events(self) -> list[tuple[str, str, str, tuple[str, ...]]]:
        """(title, alert type, text, tags) of every event received."""
        if self.receiver is not None:
            return [(e.title, e.alert_type, e.text, e.tags) for e in self.receiver.events()]
        return [(e["title"], e["alert_type"], e["text"], tuple(e["tags"])) for e in self.intake.events()]

    def view(self) -> DatadogView:
        """What Datadog would keep of everything received."""
        return self.receiver.datadog_view() if self.receiver is not None else self.intake.datadog_view()


@contextlib.contextmanager
def destination(sink: str) -> Iterator[Destination]:
    """The local receiver (one agent) or the local intake, running for the block."""
    if sink == "api":
        from app.local.intake import LocalIntake

        with LocalIntake(api_key=DEMO_API_KEY) as intake:
            yield Destination(
                f"intake     {intake.url}  (local Datadog HTTP intake)",
                {"SINK": "api", "DD_API_KEY": DEMO_API_KEY, "DD_DD_URL": intake.url},
                intake=intake,
            )
        return
    with DogStatsdReceiver() as receiver:
        yield Destination(
            f"dogstatsd  {receiver.url}  (local receiver: one agent)",
            {"DD_DOGSTATSD_URL": receiver.url},
            receiver=receiver,
        )


def _upload(s3: Any, bucket: str, jobs: int, rng: random.Random, out: TextIO) -> int:
    """Upload the demo's job files; return how many runs of the burst job share one second."""
    failed = max(1, jobs // 8)
    burst = jobs // 3
    now = time.time()
    for index in range(jobs - 1):
        finished = now - 45 if index < burst else now - rng.uniform(0, 600)
        metadata = make_job_metadata(rng, now=finished, success=index >= failed)
        if index < burst:
            metadata["job_name"] = BURST_JOB
        s3.put_object(Bucket=bucket, Key=object_key(metadata), Body=json.dumps(metadata).encode())
    s3.put_object(
        Bucket=bucket, Key="jobs/broken/producer-bug.json", Body=b'{"job_success": true, "loss": NaN}'
    )
    print(
        f"uploaded   {jobs} job files to s3://{bucket}/jobs/ ({failed} failed, 1 invalid; "
        f"{burst} runs of {BURST_JOB} finished in the same second)",
        file=out,
    )
    return burst


def run_demo(
    *,
    jobs: int = 36,
    sink: str = "dogstatsd",
    out: TextIO = sys.stdout,
    seed: int = 7,
    writers: int = WRITERS,
) -> int:
    """Run the demo; print what was sent and kept and the merged summary line; return 0/1."""
    rng = random.Random(seed)
    with moto_server() as endpoint, destination(sink) as target:
        sqs, s3 = aws_clients(Settings(endpoint_url=endpoint), session=emulator_session())
        stack = provision(sqs, s3, bucket="cloud-job-results", queue="cloud-job-results-queue")
        print(f"emulator   {endpoint}  (moto, in-process)", file=out)
        print(target.label, file=out)
        print(f"queue      {stack.queue_url}", file=out)
        burst = _upload(s3, stack.bucket, jobs, rng, out)
        print(
            f"draining   with {writers} `drain` processes side by side on the queue\n", file=out, flush=True
        )
        env = {"SQS_QUEUE_URL": stack.queue_url, "DISTRIBUTIONS": "true", "CONSTANT_TAGS": "env:demo"}
        runs = run_drains(writers, emulator_env(endpoint, {**env, **target.env}))
        if target.receiver is not None:
            target.receiver.wait_for(lambda r: len(r.events()) >= jobs, timeout_seconds=3)
        view = target.view()
        _print_sent_and_kept(view, out)
        _print_events(target, out)
        _print_what_datadog_shows(view, burst, writers, out)
        dead = sqs.get_queue_attributes(
            QueueUrl=stack.dead_letter_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
        malformed = len(target.receiver.errors) if target.receiver is not None else 0
        print(f"\ndead-letter queue now holds {dead} message(s); malformed datagrams: {malformed}", file=out)
        summary = merged(runs)
        for failed_run in (r for r in runs if not r.summary):
            print(f"a drain process ended without a summary:\n{failed_run.stderr[-2000:]}", file=out)
        print(json.dumps({key: round(value, 3) for key, value in summary.items()}), file=out)
    # One invalid file is part of the demo, so a rejected message is the expected result.
    ok = summary.get("forwarded") == jobs - 1 and summary.get("rejected") == 1
    return 0 if ok and all(r.summary for r in runs) else 1


def _kind(view: DatadogView, name: str) -> str:
    if any(key[0] == name for key in view.distributions):
        return "distribution"
    return "gauge" if any(key[0] == name for key in view.gauges) else "count"


def _kept(view: DatadogView, name: str, kind: str) -> int:
    if kind == "distribution":
        return len(view.distribution_values(name))
    if kind == "gauge":
        return view.gauge_points(name)
    return sum(len(points) for key, points in view.counts.items() if key[0] == name)


def _print_sent_and_kept(view: DatadogView, out: TextIO) -> None:
    """Per metric: points or values sent, and what Datadog keeps of them."""
    print("SENT AND KEPT (what Datadog stores of what the two processes wrote)", file=out)
    print(f"  {'metric':<44} {'type':<12} {'sent':>5} {'kept':>5}", file=out)
    names = sorted(name for name in view.sent if not name.startswith(SELF_PREFIX))
    rows = [(name, _kind(view, name)) for name in names]
    for name, kind in sorted(rows, key=lambda row: (row[1], row[0])):
        print(f"  {name:<44} {kind:<12} {view.sent[name]:>5} {_kept(view, name, kind):>5}", file=out)


def _print_events(target: Destination, out: TextIO) -> None:
    events = [e for e in target.events() if "cloud_job_metric" in e[3]]
    alerts = Counter(alert for _, alert, _, _ in events)
    print(
        f"  events: {sum(alerts.values())} ({', '.join(f'{n} {a}' for a, n in sorted(alerts.items()))})",
        file=out,
    )
    for _title, _alert, text, _tags in (e for e in events if e[0] == "job metadata rejected"):
        print(f"  rejected: {text.splitlines()[0]} -> {text.splitlines()[2]}", file=out)


def _print_what_datadog_shows(view: DatadogView, burst: int, writers: int, out: TextIO) -> None:
    """Runs per job and status, value percentiles, and the burst: every run counted, one gauge point kept."""
    runs = f"{DEFAULT_NAMESPACE}.{RUNS}"
    print(f"\nWHAT DATADOG SHOWS\n  runs: count:{runs}{{*}} by {{job,status}}.as_count()", file=out)
    print(f"  {'job':<20} {'status':<8} {'runs':>5}", file=out)
    by_job = view.runs_by(runs, "job", "status")
    for (job, status), count in sorted(by_job.items()):
        print(f"  {job:<20} {status:<8} {count:>5g}", file=out)
    field = f"{DEFAULT_NAMESPACE}.{DISTRIBUTION_PREFIX}.{PERCENTILE_FIELD}"
    print(f"\n  {PERCENTILE_FIELD} per job (distribution {field}: every value kept)", file=out)
    print(f"  {'job':<20} {'values':>6} {'p50':>9} {'p95':>9}", file=out)
    for job in sorted({job for job, _ in by_job}):
        values = view.distribution_values(field, f"job:{job}")
        p50, p95 = view.percentile(field, 0.5, f"job:{job}"), view.percentile(field, 0.95, f"job:{job}")
        print(f"  {job:<20} {len(values):>6} {p50 or 0:>9.1f} {p95 or 0:>9.1f}", file=out)
    success = f"{DEFAULT_NAMESPACE}.{SUCCESS}"
    kept_points = sum(
        len(p) for key, p in view.gauges.items() if key[0] == success and f"job:{BURST_JOB}" in key[1]
    )
    print(
        f"\n  burst: {burst} runs of {BURST_JOB} in one second, written by {writers} processes: "
        f"{view.runs(runs, f'job:{BURST_JOB}')} counted by {runs}; the gauge {success} keeps "
        f"{kept_points} point(s) of them (the latest value per series and second)",
        file=out,
    )
