"""The forwarder under exactly the Terraform policy, then under that policy less each permission.

With the whole policy, ``drain`` (a poison message included, so the DLQ path runs), ``check``, a drain
whose agent is gone (so the retry backoff runs) and the Lambda consumer all do their work. Without any
one permission, the run that needs it fails with one line naming it, and every message is still on
the queue (or, for a poison message already copied, also in the DLQ): nothing is lost.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from app.lambda_handler import build_consumer
from app.local.dogstatsd import DogStatsdReceiver
from app.settings import Settings, StatsdTarget
from app.sinks.dogstatsd import statsd_client
from tests.conftest import CliResult
from tests.faults.conftest import UnixAgent
from tests.iam.conftest import (
    Credentials,
    IamEmulator,
    Permission,
    Seeded,
    module_permissions,
    policy_document,
)

# KMS is not modelled by the emulator on the caller's behalf (moto neither encrypts queues nor
# asks KMS when S3 serves an SSE-KMS object), so these two permissions cannot be taken away
# here; tests/infra/test_terraform.py pins their key and kms:ViaService conditions instead.
NOT_EMULATED: dict[Permission, str] = {
    ("DecryptJobData", "kms:Decrypt"): "S3 and SQS do not call KMS in the emulator",
    ("EncryptDeadLetters", "kms:GenerateDataKey"): "SQS does not call KMS in the emulator",
}
# Which run needs a permission, when it is not the plain drain.
NEEDED_BY: dict[Permission, str] = {
    ("ConsumeJobQueue", "sqs:ChangeMessageVisibility"): "retry",
    ("DeadLetterRejectedMessages", "sqs:GetQueueAttributes"): "check",
}
EXERCISED = [permission for permission in module_permissions() if permission not in NOT_EMULATED]


def permission_id(permission: Permission) -> str:
    """``Sid-sqs:Action`` as a test id."""
    return f"{permission[0]}-{permission[1]}"


@pytest.fixture
def agent_gone_after_probe() -> Iterator[UnixAgent]:
    """A DogStatsD agent on a Unix socket that takes the start-up probe and then vanishes."""
    folder = Path(tempfile.mkdtemp(prefix="iam-", dir="/tmp"))
    agent = UnixAgent(folder / "dsd.socket", max_datagrams=1).start()
    try:
        yield agent
    finally:
        agent.stop()
        folder.rmdir()


def run(
    iam_emulator: IamEmulator, credentials: Credentials, seeded: Seeded, kind: str, agent_url: str
) -> CliResult:
    """Run ``drain`` or ``check`` on ``seeded``'s queue as ``credentials``."""
    command = "check" if kind == "check" else "drain"
    return iam_emulator.run_cli(
        credentials,
        command,
        "--queue-url",
        seeded.stack.queue_url,
        env={"DD_DOGSTATSD_URL": agent_url, "LOG_FORMAT": "text"},
    )


def last_line(text: str) -> str:
    """The last non-empty line of ``text``."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


class LambdaContext:
    """A context with plenty of time left."""

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left."""
        return 60_000


def lambda_event(iam_emulator: IamEmulator, queue_url: str) -> dict[str, Any]:
    """Receive the queue's messages (as the event source mapping would) into a Lambda SQS event."""
    received = iam_emulator.sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )["Messages"]
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "eventSource": "aws:sqs",
            }
            for m in received
        ]
    }


def invoke_consumer(
    iam_emulator: IamEmulator, credentials: Credentials, seeded: Seeded, receiver: DogStatsdReceiver
) -> dict[str, Any]:
    """Wire the Lambda consumer with ``credentials`` and hand it the queue's messages."""
    sqs, s3 = iam_emulator.clients(credentials)
    settings = Settings(queue_url=seeded.stack.queue_url, statsd=StatsdTarget(port=receiver.port))
    event = lambda_event(iam_emulator, seeded.stack.queue_url)
    assert len(event["Records"]) == 3
    with ThreadPoolExecutor(4) as executor:
        consumer = build_consumer(settings, sqs=sqs, s3=s3, statsd=statsd_client(settings), executor=executor)
        return dict(consumer(event, LambdaContext()))


# --- the whole policy ------------------------------------------------------------------------------


def test_drain_under_the_module_policy_forwards_and_dead_letters(
    iam_emulator: IamEmulator, seeded: Callable[[], Seeded], receiver: DogStatsdReceiver
) -> None:
    """Exactly the module's policy suffices for a drain that reads both ways and dead-letters a poison."""
    stack = seeded()
    user = iam_emulator.create_user(policy_document(stack.target))

    result = run(iam_emulator, user, stack, "drain", f"udp://127.0.0.1:{receiver.port}")

    assert result.returncode == 1, result.stderr  # the poison message was rejected
    summary = result.summary
    assert (summary["forwarded"], summary["rejected"], summary["dead_lettered"]) == (2, 1, 1)
    assert summary["delete_failed"] == 0
    assert iam_emulator.messages(stack.stack.queue_url) == 0
    assert iam_emulator.messages(stack.stack.dead_letter_queue_url) == 1
    assert receiver.wait_for(
        lambda r: sorted(m.value for m in r.metrics("cloud_job.job_result")) == [1.0, 2.0]
    )


