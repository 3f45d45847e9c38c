"""A message with a valid and an invalid record while the agent is away: kept, not dead-lettered.

Through the console script and through the Lambda consumer.

The failed hand-off outranks the invalid record's permanent verdict: the message is retried, so
the valid job is not lost with it; once the agent is back, the valid job is forwarded and only
then is the message dead-lettered for its invalid record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.lambda_handler import build_consumer
from app.local.provision import Stack
from app.settings import Settings, StatsdTarget
from app.sinks.dogstatsd import statsd_client
from tests.conftest import Aws, CliResult
from tests.faults.conftest import (
    UnixAgent,
    env_for,
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
BACKOFF_SECONDS = 2
FLAGS = ("--wait-time-seconds", "1", "--max-backoff-seconds", str(BACKOFF_SECONDS))


def test_valid_and_invalid_records_with_the_agent_down_wait_for_the_agent(
    aws: Aws,
    quiet_stack: Callable[..., Stack],
    run_cli: Cli,
    unix_agent: Callable[..., UnixAgent],
    report_figure: Callable[[str], None],
) -> None:
    """Agent away: the mixed message is retried, the DLQ stays empty; agent back: forwarded, then dead-lettered."""
    stack = quiet_stack()
    now = time.time()
    valid = put_object(aws, stack.bucket, "jobs/valid.json", json.dumps(job_document(1, now=now)).encode())
    invalid = put_object(aws, stack.bucket, "jobs/invalid.json", b'{"job_success": "perhaps"}')
    (source,) = send_bodies(aws, stack.queue_url, [notification(s3_record(valid), s3_record(invalid))])
    agent = unix_agent(max_datagrams=1)

    first = run_cli("drain", *FLAGS, env=env_for(agent.url, SQS_QUEUE_URL=stack.queue_url))

    assert agent.gone.is_set() and agent.datagrams == [b""], "the agent saw more than the probe"
    assert first.returncode == 1, first.stderr[-3000:]
    counts = summary_counts(first)
    # Under load the backoff may end within the run and the message come back: retried each time.
    assert counts["retried"] == counts["received"] >= 1, counts
    assert (counts["forwarded"], counts["rejected"], counts["dead_lettered"]) == (0, 0, 0), counts
    assert aws.drain_raw(stack.dead_letter_queue_url) == [], "dead-lettered while its valid job waited"
    assert sum(aws.queue_depth(stack.queue_url)) == 1

    deadline = time.monotonic() + BACKOFF_SECONDS + 10
    while aws.queue_depth(stack.queue_url) != (1, 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    with unix_receiver_at(agent.path) as receiver:
        second = run_cli("drain", *FLAGS, env=env_for(receiver.url, SQS_QUEUE_URL=stack.queue_url))
        assert second.returncode == 1, second.stderr[-3000:]
        counts = summary_counts(second)
        assert (counts["rejected"], counts["dead_lettered"], counts["retried"]) == (1, 1, 0), counts
        assert wait_for_results(receiver, {1})
        assert job_results(receiver) == [1]
    letters = aws.drain_raw(stack.dead_letter_queue_url)
    assert len(letters) == 1
    attributes = {name: value["StringValue"] for name, value in letters[0]["MessageAttributes"].items()}
    assert (attributes["source_message_id"], attributes["reason"]) == (source, "invalid-field")
    assert aws.queue_depth(stack.queue_url) == (0, 0)
    report_figure(
        "mixed message, agent down: retried (not dead-lettered); agent back: valid job sent, then DLQ"
    )


def test_lambda_keeps_a_mixed_message_while_the_agent_is_away(
    aws: Aws,
    quiet_stack: Callable[..., Stack],
    unix_agent: Callable[..., UnixAgent],
) -> None:
    """The Lambda consumer with the agent gone: the mixed message is a batch item failure, not dead-lettered."""
    stack = quiet_stack()
    now = time.time()
    valid = put_object(aws, stack.bucket, "jobs/valid.json", json.dumps(job_document(2, now=now)).encode())
    invalid = put_object(aws, stack.bucket, "jobs/invalid.json", b'{"job_success": "perhaps"}')
    # Gone before the invocation: a consumer built on a DogStatsD client has no probe to fail first.
    agent = unix_agent(max_datagrams=0)
    assert agent.gone.wait(5)
    settings = Settings(queue_url=stack.queue_url, statsd=StatsdTarget(socket_path=str(agent.path)))
    event = {
        "Records": [
            {
                "messageId": "mixed",
                "receiptHandle": "rh-0",
                "body": notification(s3_record(valid), s3_record(invalid)),
            },
            {
                "messageId": "test-event",
                "receiptHandle": "rh-1",
                "body": json.dumps({"Event": "s3:TestEvent"}),
            },
        ]
    }
    with ThreadPoolExecutor(4) as executor:
        consumer = build_consumer(
            settings, sqs=aws.sqs, s3=aws.s3, statsd=statsd_client(settings), executor=executor
        )
        response = consumer(event, RemainingTime())

    assert agent.datagrams == []
    assert response == {"batchItemFailures": [{"itemIdentifier": "mixed"}]}
    assert aws.drain_raw(stack.dead_letter_queue_url) == []


class RemainingTime:
    """A Lambda context with a minute left."""

    def get_remaining_time_in_millis(self) -> int:
        """Always a minute."""
        return 60_000
