"""End to end through the console script: hostile times, bundles and line separators.

- a job's time outside 1970..2100 (the file's ``timestamp``, ISO or numeric, or the notification's
  ``eventTime``) is dead-lettered at once as ``invalid-field``, on its first receive;
- a notification naming more records than allowed is dead-lettered unread (``too-many-records``),
  and one naming the same object many times reads it once and counts its job once;
- a JSON Lines file whose strings hold U+2028 or U+0085 is forwarded whole;
- 32 tags of four-byte letters, just under the 2,000-character tag limit, fit the agent's
  8,192-byte buffer: the tags past the byte budget are left out and the event says how many.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from app.local.dogstatsd import DogStatsdReceiver
from app.local.notifications import s3_event_record, s3_notification
from app.local.provision import Stack
from tests.conftest import Aws, CliResult

Cli = Callable[..., CliResult]


def put(aws: Aws, stack: Stack, key: str, body: bytes | dict[str, Any]) -> None:
    """Write one object."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    aws.s3.put_object(Bucket=stack.bucket, Key=key, Body=data)


def send(aws: Aws, stack: Stack, *records: dict[str, Any]) -> str:
    """Send one notification holding ``records``; return its message id."""
    response = aws.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=s3_notification(*records))
    return str(response["MessageId"])


def dead_letters(aws: Aws, stack: Stack) -> dict[str, dict[str, str]]:
    """The DLQ's messages: source message id to their attributes."""
    found = {}
    for message in aws.drain_raw(stack.dead_letter_queue_url):
        attributes = {name: value["StringValue"] for name, value in message["MessageAttributes"].items()}
        found[attributes["source_message_id"]] = attributes
    return found


def drain(run_cli: Cli, stack: Stack, receiver: DogStatsdReceiver, *args: str) -> CliResult:
    """One drain of ``stack`` to ``receiver``."""
    return run_cli("drain", *args, env={"SQS_QUEUE_URL": stack.queue_url, "DD_DOGSTATSD_URL": receiver.url})


def test_times_out_of_range_are_dead_lettered_at_once_as_invalid_fields(
    aws: Aws, quiet_stack: Stack, run_cli: Cli, receiver: DogStatsdReceiver
) -> None:
    """Year 0 after its offset, year 9999, epoch -1 and a far eventTime: each dead-lettered on its first receive."""
    stack = quiet_stack
    now = time.time()
    cases: dict[str, dict[str, Any]] = {
        "year-0-after-offset": {"job_success": True, "timestamp": "0001-01-01T00:00:00+14:00"},
        "year-9999": {"job_success": True, "timestamp": "9999-12-31T23:59:59Z"},
        "negative-epoch": {"job_success": True, "timestamp": -1},
        "milliseconds": {"job_success": True, "timestamp": int(now * 1000)},
    }
    ids = {}
    for name, document in cases.items():
        put(aws, stack, f"jobs/{name}.json", document)
        ids[send(aws, stack, s3_event_record(stack.bucket, f"jobs/{name}.json"))] = name
    put(aws, stack, "jobs/fine.json", {"job_success": True, "job_result": 5, "timestamp": now})
    far = s3_event_record(stack.bucket, "jobs/fine.json")
    far["eventTime"] = "0001-01-01T00:00:00+14:00"
    ids[send(aws, stack, far)] = "event-time-year-0"
    send(aws, stack, s3_event_record(stack.bucket, "jobs/fine.json"))

    result = drain(run_cli, stack, receiver)

    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 1
    summary = result.summary
    assert (summary["rejected"], summary["dead_lettered"], summary["retried"]) == (5, 5, 0)
    assert summary["forwarded"] == 1
    letters = dead_letters(aws, stack)
    assert {ids[source] for source in letters} == set(ids.values())
    assert {attributes["reason"] for attributes in letters.values()} == {"invalid-field"}
    assert {attributes["receive_count"] for attributes in letters.values()} == {"1"}
    assert all("outside the accepted range" in attributes["detail"] for attributes in letters.values())
    assert aws.queue_depth(stack.queue_url) == (0, 0)
    assert receiver.wait_for(lambda r: [m.value for m in r.metrics("cloud_job.job_result")] == [5.0])


