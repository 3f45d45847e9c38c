"""The forwarder's ECS task role, enforced: the forwarder policy plus the task's own statements.

On Fargate with the default ``SINK=api``, the forwarder reads the Datadog API key from Secrets Manager
itself (``DD_API_KEY_SECRET_ARN``), so the task role (``terraform/containers.tf``) adds
``secretsmanager:GetSecretValue`` on that one secret to the forwarder's policy. A user holding exactly
those statements (read from the Terraform files) drains a queue into the local Datadog intake; without
``GetSecretValue`` the drain stops before receiving anything, naming the secret, and loses nothing.

moto checks Secrets Manager calls against ``*`` rather than the secret's ARN, so here the statement
is granted on ``*``; tests/infra/test_container_stack.py pins its resource to the one secret.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.local.intake import LocalIntake
from tests.iam.conftest import REGION, IamEmulator, Seeded, Target, policy_document
from tests.infra.test_terraform import TERRAFORM_DIR, load_module

KEY = "iam0task0role0key0never0printed0"
# The emulator's account.
ACCOUNT = "123456789012"
# The emulator does not call KMS for Secrets Manager, so the key statement cannot be taken away here;
# tests/infra/test_container_stack.py pins its kms:ViaService and SecretARN conditions instead.
NOT_EMULATED = {"DecryptDatadogApiKey"}


def task_statements(secret_arn: str) -> dict[str, dict[str, Any]]:
    """The task role's own statements (``data.aws_iam_policy_document.container_task``), by sid."""
    document = load_module(TERRAFORM_DIR).data_source("aws_iam_policy_document", "container_task")
    statements: list[dict[str, Any]] = document["statement"]
    replacements = {
        "${var.datadog_api_key_secret_arn}": secret_arn,
        "${local.partition}": "aws",
        "${local.api_key_secret_region}": REGION,
        "${local.api_key_secret_account}": ACCOUNT,
    }

    def concrete(value: str) -> str:
        for reference, replacement in replacements.items():
            value = value.replace(reference, replacement)
        assert "${" not in value, f"unknown Terraform reference in {value!r}"
        return value

    rendered = {}
    for body in statements:
        statement: dict[str, Any] = {
            "Sid": body["sid"],
            "Effect": body["effect"],
            "Action": body["actions"],
            "Resource": [concrete(resource) for resource in body["resources"]],
        }
        for condition in body.get("condition", []):
            statement.setdefault("Condition", {}).setdefault(condition["test"], {})[condition["variable"]] = [
                concrete(value) for value in condition["values"]
            ]
        rendered[body["sid"]] = statement
    return rendered


def task_policy(target: Target, secret_arn: str, *, without_sid: str | None = None) -> dict[str, Any]:
    """The forwarder policy plus the task role's statements (as the emulator scopes them), less one."""
    document = policy_document(target)
    own = [
        {**statement, "Resource": ["*"]} if statement["Resource"] == [secret_arn] else statement
        for sid, statement in task_statements(secret_arn).items()
        if sid != without_sid
    ]
    document["Statement"] = [*document["Statement"], *own]
    return document


@pytest.fixture
def intake() -> Iterator[LocalIntake]:
    """A local Datadog intake accepting ``KEY``."""
    with LocalIntake(api_key=KEY) as started:
        yield started


@pytest.fixture
def secret_arn(iam_emulator: IamEmulator) -> str:
    """A Secrets Manager secret holding ``KEY``, created by the administrator."""
    secrets = iam_emulator.admin.session().client("secretsmanager", endpoint_url=iam_emulator.endpoint)
    created = secrets.create_secret(Name=f"datadog-api-key-{uuid.uuid4().hex[:8]}", SecretString=KEY)
    arn: str = created["ARN"]
    return arn


def drain(iam_emulator: IamEmulator, user: Any, seeded: Seeded, secret_arn: str, intake: LocalIntake) -> Any:
    """``drain`` with the API sink as the Fargate task runs it: the key from the secret."""
    return iam_emulator.run_cli(
        user,
        "drain",
        "--queue-url",
        seeded.stack.queue_url,
        env={
            "SINK": "api",
            "DD_API_KEY_SECRET_ARN": secret_arn,
            "DD_DD_URL": intake.url,
            "LOG_FORMAT": "text",
        },
    )


def test_the_task_role_holds_exactly_the_api_key_statements() -> None:
    """The task role adds GetSecretValue on the secret and kms:Decrypt for it, nothing else."""
    statements = task_statements("arn:aws:secretsmanager:us-east-1:123456789012:secret:k")
    assert {sid: statement["Action"] for sid, statement in statements.items()} == {
        "ReadDatadogApiKey": ["secretsmanager:GetSecretValue"],
        "DecryptDatadogApiKey": ["kms:Decrypt"],
    }
    assert set(statements) - NOT_EMULATED == {"ReadDatadogApiKey"}


def test_an_api_sink_drain_under_the_task_role_forwards_and_dead_letters(
    iam_emulator: IamEmulator,
    seeded: Callable[[], Seeded],
    secret_arn: str,
    intake: LocalIntake,
) -> None:
    """The forwarder policy plus the task's statements suffice to read the key and deliver to the intake."""
    stack = seeded()
    user = iam_emulator.create_user(task_policy(stack.target, secret_arn))

    result = drain(iam_emulator, user, stack, secret_arn, intake)

    assert result.returncode == 1, result.stderr  # the poison message was rejected
    summary = result.summary
    assert (summary["forwarded"], summary["rejected"], summary["dead_lettered"]) == (2, 1, 1)
    assert iam_emulator.messages(stack.stack.queue_url) == 0
    assert intake.datadog_view().runs("cloud_job.runs") == 2
    assert KEY not in result.stdout + result.stderr


def test_without_get_secret_value_the_task_stops_naming_it_and_loses_nothing(
    iam_emulator: IamEmulator,
    seeded: Callable[[], Seeded],
    secret_arn: str,
    intake: LocalIntake,
) -> None:
    """Without GetSecretValue the drain exits 2 naming the secret; every message stays on the queue."""
    stack = seeded()
    user = iam_emulator.create_user(task_policy(stack.target, secret_arn, without_sid="ReadDatadogApiKey"))

    result = drain(iam_emulator, user, stack, secret_arn, intake)

    assert result.returncode == 2, result.stdout + result.stderr
    # AWS names the refused action in its message; the emulator answers a bare 403.
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("cloud-job-metrics: error: cannot read DD_API_KEY_SECRET_ARN"), result.stderr
    assert secret_arn in error
    assert result.stdout == ""
    assert iam_emulator.messages(stack.stack.queue_url) == 3
    assert iam_emulator.messages(stack.stack.dead_letter_queue_url) == 0
    assert intake.datadog_view().runs("cloud_job.runs") == 0
