"""Misconfiguration and hostile input through the production entry points, end to end.

The console script's own entry point (``app.commands.main:main_exit``) runs as a subprocess; the
Lambda ``handler`` runs with its default consumer built from the environment. Both talk to the
emulator and the local intake. Each test reproduces a finding of issue 17 and shows what happens
now: the key never shows, a wrong site or intake stops the run with nothing deleted, and only
answers about the data dead-letter it.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest

from app import lambda_handler
from app.errors import ConfigurationError
from app.local.intake import DISTRIBUTION_PATH, EVENTS_PATH, SERIES_PATH, LocalIntake
from app.local.provision import Stack
from app.logs import configure_logging
from app.sinks.api.events import MAX_EVENTS_PER_OBJECT
from tests.conftest import Aws, CliResult, cli_env, run_command

Put = Callable[..., dict[str, Any]]
KEY = "7d3f9a1c5e2b8d4f6a0c9e1b3d5f7a2c"
NEW_KEY = "b4e8c2a6f0d9b3e7a1c5f9d2b6e0a4c8"
POST_PATHS = (SERIES_PATH, DISTRIBUTION_PATH, EVENTS_PATH)


@pytest.fixture
def intake() -> Iterator[LocalIntake]:
    """A local Datadog intake accepting ``KEY``."""
    with LocalIntake(api_key=KEY) as started:
        yield started


def console(aws: Aws, *args: str, env: Mapping[str, str], timeout: float = 120) -> CliResult:
    """Run the console script's entry point, ``main_exit``, as its own process."""
    entry_point = "from app.commands.main import main_exit; main_exit()"
    return run_command(aws, [sys.executable, "-c", entry_point, *args], env=env, timeout=timeout)


def api_env(stack: Stack, url: str, **extra: str) -> dict[str, str]:
    """A drain with the API sink pointed at ``url``, one hand-off at a time, text logs."""
    return {
        "SQS_QUEUE_URL": stack.queue_url,
        "SINK": "api",
        "DD_API_KEY": KEY,
        "DD_DD_URL": url,
        "DD_HOSTNAME": "forwarder-test",
        "CONCURRENCY": "1",
        "LOG_FORMAT": "text",
        **extra,
    }


def put_jobs(put_job: Put, stack: Stack, count: int, *, name: str = "nightly-etl") -> None:
    """Upload ``count`` successful jobs finished now."""
    for index in range(count):
        document = {"job_success": True, "job_result": index, "job_name": name, "timestamp": time.time()}
        put_job(stack.bucket, f"jobs/{name}/{index}.json", document)


def assert_key_hidden(*texts: str) -> None:
    """No 8-character stretch of either key appears in ``texts``."""
    joined = "\n".join(texts)
    for key in (KEY, NEW_KEY):
        assert not any(key[i : i + 8] in joined for i in range(len(key) - 7)), joined


def runs_counted(intake: LocalIntake) -> int:
    """Jobs the intake accepted, by the job counter's distribution values."""
    return len(intake.distribution_values("cloud_job.runs"))