def test_a_notification_over_the_record_cap_is_dead_lettered_unread(
    aws: Aws, quiet_stack: Stack, run_cli: Cli, receiver: DogStatsdReceiver
) -> None:
    """101 records in one notification (cap 100): too-many-records in the DLQ, nothing forwarded."""
    stack = quiet_stack
    put(aws, stack, "jobs/one.json", {"job_success": True, "job_result": 1, "timestamp": time.time()})
    source = send(aws, stack, *[s3_event_record(stack.bucket, f"jobs/{n}.json") for n in range(101)])

    result = drain(run_cli, stack, receiver)

    assert result.returncode == 1
    assert (result.summary["rejected"], result.summary["dead_lettered"]) == (1, 1)
    letters = dead_letters(aws, stack)
    assert letters[source]["reason"] == "too-many-records"
    assert "101 records, over the limit of 100" in letters[source]["detail"]


def test_one_object_named_950_times_is_forwarded_once(
    aws: Aws, quiet_stack: Stack, run_cli: Cli, receiver: DogStatsdReceiver
) -> None:
    """A notification naming one object 950 times (cap raised to 1000): one job forwarded, once."""
    stack = quiet_stack
    put(aws, stack, "jobs/same.json", {"job_success": True, "job_result": 9, "timestamp": time.time()})
    record = s3_event_record(stack.bucket, "jobs/same.json")
    aws.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=json.dumps({"Records": [record] * 950}))

    result = drain(run_cli, stack, receiver, "--max-records-per-message", "1000")

    assert result.returncode == 0, result.stderr[-3000:]
    assert (result.summary["forwarded"], result.summary["jobs"]) == (1, 1)
    assert receiver.wait_for(lambda r: len(r.metrics("cloud_job.job_result")) >= 1)
    time.sleep(0.3)
    assert [m.value for m in receiver.metrics("cloud_job.job_result")] == [9.0]


def test_json_lines_holding_unicode_line_separators_are_forwarded_whole(
    aws: Aws, quiet_stack: Stack, run_cli: Cli, receiver: DogStatsdReceiver
) -> None:
    """A .jsonl file whose job names hold U+2028 and U+0085: both jobs forwarded, none invalid-json."""
    stack = quiet_stack
    now = time.time()
    lines = [
        json.dumps(
            {"job_success": True, "job_name": "a\u2028b", "job_result": 1, "timestamp": now},
            ensure_ascii=False,
        ),
        json.dumps(
            {"job_success": True, "job_name": "c\x85d", "job_result": 2, "timestamp": now}, ensure_ascii=False
        ),
    ]
    put(aws, stack, "jobs/two.jsonl", "\n".join(lines).encode())
    send(aws, stack, s3_event_record(stack.bucket, "jobs/two.jsonl"))

    result = drain(run_cli, stack, receiver)

    assert result.returncode == 0, result.stderr[-3000:]
    assert (result.summary["forwarded"], result.summary["jobs"], result.summary["rejected"]) == (1, 2, 0)
    assert receiver.wait_for(lambda r: len(r.metrics("cloud_job.job_result")) >= 2)
    assert sorted(m.value for m in receiver.metrics("cloud_job.job_result")) == [1.0, 2.0]


def test_wide_tags_are_trimmed_to_fit_the_agents_buffer_and_the_event_says_so(
    aws: Aws, quiet_stack: Stack, run_cli: Cli, receiver: DogStatsdReceiver
) -> None:
    """32 tags and a job name of four-byte letters (9,174 bytes untrimmed): every datagram <= 8,192 bytes."""
    stack = quiet_stack
    wide = "\U00020000" * 58
    keys = [chr(0x20000 + i) * 3 for i in range(32)]
    tags = dict.fromkeys(keys, wide)
    name = "\U00020000" * 200  # the longest job name, also a tag
    document = {
        "job_success": True,
        "job_name": name,
        "job_result": 3,
        "timestamp": time.time(),
        "tags": tags,
    }
    put(aws, stack, "jobs/wide.json", document)
    send(aws, stack, s3_event_record(stack.bucket, "jobs/wide.json"))

    result = drain(run_cli, stack, receiver)

    assert result.returncode == 0, result.stderr[-3000:]
    assert receiver.wait_for(lambda r: len(r.events()) == 1 and len(r.metrics("cloud_job.job_result")) == 1)
    assert receiver.errors == []
    assert 0 < receiver.largest_datagram <= 8192
    (gauge,) = receiver.metrics("cloud_job.job_result")
    kept = [tag for tag in gauge.tags if tag.partition(":")[0] in tags]
    assert 0 < len(kept) < 32
    assert kept == [f"{key}:{wide}" for key in keys[: len(kept)]]
    (event,) = receiver.events()
    assert f"({32 - len(kept)} of the file's tags left out" in event.text
