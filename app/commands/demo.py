"""``cloud-job-metrics demo``: the whole flow on the embedded emulator and a local receiver.

Creates a bucket, a queue with a dead-letter queue and the bucket notification, uploads generated
job files (some failed, one invalid), drains them, and shows what the agent received.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Mapping
from typing import TextIO

from app.aws.clients import aws_clients
from app.commands.progress import Progress
from app.core.metrics import LEGACY_TAG
from app.drain.service import drain_queue
from app.generator import make_job_metadata, object_key
from app.local.dogstatsd import DogStatsdReceiver
from app.local.emulator import emulator_session, moto_server
from app.local.provision import provision
from app.settings import Settings, StatsdTarget
from app.sinks.dogstatsd import statsd_client


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand."""
    parser = commands.add_parser("demo", help="run the whole flow on a local emulator and receiver")
    parser.add_argument("--jobs", type=int, default=36, help="job files to generate; default 36")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run the demo with the requested number of job files."""
    return run_demo(jobs=args.jobs)


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
        now = time.time()
        for index in range(jobs - 1):
            metadata = make_job_metadata(rng, now=now - rng.uniform(0, 600), success=index >= failed)
            s3.put_object(Bucket=stack.bucket, Key=object_key(metadata), Body=json.dumps(metadata).encode())
        s3.put_object(
            Bucket=stack.bucket,
            Key="jobs/broken/producer-bug.json",
            Body=b'{"job_success": true, "loss": NaN}',
        )
        print(
            f"uploaded   {jobs} job files to s3://{stack.bucket}/jobs/ ({failed} failed, 1 invalid)\n",
            file=out,
        )
        settings = settings.with_changes(queue_url=stack.queue_url)
        with Progress(sys.stderr) as progress:
            summary = drain_queue(settings, sqs=sqs, s3=s3, statsd=statsd_client(settings), progress=progress)
        receiver.wait_for(lambda r: len(r.events()) >= jobs, timeout_seconds=3)
        _print_table(receiver, out)
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


def _print_table(receiver: DogStatsdReceiver, out: TextIO) -> None:
    events = [e for e in receiver.events() if LEGACY_TAG in e.tags]
    by_job: Counter[tuple[str, str]] = Counter()
    for event in events:
        job = next((t.split(":", 1)[1] for t in event.tags if t.startswith("job:")), "(rejected file)")
        by_job[(job, event.alert_type)] += 1
    print(f"{'job':<20} {'alert':<8} {'events':>6}", file=out)
    print(f"{'-' * 20} {'-' * 8} {'-' * 6}", file=out)
    for (job, alert), count in sorted(by_job.items()):
        print(f"{job:<20} {alert:<8} {count:>6}", file=out)
    rejected = [e for e in events if e.title == "job metadata rejected"]
    for event in rejected:
        print(f"\nrejected: {event.text.splitlines()[0]} -> {event.text.splitlines()[2]}", file=out)
    gauges = receiver.metrics()
    names = Counter(g.name for g in gauges if not g.name.startswith("cloud_job_metrics."))
    print(f"\n{'gauge':<36} {'points':>6}  example", file=out)
    print(f"{'-' * 36} {'-' * 6}  {'-' * 30}", file=out)
    for name, count in sorted(names.items()):
        example = next(g for g in gauges if g.name == name)
        stamp = f" @T{example.timestamp}" if example.timestamp else ""
        print(f"{name:<36} {count:>6}  {example.value:g}{stamp}", file=out)
