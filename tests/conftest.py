"""Shared fixtures: a real AWS emulator over HTTP, real DogStatsD receivers, and factories.

The emulator is LocalStack when ``LOCALSTACK_HOST`` is set (the compose path, reached through
``localstack-client``), else moto's server started here on a free loopback port.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.aws.clients import aws_clients
from app.local.dogstatsd import DogStatsdReceiver
from app.local.emulator import emulator_session, moto_server
from app.local.provision import Stack, provision
from app.settings import Settings

EVENTS = Path(__file__).parent / "events"
REPO = Path(__file__).resolve().parent.parent


def load_event(name: str) -> dict[str, Any]:
    """Load a real-shaped event from ``tests/events/<name>.json``."""
    return json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    """The emulator's endpoint URL, for the whole test session."""
    if os.environ.get("LOCALSTACK_HOST"):
        from localstack_client.config import get_service_endpoint

        endpoint = get_service_endpoint("sqs")
        assert endpoint, "LOCALSTACK_HOST is set but names no endpoint"
        yield endpoint
        return
    with moto_server() as endpoint:
        yield endpoint


@dataclass
class Aws:
    """Clients bound to the emulator.

    ``async_notifications``: the emulator delivers S3 notifications after PutObject returns
    (LocalStack, and AWS itself), rather than before (moto).
    """

    endpoint: str
    sqs: Any
    s3: Any
    async_notifications: bool = False

    def settle(self, queue_url: str, *, quiet_seconds: float = 0.5, timeout_seconds: float = 15.0) -> None:
        """Wait until notifications in flight have landed: the queue depth stops changing."""
        if not self.async_notifications:
            return
        deadline = time.monotonic() + timeout_seconds
        last = self.queue_depth(queue_url)
        while time.monotonic() < deadline:
            time.sleep(quiet_seconds)
            current = self.queue_depth(queue_url)
            if current == last:
                return
            last = current

    def queue_depth(self, queue_url: str) -> tuple[int, int]:
        """(visible, in flight) messages on ``queue_url``."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )

    def drain_raw(self, queue_url: str, *, first_wait_seconds: int = 0) -> list[dict[str, Any]]:
        """Receive (and delete) everything on ``queue_url``, attributes included."""
        found: list[dict[str, Any]] = []
        while True:
            response = self.sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0 if found else first_wait_seconds,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            )
            messages = response.get("Messages", [])
            if not messages:
                return found
            found.extend(messages)
            self.sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )


@pytest.fixture(scope="session")
def aws(aws_endpoint: str) -> Aws:
    """SQS and S3 clients on the emulator."""
    sqs, s3 = aws_clients(Settings(endpoint_url=aws_endpoint), session=emulator_session())
    return Aws(aws_endpoint, sqs, s3, async_notifications=bool(os.environ.get("LOCALSTACK_HOST")))


@pytest.fixture
def make_stack(aws: Aws) -> Callable[..., Stack]:
    """Factory: a fresh bucket, queue and DLQ (unique names) with the S3 notification wired.

    The set-up TestEvent is removed unless ``keep_test_event``; ``notification=False`` leaves the
    notification out, for tests that send notifications themselves.
    """

    def make(*, keep_test_event: bool = False, **options: Any) -> Stack:
        name = f"t-{uuid.uuid4().hex[:12]}"
        options.setdefault("visibility_timeout_seconds", 30)
        created = provision(aws.sqs, aws.s3, bucket=name, queue=name, **options)
        if options.get("notification", True) and not keep_test_event:
            # S3 sends an s3:TestEvent when the notification is configured; most tests start without it.
            aws.drain_raw(created.queue_url, first_wait_seconds=1 if aws.async_notifications else 0)
        return created

    return make


@pytest.fixture
def stack(make_stack: Callable[..., Stack]) -> Stack:
    """A fresh stack whose set-up TestEvent has already been removed from the queue."""
    return make_stack()


@pytest.fixture
def quiet_stack(make_stack: Callable[..., Stack]) -> Stack:
    """A fresh stack without the bucket notification: the test sends the notifications itself."""
    return make_stack(notification=False)


@pytest.fixture
def receiver() -> Iterator[DogStatsdReceiver]:
    """A UDP DogStatsD receiver on a free loopback port."""
    with DogStatsdReceiver() as started:
        yield started


@pytest.fixture
def unix_receiver() -> Iterator[DogStatsdReceiver]:
    """A Unix-datagram DogStatsD receiver (short path: socket paths are limited to ~100 bytes)."""
    folder = tempfile.mkdtemp(prefix="dsd-", dir="/tmp")
    try:
        with DogStatsdReceiver(socket_path=os.path.join(folder, "dsd.socket")) as started:
            yield started
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class CliResult:
    """A finished ``cloud-job-metrics`` process."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict[str, Any]:
        """The JSON summary on the last line of stdout."""
        lines = self.stdout.strip().splitlines()
        assert lines, f"no stdout; stderr was:\n{self.stderr}"
        return json.loads(lines[-1])


def cli_env(aws: Aws, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a CLI subprocess talking to the emulator."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "DD_", "STATSD_", "SQS_"))
    }
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=aws.endpoint,
        PYTHONPATH=str(REPO),
    )
    env.update(extra or {})
    return env


def run_process(command: Sequence[str], *, env: Mapping[str, str], timeout: float) -> CliResult:
    """Run ``command`` in the repository with exactly ``env`` and wait for it."""
    completed = subprocess.run(
        list(command),
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def run_command(
    aws: Aws, command: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 120
) -> CliResult:
    """Run ``command`` in the repository against the emulator and wait for it."""
    return run_process(command, env=cli_env(aws, env), timeout=timeout)


@pytest.fixture
def run_cli(aws: Aws) -> Callable[..., CliResult]:
    """Factory: run ``python -m app ARGS`` against the emulator and wait for it."""

    def run(*args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> CliResult:
        return run_command(aws, [sys.executable, "-m", "app", *args], env=env, timeout=timeout)

    return run


@pytest.fixture
def put_job(aws: Aws) -> Callable[..., dict[str, Any]]:
    """Factory: upload a job-metadata object (dict → JSON, or raw bytes); return PutObject's answer."""

    def put(bucket: str, key: str, document: Mapping[str, Any] | bytes) -> dict[str, Any]:
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        response: dict[str, Any] = aws.s3.put_object(Bucket=bucket, Key=key, Body=body)
        return response

    return put
