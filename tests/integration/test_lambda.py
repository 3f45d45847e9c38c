"""The Lambda consumer with real-shaped SQS events, the emulator's S3 and a real DogStatsD receiver."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from app.aws.clients import aws_clients
from app.lambda_handler import BatchFailedError, LambdaConsumer, build_consumer
from app.local.dogstatsd import DogStatsdReceiver
from app.local.emulator import emulator_session
from app.local.intake import LocalIntake
from app.local.provision import Stack
from app.settings import Settings, StatsdTarget, resolve
from app.sinks.dogstatsd import statsd_client
from app.sinks.factory import build_sink
from tests.conftest import Aws, load_event

Put = Callable[..., dict[str, Any]]


@dataclass
class FakeContext:
    """A Lambda context whose clock runs down by ``step_millis`` per call."""

    remaining_millis: int = 60_000
    step_millis: int = 0

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left, shrinking on every call."""
        self.remaining_millis -= self.step_millis
        return self.remaining_millis


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    """The fetch pool a Lambda environment keeps warm."""
    with ThreadPoolExecutor(4) as pool:
        yield pool


@pytest.fixture
def consumer_for(aws: Aws, executor: ThreadPoolExecutor) -> Callable[..., LambdaConsumer]:
    """Factory: a consumer wired to the emulator and a statsd target."""

    def build(stack: Stack | None, target: StatsdTarget, **changes: Any) -> LambdaConsumer:
        settings = Settings(queue_url=stack.queue_url if stack else None, statsd=target, **changes)
        return build_consumer(
            settings, sqs=aws.sqs, s3=aws.s3, statsd=statsd_client(settings), executor=executor
        )

    return build