def secrets(aws: Aws) -> Any:
    """A Secrets Manager client on the emulator."""
    return boto3.client(
        "secretsmanager",
        endpoint_url=aws.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


# --- the key and where it goes, through the console script ------------------------------------------


@pytest.mark.parametrize("command", ["drain", "check"])
def test_a_key_with_a_line_break_is_one_line_exit_2_and_never_printed(
    aws: Aws, stack: Stack, put_job: Put, intake: LocalIntake, command: str
) -> None:
    """DD_API_KEY pretty-printed over two lines: exit 2, one line naming DD_API_KEY, no traceback, no key."""
    put_jobs(put_job, stack, 2)
    broken = f"{KEY[:16]}\n{KEY[16:]}"
    result = console(aws, command, env=api_env(stack, intake.url, DD_API_KEY=broken))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "DD_API_KEY" in lines[0] and "line break" in lines[0], result.stderr
    assert_key_hidden(result.stdout, result.stderr)
    assert intake.requests() == []
    assert aws.queue_depth(stack.queue_url) == (2, 0)


def test_a_secret_with_a_line_break_is_refused_naming_the_arn(
    aws: Aws, stack: Stack, put_job: Put, intake: LocalIntake
) -> None:
    """DD_API_KEY_SECRET_ARN holding a pretty-printed value: exit 2, the ARN named, the value never."""
    arn = secrets(aws).create_secret(Name=f"dd-{stack.bucket}", SecretString=f"{KEY[:16]}\n{KEY[16:]}\n")[
        "ARN"
    ]
    put_jobs(put_job, stack, 1)
    env = api_env(stack, intake.url, DD_API_KEY_SECRET_ARN=arn)
    del env["DD_API_KEY"]
    result = console(aws, "drain", env=env)
    assert result.returncode == 2, result.stderr
    assert "DD_API_KEY_SECRET_ARN" in result.stderr and "line break" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert_key_hidden(result.stdout, result.stderr)
    assert intake.requests() == []
    assert aws.queue_depth(stack.queue_url) == (1, 0)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DD_SITE", "datadoghq.com@127.0.0.1", "DD_SITE must be a Datadog site"),
        ("DD_DD_URL", "https://user:pw-secret@127.0.0.1:9", "must not hold a user or password"),
        ("DD_DD_URL", "http://intake.example.com", "must use https"),
    ],
)
def test_a_site_or_url_that_would_send_the_key_astray_is_refused(
    aws: Aws, stack: Stack, put_job: Put, variable: str, value: str, expected: str
) -> None:
    """DD_SITE with a user part, DD_DD_URL with userinfo or plain http elsewhere: exit 2 before any request."""
    put_jobs(put_job, stack, 1)
    env = api_env(stack, "", **{variable: value})
    if variable == "DD_SITE":
        del env["DD_DD_URL"]
    result = console(aws, "drain", env=env)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "pw-secret" not in result.stderr
    assert_key_hidden(result.stdout, result.stderr)
    assert aws.queue_depth(stack.queue_url) == (1, 0)


# --- only answers about the data dead-letter it -----------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 405, 410, 418])
def test_an_intake_answering_an_unexpected_status_stops_the_drain_and_deletes_nothing(
    aws: Aws, stack: Stack, put_job: Put, intake: LocalIntake, status: int
) -> None:
    """POSTs answered 301/302/405/410/418 (the key check passing): exit 2, all 4 messages kept, DLQ empty."""
    for path in POST_PATHS:
        intake.inject(status, times=1000, path=path, headers={"Location": f"https://elsewhere.example/{KEY}"})
    put_jobs(put_job, stack, 4)
    result = console(aws, "drain", env=api_env(stack, intake.url))
    assert result.returncode == 2, result.stderr
    assert f"HTTP {status}" in result.stderr and "check DD_SITE" in result.stderr
    visible, in_flight = aws.queue_depth(stack.queue_url)
    assert visible + in_flight == 4
    assert aws.queue_depth(stack.dead_letter_queue_url) == (0, 0)
    assert_key_hidden(result.stdout, result.stderr)


def test_a_400_still_dead_letters_only_the_message_whose_data_is_refused(
    aws: Aws, stack: Stack, put_job: Put, intake: LocalIntake
) -> None:
    """Data the intake refuses (400) goes to the DLQ as payload-rejected; the other jobs are delivered."""
    intake.refuse_when(
        lambda path, doc: "refused" if path == DISTRIBUTION_PATH and "job:poison" in json.dumps(doc) else None
    )
    put_jobs(put_job, stack, 3)
    put_jobs(put_job, stack, 1, name="poison")
    result = console(aws, "drain", env=api_env(stack, intake.url))
    assert result.returncode == 1, result.stderr
    assert result.summary["forwarded"] == 3 and result.summary["rejected"] == 1
    (dead,) = aws.drain_raw(stack.dead_letter_queue_url, first_wait_seconds=1)
    assert dead["MessageAttributes"]["reason"]["StringValue"] == "payload-rejected"
    assert runs_counted(intake) == 3


def test_a_rotated_secret_is_read_again_once_and_the_drain_delivers(
    aws: Aws, stack: Stack, put_job: Put, intake: LocalIntake
) -> None:
    """The key is rotated after start-up: the 403 makes the drain read the secret again and deliver."""
    client = secrets(aws)
    arn = client.create_secret(Name=f"dd-{stack.bucket}", SecretString=KEY)["ARN"]
    put_jobs(put_job, stack, 2)
    # The first POST is held for a second: time for the rotation to happen while it is in flight.
    intake.inject(200, times=1, path=SERIES_PATH, delay_seconds=1.0)

    def rotate() -> None:
        assert intake.wait_for(lambda i: i.arrived >= 1, timeout_seconds=60)
        client.put_secret_value(SecretId=arn, SecretString=NEW_KEY)
        intake.state.api_key = NEW_KEY

    rotation = threading.Thread(target=rotate)
    rotation.start()
    env = api_env(stack, intake.url, DD_API_KEY_SECRET_ARN=arn)
    del env["DD_API_KEY"]
    result = console(aws, "drain", env=env)
    rotation.join()
    assert result.returncode == 0, result.stderr
    assert ("/api/v2/series", 403) in intake.requests(SERIES_PATH)
    assert runs_counted(intake) == 2
    assert "intake.key_rotated" in result.stderr
    assert_key_hidden(result.stdout, result.stderr)
    assert aws.queue_depth(stack.queue_url) == (0, 0)


