"""``cloud-job-metrics redrive``: move dead-lettered messages back to the source queue.

Run it after the cause was fixed. Without a filter, SQS's own move task does the work where the
endpoint offers it (``StartMessageMoveTask``). Otherwise, or with ``--reason``/``--max``, each
message is sent to the source queue first and deleted from the dead-letter queue after: a crash
in between leaves a duplicate, never a loss. Messages not chosen are made visible again at once.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from app.aws.clients import aws_clients
from app.aws.operations import (
    ReceivedLetter,
    approximate_count,
    delete_letters,
    queue_arn,
    receive_letters,
    release,
    send_batch,
    start_move_task,
)
from app.commands.exits import EXIT_INCOMPLETE, EXIT_OK
from app.commands.flags import add_aws_flags, settings_from
from app.commands.queues import dead_letter_queue_url, require_queue_url
from app.core.operator import NO_REASON

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

MOVE_VISIBILITY_SECONDS = 60


@dataclass(slots=True)
class RedriveSummary:
    """The JSON line ``redrive`` ends with."""

    source_queue_url: str
    dead_letter_queue_url: str
    native: bool = False
    task_handle: str | None = None
    moved: int = 0
    left: int = 0
    failed: int = 0

    def to_json(self) -> str:
        """One line of JSON."""
        return json.dumps(asdict(self))


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``redrive`` subcommand."""
    parser = commands.add_parser("redrive", help="move dead-lettered messages back to the source queue")
    parser.add_argument("--reason", help="only messages dead-lettered with this reason (see `dlq`)")
    parser.add_argument("--max", type=int, help="move at most this many messages")
    parser.add_argument(
        "--message-by-message",
        action="store_true",
        help="never use SQS's StartMessageMoveTask, even without a filter",
    )
    add_aws_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Move the chosen messages; print the summary; 0 when none failed."""
    settings = settings_from(args, env)
    source = require_queue_url(settings)
    sqs, s3 = aws_clients(settings)
    dlq = dead_letter_queue_url(settings, sqs, s3)
    summary = RedriveSummary(source_queue_url=source, dead_letter_queue_url=dlq)
    unfiltered = args.reason is None and args.max is None
    handle = None
    if unfiltered and not args.message_by_message:
        handle = start_move_task(sqs, source_arn=queue_arn(sqs, dlq), destination_arn=queue_arn(sqs, source))
    if handle is not None:
        summary.native, summary.task_handle = True, handle
        summary.left = approximate_count(sqs, dlq)
        log.info("redrive.native_started task=%s messages~%d", handle, summary.left)
    else:
        move(sqs, source=source, dlq=dlq, reason=args.reason, limit=args.max, summary=summary)
    print(summary.to_json(), flush=True)
    return EXIT_OK if summary.failed == 0 else EXIT_INCOMPLETE


def move(
    sqs: SQSClient, *, source: str, dlq: str, reason: str | None, limit: int | None, summary: RedriveSummary
) -> None:
    """Send, then delete, one batch at a time; release everything not moved.

    If a call fails (access denied, say), the batch in hand is released with the rest, so the
    dead-letter queue shows it again at once (a message already sent is then on both queues).
    """
    held: list[ReceivedLetter] = []
    in_hand: list[ReceivedLetter] = []
    try:
        while limit is None or summary.moved < limit:
            batch = receive_letters(sqs, dlq, visibility_timeout_seconds=MOVE_VISIBILITY_SECONDS)
            if not batch:
                break
            chosen = [x for x in batch if reason is None or x.attributes.get("reason", NO_REASON) == reason]
            if limit is not None:
                chosen = chosen[: limit - summary.moved]
            held.extend(x for x in batch if x not in chosen)
            in_hand = chosen
            failing = set(send_batch(sqs, source, [x.body for x in chosen]))
            sent = [x for i, x in enumerate(chosen) if i not in failing]
            held.extend(x for i, x in enumerate(chosen) if i in failing)
            in_hand = sent
            summary.failed += len(failing)
            # Sent first, deleted after: a crash here duplicates a message, it never loses one.
            deleted = delete_letters(sqs, dlq, sent)
            in_hand = []
            summary.moved += len(sent)
            if deleted < len(sent):
                log.warning("redrive.delete_incomplete sent=%d deleted=%d", len(sent), deleted)
    finally:
        release(sqs, dlq, held + in_hand)
    summary.left = approximate_count(sqs, dlq)