def test_retry_backoff_under_the_module_policy(
    iam_emulator: IamEmulator, seeded: Callable[[], Seeded], agent_gone_after_probe: UnixAgent
) -> None:
    """With the agent gone, every message is backed off (ChangeMessageVisibility) and kept."""
    stack = seeded()
    user = iam_emulator.create_user(policy_document(stack.target))

    result = run(iam_emulator, user, stack, "retry", agent_gone_after_probe.url)

    assert result.returncode == 1, result.stderr
    assert result.summary["retried"] == 2  # the poison is rejected: its metrics never mattered
    assert iam_emulator.messages(stack.stack.queue_url) == 2


def test_check_under_the_module_policy_passes(
    iam_emulator: IamEmulator, seeded: Callable[[], Seeded], receiver: DogStatsdReceiver
) -> None:
    """``check`` reads the queue and the DLQ with exactly the module's policy."""
    stack = seeded()
    user = iam_emulator.create_user(policy_document(stack.target))

    result = run(iam_emulator, user, stack, "check", f"udp://127.0.0.1:{receiver.port}")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok    dead-letter queue" in result.stdout


def test_lambda_consumer_under_the_module_policy(
    iam_emulator: IamEmulator, seeded: Callable[[], Seeded], receiver: DogStatsdReceiver
) -> None:
    """The Lambda consumer forwards both jobs and dead-letters the poison with the module's policy."""
    stack = seeded()
    user = iam_emulator.create_user(policy_document(stack.target))

    response = invoke_consumer(iam_emulator, user, stack, receiver)

    assert response == {"batchItemFailures": []}
    assert iam_emulator.messages(stack.stack.dead_letter_queue_url) == 1


# --- the policy less one permission ----------------------------------------------------------------


def test_every_permission_is_exercised_or_explained() -> None:
    """Each (statement, action) of the module is taken away below, or its absence is explained."""
    permissions = set(module_permissions())
    assert set(NOT_EMULATED) <= permissions, "an explained permission left the module"
    assert set(NEEDED_BY) <= permissions, "a scenario names a permission the module no longer grants"
    assert permissions == set(EXERCISED) | set(NOT_EMULATED)


@pytest.mark.parametrize("without", EXERCISED, ids=permission_id)
def test_each_permission_is_needed_and_its_absence_loses_nothing(
    iam_emulator: IamEmulator,
    seeded: Callable[[], Seeded],
    receiver: DogStatsdReceiver,
    agent_gone_after_probe: UnixAgent,
    without: Permission,
) -> None:
    """Without the permission, the run that needs it fails naming it, and no message is lost."""
    stack = seeded()
    user = iam_emulator.create_user(policy_document(stack.target, without=without))
    kind = NEEDED_BY.get(without, "drain")
    agent = agent_gone_after_probe.url if kind == "retry" else f"udp://127.0.0.1:{receiver.port}"
    permission = without[1]

    result = run(iam_emulator, user, stack, kind, agent)

    queue, dlq = stack.stack.queue_url, stack.stack.dead_letter_queue_url
    if kind == "check":
        assert result.returncode == 1
        failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
        assert len(failed) == 1 and "dead-letter queue" in failed[0] and permission in failed[0]
    else:
        assert result.returncode == 2, result.stdout + result.stderr
        error = last_line(result.stderr)
        assert error.startswith("cloud-job-metrics: error: access denied:"), result.stderr
        assert f"needs the IAM permission {permission} " in error
        assert result.stdout == ""
    # Nothing lost: the valid jobs are still on the queue, and the poison is on the queue or, when it
    # was dead-lettered before the refusal, in the DLQ (a copy on both sides for a refused delete).
    if kind == "retry":
        assert (iam_emulator.messages(queue), iam_emulator.messages(dlq)) == (2, 1)
    elif permission == "sqs:DeleteMessage":
        assert (iam_emulator.messages(queue), iam_emulator.messages(dlq)) == (3, 1)
    else:
        assert (iam_emulator.messages(queue), iam_emulator.messages(dlq)) == (3, 0)


def test_lambda_keeps_a_poison_message_whose_dead_lettering_was_refused(
    iam_emulator: IamEmulator, seeded: Callable[[], Seeded], receiver: DogStatsdReceiver
) -> None:
    """Without sqs:SendMessage the poison stays in batchItemFailures, so Lambda does not delete it."""
    stack = seeded()
    user = iam_emulator.create_user(
        policy_document(stack.target, without=("DeadLetterRejectedMessages", "sqs:SendMessage"))
    )

    response = invoke_consumer(iam_emulator, user, stack, receiver)

    assert len(response["batchItemFailures"]) == 1
    assert iam_emulator.messages(stack.stack.dead_letter_queue_url) == 0
    assert iam_emulator.messages(stack.stack.queue_url) == 3