# --- events bounded per file ------------------------------------------------------------------------


def test_a_file_of_many_jobs_sends_bounded_events_concurrently(
    aws: Aws, stack: Stack, put_job: Put, intake: LocalIntake
) -> None:
    """300 jobs in one file, 60 ms per event request: 100 events (99 + a summary), sent 8 at a time."""
    jobs = [
        {"job_success": index % 10 != 0, "job_result": index, "job_name": "wide", "timestamp": time.time()}
        for index in range(300)
    ]
    put_job(stack.bucket, "jobs/wide/all.json", json.dumps(jobs).encode())
    intake.inject(200, times=1000, path=EVENTS_PATH, delay_seconds=0.06)
    started = time.monotonic()
    result = console(aws, "drain", env=api_env(stack, intake.url))
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    events = intake.events()
    assert len(events) == MAX_EVENTS_PER_OBJECT
    (summary,) = [e for e in events if e["title"].startswith("201 more jobs")]
    assert "20 error" in summary["title"] and "181 success" in summary["title"]
    assert runs_counted(intake) == 300
    # One request after the other, the 100 events alone would take 6 s (all 300: 18 s).
    assert elapsed < 5, elapsed


# --- the terminal -----------------------------------------------------------------------------------


def test_text_logs_and_the_dlq_table_escape_control_characters_of_s3_keys(
    aws: Aws, stack: Stack, intake: LocalIntake
) -> None:
    """A notification naming a key with ANSI escapes: the drain's text log and the dlq table show it escaped."""
    key = "jobs/\x1b[2J\x1b[31mred\u2028line.json"
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "s3": {"bucket": {"name": stack.bucket}, "object": {"key": quote_plus(key), "size": 10}},
    }
    aws.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=json.dumps({"Records": [record]}))
    drained = console(aws, "drain", env=api_env(stack, intake.url))
    assert drained.returncode == 1, drained.stderr
    assert "\\x1b[2J\\x1b[31mred\\u2028line.json" in drained.stderr, drained.stderr
    table = console(aws, "dlq", env={"SQS_QUEUE_URL": stack.queue_url})
    assert table.returncode == 0, table.stderr
    assert "object-not-found" in table.stdout and "\\x1b[31mred" in table.stdout, table.stdout
    for output in (drained.stderr, table.stdout):
        assert "\x1b" not in output and "\u2028" not in output


# --- the Lambda handler with its default consumer ---------------------------------------------------


@dataclass
class Context:
    """A Lambda context with plenty of time left."""

    def get_remaining_time_in_millis(self) -> int:
        """A minute, always."""
        return 60_000


@pytest.fixture
def lambda_env(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Mapping[str, str]], None]]:
    """Set the function's environment; the default consumer is built afresh from it, and logs captured."""

    def apply(env: Mapping[str, str]) -> None:
        for name, value in cli_env(aws, env).items():
            monkeypatch.setenv(name, value)
        lambda_handler._default_consumer.cache_clear()

    yield apply
    lambda_handler._default_consumer.cache_clear()
    gc.unfreeze()


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """The package's text logs, as the Lambda runtime would keep them."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    configure_logging(level="INFO", log_format="text", env={}, stream=buffer)
    yield buffer
    root.handlers[:] = handlers
    root.setLevel(level)


def lambda_event(aws: Aws, stack: Stack, count: int) -> dict[str, Any]:
    """The queue's real messages as a Lambda SQS event (they stay in flight, as under Lambda)."""
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(records) < count and time.monotonic() < deadline:
        answer = aws.sqs.receive_message(
            QueueUrl=stack.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=1
        )
        records.extend(
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "eventSource": "aws:sqs",
            }
            for m in answer.get("Messages", [])
        )
    assert len(records) == count
    return {"Records": records}