def lambda_event(stack: Stack, keys: list[str], *, raw_bodies: tuple[str, ...] = ()) -> dict[str, Any]:
    """A Lambda SQS event shaped like ``tests/events/lambda_sqs_event.json``, one record per key."""
    template = load_event("lambda_sqs_event")["Records"][0]
    notification = json.loads(template["body"])["Records"][0]
    bodies = []
    for key in keys:
        record = json.loads(json.dumps(notification))
        record["s3"]["bucket"]["name"] = stack.bucket
        record["s3"]["object"] = {"key": key}
        # A fresh notification: the sample's own eventTime lies outside the window Datadog accepts.
        record["eventTime"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        bodies.append(json.dumps({"Records": [record]}))
    records = []
    for index, body in enumerate([*bodies, *raw_bodies]):
        records.append(
            {**template, "messageId": f"msg-{index}", "receiptHandle": f"rh-{index}", "body": body}
        )
    return {"Records": records}


def test_valid_batch_reports_no_failures_and_sends_metrics(
    stack: Stack, receiver: DogStatsdReceiver, put_job: Put, consumer_for
):
    """Every record forwarded: an empty batchItemFailures and every job's gauges received."""
    keys = [f"jobs/l/{n}.json" for n in range(3)]
    for n, key in enumerate(keys):
        put_job(stack.bucket, key, {"job_success": True, "job_result": n})
    consumer = consumer_for(stack, StatsdTarget(port=receiver.port))
    response = consumer(
        lambda_event(stack, keys, raw_bodies=(json.dumps({"Event": "s3:TestEvent"}),)), FakeContext()
    )
    assert response == {"batchItemFailures": []}
    assert receiver.wait_for(lambda r: len(r.metrics("cloud_job.job_result")) == 3)
    # Distributions are the Lambda path's default: the extension keeps them whole across environments.
    assert receiver.wait_for(lambda r: len(r.metrics("cloud_job.distribution.job_result")) == 3)
    assert len(receiver.metrics("cloud_job.runs")) == 3
    assert sorted(m.value for m in receiver.metrics("cloud_job.job_result")) == [0, 1, 2]


def test_invalid_record_is_dead_lettered_and_not_reported(
    aws: Aws, stack: Stack, receiver: DogStatsdReceiver, put_job: Put, consumer_for
):
    """With a DLQ in the RedrivePolicy, an invalid record is moved there and counted as handled."""
    put_job(stack.bucket, "jobs/ok.json", {"job_success": True, "job_result": 1})
    put_job(stack.bucket, "jobs/bad.json", b"not json")
    consumer = consumer_for(stack, StatsdTarget(port=receiver.port))
    response = consumer(lambda_event(stack, ["jobs/ok.json", "jobs/bad.json"]), FakeContext())
    assert response == {"batchItemFailures": []}
    (dead,) = aws.drain_raw(stack.dead_letter_queue_url)
    assert dead["MessageAttributes"]["reason"]["StringValue"] == "invalid-json"
    assert dead["MessageAttributes"]["source_message_id"]["StringValue"] == "msg-1"


def test_invalid_record_without_dlq_is_reported_for_redrive(
    stack: Stack, receiver: DogStatsdReceiver, put_job: Put, consumer_for
):
    """With no dead-letter queue known, the invalid record is returned so SQS redrives it."""
    put_job(stack.bucket, "jobs/ok.json", {"job_success": True, "job_result": 1})
    consumer = consumer_for(None, StatsdTarget(port=receiver.port))
    response = consumer(lambda_event(stack, ["jobs/ok.json", "jobs/missing.json"]), FakeContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}


def test_agent_down_fails_the_whole_batch_so_lambda_backs_off(stack: Stack, put_job: Put, consumer_for):
    """When the Unix-socket agent is gone, every record failed and the handler raises."""
    put_job(stack.bucket, "jobs/a.json", {"job_success": True, "job_result": 1})
    folder = tempfile.mkdtemp(prefix="dsd-", dir="/tmp")
    try:
        path = os.path.join(folder, "dsd.socket")
        with DogStatsdReceiver(socket_path=path):
            consumer = consumer_for(stack, StatsdTarget(socket_path=path))
        with pytest.raises(BatchFailedError):
            consumer(lambda_event(stack, ["jobs/a.json"]), FakeContext())
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_records_not_started_in_time_are_reported(
    stack: Stack, receiver: DogStatsdReceiver, put_job: Put, consumer_for
):
    """When the remaining time runs short, the unstarted records come back as failures."""
    keys = [f"jobs/t/{n}.json" for n in range(12)]
    for n, key in enumerate(keys):
        put_job(stack.bucket, key, {"job_success": True, "job_result": n})
    consumer = consumer_for(stack, StatsdTarget(port=receiver.port))
    context = FakeContext(remaining_millis=10_000, step_millis=4_000)
    response = consumer(lambda_event(stack, keys), context)
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-10"}, {"itemIdentifier": "msg-11"}]}
    assert receiver.wait_for(lambda r: len(r.metrics("cloud_job.job_result")) == 10)


def test_lambda_with_the_api_sink_acknowledges_after_the_intake_accepted(
    aws: Aws, stack: Stack, put_job: Put, executor: ThreadPoolExecutor
):
    """SINK=api in Lambda: no failures reported once the intake accepted every job's counter value, gauges and values."""
    keys = [f"jobs/api/{n}.json" for n in range(4)]
    for n, key in enumerate(keys):
        put_job(stack.bucket, key, {"job_success": n != 0, "job_result": n, "job_name": "lambda-etl"})
    with LocalIntake(api_key="lambda-test-key") as intake:
        settings = resolve(
            {},
            {
                "SQS_QUEUE_URL": stack.queue_url,
                "SINK": "api",
                "DD_API_KEY": "lambda-test-key",
                "DD_DD_URL": intake.url,
            },
        )
        consumer = build_consumer(
            settings, sqs=aws.sqs, s3=aws.s3, sink=build_sink(settings), executor=executor
        )
        response = consumer(lambda_event(stack, keys), FakeContext())
        assert response == {"batchItemFailures": []}
        assert intake.datadog_view().runs("cloud_job.runs") == 4
        assert sorted(intake.distribution_values("cloud_job.distribution.job_result")) == [0, 1, 2, 3]
        assert len(intake.events()) == 4


def test_lambda_with_the_api_sink_down_reports_every_record(
    aws: Aws, stack: Stack, put_job: Put, executor: ThreadPoolExecutor
):
    """SINK=api in Lambda with the intake unreachable: the batch fails as a whole, so nothing is deleted."""
    keys = ["jobs/api/down.json"]
    put_job(stack.bucket, keys[0], {"job_success": True, "job_result": 1})
    with LocalIntake(api_key="lambda-test-key") as intake:
        url = intake.url
    settings = resolve(
        {},
        {"SQS_QUEUE_URL": stack.queue_url, "SINK": "api", "DD_API_KEY": "lambda-test-key", "DD_DD_URL": url},
    )
    consumer = build_consumer(settings, sqs=aws.sqs, s3=aws.s3, sink=build_sink(settings), executor=executor)
    with pytest.raises(BatchFailedError):
        consumer(lambda_event(stack, keys), FakeContext())


def test_chunks_of_one_invocation_are_handled_concurrently(
    aws_endpoint: str, stack: Stack, receiver: DogStatsdReceiver, put_job: Put
):
    """Four chunks whose S3 reads take 0.5 s each (a slow network) finish in far less than the 2 s one after another would take."""
    keys = [f"jobs/c/{n}.json" for n in range(40)]
    for n, key in enumerate(keys):
        put_job(stack.bucket, key, {"job_success": True, "job_result": n})
    settings = Settings(queue_url=stack.queue_url, statsd=StatsdTarget(port=receiver.port))
    sqs, s3 = aws_clients(settings.with_changes(endpoint_url=aws_endpoint), session=emulator_session())
    s3.meta.events.register("before-send.s3.GetObject", lambda **_: time.sleep(0.5))
    with ThreadPoolExecutor(40) as fetches:
        consumer = build_consumer(settings, sqs=sqs, s3=s3, statsd=statsd_client(settings), executor=fetches)
        started = time.monotonic()
        response = consumer(lambda_event(stack, keys), FakeContext())
        elapsed = time.monotonic() - started
    assert response == {"batchItemFailures": []}
    assert elapsed < 1.5, elapsed
    assert receiver.wait_for(lambda r: len(r.metrics("cloud_job.job_result")) == 40)
    assert sorted(m.value for m in receiver.metrics("cloud_job.job_result")) == list(range(40))
