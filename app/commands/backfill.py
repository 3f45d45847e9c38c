"""``cloud-job-metrics backfill``: enqueue a notification for objects that never had one.

For objects written before the bucket notification existed, or whose notifications were lost:
list the bucket (the latest version of each key on a versioned bucket), and send one S3-format
notification per object to the queue, so the normal drain forwards them with all its guarantees.
Running it twice sends the objects twice; a forward repeated with the same timestamps does not
change what Datadog keeps.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TextIO

from app.aws.clients import aws_clients, region_for
from app.aws.operations import list_objects, send_batch
from app.aws.resources import SQS_BATCH_LIMIT
from app.commands.exits import EXIT_INCOMPLETE, EXIT_OK
from app.commands.flags import add_aws_flags, settings_from
from app.commands.queues import require_queue_url
from app.core.operator import ListedObject, backfill_notification, parse_since

log = logging.getLogger(__name__)


@dataclass(slots=True)
class BackfillSummary:
    """The JSON line ``backfill`` ends with."""

    bucket: str
    prefix: str
    since: float | None
    dry_run: bool
    listed: int = 0
    matched: int = 0
    enqueued: int = 0
    failed: int = 0
    seconds: float = 0.0

    def to_json(self) -> str:
        """One line of JSON."""
        return json.dumps(asdict(self))


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``backfill`` subcommand."""
    parser = commands.add_parser(
        "backfill",
        help="enqueue notifications for objects already in the bucket "
        "(needs s3:GetBucketVersioning, then s3:ListBucketVersions or s3:ListBucket)",
    )
    parser.add_argument("--bucket", required=True, help="bucket to list")
    parser.add_argument("--prefix", default="", help="only keys under this prefix")
    parser.add_argument(
        "--since", help="only objects modified since: ISO 8601, epoch seconds or a duration (90m, 2h, 7d)"
    )
    parser.add_argument("--dry-run", action="store_true", help="list and count, send nothing")
    add_aws_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """List the bucket, enqueue one notification per matching object, print the summary."""
    settings = settings_from(args, env)
    queue_url = None if args.dry_run else require_queue_url(settings)
    since = None if args.since is None else parse_since(args.since, now=time.time())
    sqs, s3 = aws_clients(settings)
    region = region_for(settings) or s3.meta.region_name or "us-east-1"
    summary = BackfillSummary(bucket=args.bucket, prefix=args.prefix, since=since, dry_run=args.dry_run)
    started = time.monotonic()
    ticker = _Ticker(sys.stderr)
    batch: list[ListedObject] = []

    def flush() -> None:
        if queue_url is not None and batch:
            failing = send_batch(sqs, queue_url, [backfill_notification(o, region=region) for o in batch])
            for index in failing:
                log.error("backfill.send_failed uri=s3://%s/%s", batch[index].bucket, batch[index].key)
            summary.failed += len(failing)
            summary.enqueued += len(batch) - len(failing)
        batch.clear()

    for obj in list_objects(s3, args.bucket, args.prefix):
        summary.listed += 1
        # "Folder" placeholders are not files; objects older than --since are not wanted.
        if obj.key.endswith("/") or (since is not None and obj.last_modified < since):
            continue
        summary.matched += 1
        batch.append(obj)
        if len(batch) == SQS_BATCH_LIMIT:
            flush()
        ticker.show(summary)
    flush()
    ticker.done(summary)
    summary.seconds = round(time.monotonic() - started, 3)
    print(summary.to_json(), flush=True)
    return EXIT_OK if summary.failed == 0 else EXIT_INCOMPLETE


class _Ticker:
    """Progress on stderr: a live line on a terminal, a log line every five seconds otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self.interval_seconds = 0.2 if self.live else 5.0
        self._last = time.monotonic()

    def _line(self, summary: BackfillSummary) -> str:
        if summary.dry_run:
            return f"listed {summary.listed}  would enqueue {summary.matched}"
        return f"listed {summary.listed}  matched {summary.matched}  enqueued {summary.enqueued}"

    def show(self, summary: BackfillSummary) -> None:
        """Report if the interval has passed."""
        now = time.monotonic()
        if now - self._last < self.interval_seconds:
            return
        self._last = now
        if self.live:
            self.stream.write("\r\x1b[2K" + self._line(summary))
            self.stream.flush()
        else:
            log.info("backfill.progress %s", self._line(summary))

    def done(self, summary: BackfillSummary) -> None:
        """End the live line."""
        if self.live:
            self.stream.write("\r\x1b[2K" + self._line(summary) + "\n")
            self.stream.flush()