def test_lambda_handler_with_a_wrong_intake_url_keeps_the_whole_batch(
    aws: Aws, stack: Stack, put_job: Put, intake: LocalIntake, lambda_env, logs: io.StringIO
) -> None:
    """A DD_DD_URL the intake answers 404 for: the probe fails, the batch fails whole, nothing dead-lettered."""
    put_jobs(put_job, stack, 3)
    lambda_env(api_env(stack, f"{intake.url}/wrong-prefix"))
    with pytest.raises(lambda_handler.BatchFailedError) as caught:
        lambda_handler.handler(lambda_event(aws, stack, 3), Context())
    assert "no such endpoint" in str(caught.value)
    assert intake.accepted() == []
    assert aws.queue_depth(stack.dead_letter_queue_url) == (0, 0)
    assert "lambda.sink_unusable records=3" in logs.getvalue()
    assert_key_hidden(logs.getvalue(), "".join(traceback.format_exception(caught.value)))


@pytest.mark.parametrize("status", [301, 405, 410])
def test_lambda_handler_never_dead_letters_on_an_answer_not_about_the_data(
    aws: Aws, stack: Stack, put_job: Put, intake: LocalIntake, lambda_env, logs: io.StringIO, status: int
) -> None:
    """POSTs answered 301/405/410 in Lambda: every record fails, the DLQ stays empty, the next call probes again."""
    put_jobs(put_job, stack, 4)
    for path in POST_PATHS:
        intake.inject(status, times=1000, path=path)
    lambda_env(api_env(stack, intake.url))
    with pytest.raises(lambda_handler.BatchFailedError):
        lambda_handler.handler(lambda_event(aws, stack, 4), Context())
    assert aws.queue_depth(stack.dead_letter_queue_url) == (0, 0)
    assert f"HTTP {status}" in logs.getvalue()
    validations = len(intake.requests("/api/v1/validate"))
    put_jobs(put_job, stack, 1, name="next")
    with pytest.raises(lambda_handler.BatchFailedError):
        lambda_handler.handler(lambda_event(aws, stack, 1), Context())
    assert len(intake.requests("/api/v1/validate")) == validations + 1
    assert aws.queue_depth(stack.dead_letter_queue_url) == (0, 0)
    assert_key_hidden(logs.getvalue())


def test_lambda_handler_reads_a_rotated_secret_once_and_delivers(
    aws: Aws, stack: Stack, put_job: Put, intake: LocalIntake, lambda_env, logs: io.StringIO
) -> None:
    """Warm environment, key rotated between invocations: the 403 makes it read the secret again and deliver."""
    client = secrets(aws)
    arn = client.create_secret(Name=f"dd-{stack.bucket}", SecretString=KEY)["ARN"]
    env = api_env(stack, intake.url, DD_API_KEY_SECRET_ARN=arn)
    del env["DD_API_KEY"]
    lambda_env(env)
    put_jobs(put_job, stack, 2)
    assert lambda_handler.handler(lambda_event(aws, stack, 2), Context()) == {"batchItemFailures": []}
    client.put_secret_value(SecretId=arn, SecretString=NEW_KEY)
    intake.state.api_key = NEW_KEY
    put_jobs(put_job, stack, 3, name="after-rotation")
    assert lambda_handler.handler(lambda_event(aws, stack, 3), Context()) == {"batchItemFailures": []}
    assert runs_counted(intake) == 5
    assert "intake.key_rotated" in logs.getvalue()
    assert_key_hidden(logs.getvalue())


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DD_API_KEY", f"{KEY[:16]}\n{KEY[16:]}", "DD_API_KEY is not a usable Datadog API key"),
        ("DD_SITE", "datadoghq.com@127.0.0.1", "DD_SITE must be a Datadog site"),
    ],
)
def test_lambda_handler_with_a_broken_key_or_site_fails_without_the_key_in_its_traceback(
    aws: Aws, stack: Stack, lambda_env, variable: str, value: str, expected: str
) -> None:
    """The default consumer refuses to build: a ConfigurationError whose whole traceback holds no key."""
    env = api_env(stack, "", **{variable: value})
    del env["DD_DD_URL"]
    lambda_env(env)
    with pytest.raises(ConfigurationError, match=expected) as caught:
        lambda_handler.handler({"Records": []}, Context())
    assert_key_hidden("".join(traceback.format_exception(caught.value)))
