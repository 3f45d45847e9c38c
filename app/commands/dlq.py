"""``cloud-job-metrics dlq``: what the dead-letter queue holds, counted per reason.

It changes nothing: every message it reads is made visible again at once (its receive count on
the dead-letter queue goes up by one, which nothing there acts on). What it prints comes from the
messages (object keys, reasons), so control characters are shown escaped, never sent to the
terminal as they are.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO

from app.aws.clients import aws_clients
from app.aws.operations import ReceivedLetter, approximate_count, receive_letters, release
from app.commands.exits import EXIT_OK
from app.commands.flags import add_aws_flags, settings_from
from app.commands.queues import dead_letter_queue_url
from app.core.operator import DeadLetter, ReasonCount, count_by_reason
from app.logs import escape_control

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

# Long enough to walk a few thousand messages before the first ones come back on their own.
PEEK_VISIBILITY_SECONDS = 60


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``dlq`` subcommand."""
    parser = commands.add_parser("dlq", help="what is in the dead-letter queue, per reason (read-only)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--examples", type=int, default=3, help="examples per reason; default 3")
    parser.add_argument(
        "--max-messages", type=int, default=1000, help="read at most this many messages; default 1000"
    )
    add_aws_flags(parser)
    parser.set_defaults(run=run)


def peek(sqs: SQSClient, queue_url: str, *, max_messages: int) -> list[ReceivedLetter]:
    """Read up to ``max_messages`` distinct messages, then make every one visible again."""
    held: list[ReceivedLetter] = []
    seen: dict[str, ReceivedLetter] = {}
    try:
        while len(seen) < max_messages:
            batch = receive_letters(sqs, queue_url, visibility_timeout_seconds=PEEK_VISIBILITY_SECONDS)
            if not batch:
                break
            held.extend(batch)
            for letter in batch:
                seen.setdefault(letter.message_id, letter)
    finally:
        release(sqs, queue_url, held)
    return list(seen.values())[:max_messages]


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Read the dead-letter queue and print the report."""
    settings = settings_from(args, env)
    sqs, s3 = aws_clients(settings)
    dlq_url = dead_letter_queue_url(settings, sqs, s3)
    letters = peek(sqs, dlq_url, max_messages=args.max_messages)
    total = approximate_count(sqs, dlq_url)
    groups = count_by_reason(
        (DeadLetter.from_message(x.message_id, x.body, x.attributes) for x in letters),
        examples=args.examples,
    )
    if args.json:
        document = {
            "dead_letter_queue_url": dlq_url,
            "read": len(letters),
            "approximate_total": total,
            "reasons": [group.to_json() for group in groups],
        }
        print(json.dumps(document), flush=True)
    else:
        print_table(dlq_url, len(letters), total, groups, sys.stdout)
    return EXIT_OK


def print_table(url: str, read: int, total: int, groups: list[ReasonCount], out: TextIO) -> None:
    """The human report: one row per reason, its examples indented below, control characters escaped."""
    print(f"dead-letter queue  {escape_control(url)}", file=out)
    print(f"messages read      {read} (about {total} visible now)\n", file=out)
    if not groups:
        print("empty", file=out)
        return
    reasons = [escape_control(g.reason) for g in groups]
    width = max(len("reason"), *(len(reason) for reason in reasons))
    print(f"{'reason':<{width}}  {'count':>6}", file=out)
    print(f"{'-' * width}  {'-' * 6}", file=out)
    for group, reason in zip(groups, reasons, strict=True):
        print(f"{reason:<{width}}  {group.count:>6}", file=out)
        for example in group.examples:
            uri = ", ".join(example.uris) or "(no S3 object)"
            detail = example.detail[:100]
            print(f"  {escape_control(f'{example.message_id}  {uri}  {detail}')}", file=out)
