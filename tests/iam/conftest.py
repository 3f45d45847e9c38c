"""Least privilege, enforced: moto's server with IAM checks on, and a user holding the module's policy.

The emulator runs in a process of its own (moto keeps its authentication switch per process, and the
rest of the suite shares an unauthenticated one). Its first three requests create an administrator
(CreateUser, PutUserPolicy, CreateAccessKey); from then on every request is signed and checked
against the caller's IAM policies, resources included (moto checks SQS calls against the queue's
ARN and S3 reads against ``arn:aws:s3:::bucket/key``).

The forwarder's user gets exactly the statements of ``terraform/iam.tf``, the operator's exactly
those of ``terraform/operator_iam.tf``, read with python-hcl2, so the module and this suite cannot
drift apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from app.aws.clients import aws_clients
from app.local.notifications import s3_event_record, s3_notification
from app.local.provision import Stack, provision
from app.settings import Settings
from tests.conftest import REPO, CliResult, run_process
from tests.infra.test_terraform import TERRAFORM_DIR, load_module, statements_by_sid

REGION = "us-east-1"
# Unauthenticated requests before enforcement: exactly the three that create the administrator.
BOOTSTRAP_REQUESTS = 3
CLI_TIMEOUT_SECONDS = 90
KEY_PREFIX = "jobs/"

# moto checks an SQS batch call under its own name, where AWS checks it under the single-message
# permission (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-api-permissions-reference.html):
# a statement granting the single-message permission also gets the batch name here, so the policy
# means the same on both.
MOTO_ALIASES: Mapping[str, tuple[str, ...]] = {
    "sqs:DeleteMessage": ("sqs:DeleteMessageBatch",),
    "sqs:ChangeMessageVisibility": ("sqs:ChangeMessageVisibilityBatch",),
    "sqs:SendMessage": ("sqs:SendMessageBatch",),
}

# The module's policy documents (``data "aws_iam_policy_document" NAME``).
FORWARDER, OPERATOR = "forwarder", "operator"

# Permission = (statement sid, action): the same action may be granted on two resources.
Permission = tuple[str, str]


def module_statements(document: str = FORWARDER) -> dict[str, dict[str, Any]]:
    """The statements of the module's policy ``document`` (forwarder or operator), by sid."""
    module = load_module(TERRAFORM_DIR)
    return statements_by_sid(module.data_source("aws_iam_policy_document", document))


def module_permissions(document: str = FORWARDER) -> list[Permission]:
    """Every (sid, action) pair the module's policy ``document`` grants."""
    return [(sid, action) for sid, body in module_statements(document).items() for action in body["actions"]]


@dataclass(frozen=True)
class Target:
    """The resources the Terraform references stand for in this emulator."""

    stack: Stack
    dead_letter_queue_arn: str

    def substitute(self, value: str) -> str:
        """Replace the module's references with this stack's ARNs and region."""
        replacements = {
            "${aws_sqs_queue.jobs.arn}": self.stack.queue_arn,
            "${aws_sqs_queue.jobs_dlq.arn}": self.dead_letter_queue_arn,
            "${local.job_objects_arn}": f"arn:aws:s3:::{self.stack.bucket}/{KEY_PREFIX}*",
            "${aws_s3_bucket.job_results.arn}": f"arn:aws:s3:::{self.stack.bucket}",
            "${aws_kms_key.this.arn}": f"arn:aws:kms:{REGION}:123456789012:key/forwarder",
            "${local.region}": REGION,
        }
        for reference, concrete in replacements.items():
            value = value.replace(reference, concrete)
        assert "${" not in value, f"unknown Terraform reference in {value!r}"
        return value


def policy_document(
    target: Target, *, document: str = FORWARDER, without: Permission | None = None
) -> dict[str, Any]:
    """The module's policy ``document`` as IAM JSON for ``target``, optionally less one permission."""
    statements = []
    for sid, body in module_statements(document).items():
        actions = [action for action in body["actions"] if (sid, action) != without]
        actions += [alias for action in actions for alias in MOTO_ALIASES.get(action, ())]
        if not actions:
            continue
        statement: dict[str, Any] = {
            "Sid": sid,
            "Effect": body["effect"],
            "Action": actions,
            "Resource": [target.substitute(resource) for resource in body["resources"]],
        }
        for condition in body.get("condition", []):
            statement.setdefault("Condition", {}).setdefault(condition["test"], {})[condition["variable"]] = [
                target.substitute(value) for value in condition["values"]
            ]
        statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements}


@dataclass(frozen=True)
class Credentials:
    """An access key of an IAM user."""

    access_key_id: str
    secret_access_key: str

    def session(self) -> boto3.Session:
        """A boto3 session signing with this key."""
        return boto3.Session(
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=REGION,
        )


@dataclass
class IamEmulator:
    """The enforcing emulator and an administrator's clients on it."""

    endpoint: str
    admin: Credentials
    sqs: Any
    s3: Any
    iam: Any

    def create_user(self, policy: Mapping[str, Any]) -> Credentials:
        """A fresh IAM user holding exactly ``policy``; its access key."""
        name = f"forwarder-{uuid.uuid4().hex[:8]}"
        self.iam.create_user(UserName=name)
        self.iam.put_user_policy(UserName=name, PolicyName="forwarder", PolicyDocument=json.dumps(policy))
        key = self.iam.create_access_key(UserName=name)["AccessKey"]
        return Credentials(key["AccessKeyId"], key["SecretAccessKey"])

    def clients(self, credentials: Credentials) -> tuple[Any, Any]:
        """SQS and S3 clients signing as ``credentials``."""
        return aws_clients(Settings(endpoint_url=self.endpoint), session=credentials.session())

    def messages(self, queue_url: str) -> int:
        """Messages on ``queue_url``, visible or in flight (what a run must never lose)."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def bodies(self, queue_url: str) -> list[str]:
        """The bodies of the visible messages on ``queue_url``, sorted; they stay on the queue, visible."""
        received: list[dict[str, Any]] = []
        while batch := self.sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30
        ).get("Messages", []):
            received.extend(batch)
        for message in received:
            self.sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        return sorted(message["Body"] for message in received)

    def run_cli(self, credentials: Credentials, *args: str, env: Mapping[str, str]) -> CliResult:
        """Run ``python -m app ARGS`` as ``credentials`` against this emulator."""
        full_env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_", "DD_", "STATSD_", "SQS_", "LOG_"))
        }
        full_env.update(
            AWS_ACCESS_KEY_ID=credentials.access_key_id,
            AWS_SECRET_ACCESS_KEY=credentials.secret_access_key,
            AWS_REGION=REGION,
            AWS_ENDPOINT_URL=self.endpoint,
            PYTHONPATH=str(REPO),
            **env,
        )
        return run_process([sys.executable, "-m", "app", *args], env=full_env, timeout=CLI_TIMEOUT_SECONDS)


@pytest.fixture(scope="session")
def iam_emulator() -> Iterator[IamEmulator]:
    """The moto server in its own process, enforcing IAM after the administrator exists."""
    process = subprocess.Popen(
        [sys.executable, "-m", "app.local.emulator", "--enforce-iam-after", str(BOOTSTRAP_REQUESTS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        endpoint = process.stdout.readline().strip()
        assert endpoint.startswith("http://"), f"the emulator did not start: {endpoint!r}"
        bootstrap = boto3.Session(
            aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap", region_name=REGION
        ).client("iam", endpoint_url=endpoint)
        bootstrap.create_user(UserName="admin")
        bootstrap.put_user_policy(
            UserName="admin",
            PolicyName="admin",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            ),
        )
        key = bootstrap.create_access_key(UserName="admin")["AccessKey"]
        admin = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
        session = admin.session()
        sqs, s3 = aws_clients(Settings(endpoint_url=endpoint), session=session)
        yield IamEmulator(endpoint, admin, sqs, s3, session.client("iam", endpoint_url=endpoint))
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Seeded:
    """A stack with three notifications waiting: two valid jobs (one read by version) and a poison."""

    target: Target
    bodies: tuple[str, ...]

    @property
    def stack(self) -> Stack:
        """The bucket, queue and DLQ."""
        return self.target.stack


def fresh_stack(admin: IamEmulator, prefix: str) -> tuple[Stack, str]:
    """A bucket, queue and DLQ named ``<prefix>-<random>`` without a notification, and the DLQ's ARN."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    stack = provision(admin.sqs, admin.s3, bucket=name, queue=name, notification=False)
    dlq_arn = admin.sqs.get_queue_attributes(
        QueueUrl=stack.dead_letter_queue_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    return stack, dlq_arn


@pytest.fixture
def seeded(iam_emulator: IamEmulator) -> Callable[[], Seeded]:
    """Factory: a fresh stack whose queue holds a versioned read, an eTag-only read and a poison object."""

    def make() -> Seeded:
        admin = iam_emulator
        stack, dlq_arn = fresh_stack(admin, "iam")
        name = stack.bucket
        documents = {
            f"{KEY_PREFIX}versioned.json": b'{"job_success": true, "job_result": 1}',
            f"{KEY_PREFIX}by-etag.json": b'{"job_success": true, "job_result": 2}',
            f"{KEY_PREFIX}poison.json": b"{not json",
        }
        bodies = []
        for key, body in documents.items():
            put = admin.s3.put_object(Bucket=name, Key=key, Body=body)
            # The eTag-only notification makes the forwarder read without a version (s3:GetObject);
            # the other two name their version (s3:GetObjectVersion).
            version = None if "by-etag" in key else put["VersionId"]
            record = s3_event_record(name, key, size=len(body), etag=put["ETag"], version_id=version)
            bodies.append(s3_notification(record))
            admin.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=bodies[-1])
        return Seeded(Target(stack, dlq_arn), tuple(bodies))

    return make


# Reasons of the dead letters an operator stack starts with: two of one, one of another, so that
# `redrive --reason` moves some and releases the rest.
DEAD_LETTER_REASONS = ("object-not-found", "object-not-found", "invalid-json")
REDRIVEN_REASON = "invalid-json"


@dataclass(frozen=True)
class OperatorSeeded:
    """A stack for the operator's commands: objects without notifications, an empty queue, a full DLQ."""

    target: Target
    versions: Mapping[str, str]
    dead_letters: Mapping[str, str]

    @property
    def stack(self) -> Stack:
        """The bucket, queue and DLQ."""
        return self.target.stack


@pytest.fixture
def operator_seeded(iam_emulator: IamEmulator) -> Callable[[], OperatorSeeded]:
    """Factory: a fresh stack whose bucket holds three jobs never notified and whose DLQ holds three letters."""

    def make() -> OperatorSeeded:
        admin = iam_emulator
        stack, dlq_arn = fresh_stack(admin, "op")
        name = stack.bucket
        versions = {}
        for n in (1, 2, 3):
            key = f"{KEY_PREFIX}backfill-{n}.json"
            put = admin.s3.put_object(
                Bucket=name, Key=key, Body=b'{"job_success": true, "job_result": %d}' % n
            )
            versions[key] = put["VersionId"]
        dead_letters = {}
        for n, reason in enumerate(DEAD_LETTER_REASONS):
            key = f"{KEY_PREFIX}dead-{n}.json"
            body = s3_notification(s3_event_record(name, key, size=10, etag=f"etag{n}"))
            admin.sqs.send_message(
                QueueUrl=stack.dead_letter_queue_url,
                MessageBody=body,
                MessageAttributes={
                    "reason": {"DataType": "String", "StringValue": reason},
                    "detail": {"DataType": "String", "StringValue": f"{reason} in {key}"},
                },
            )
            dead_letters[body] = reason
        return OperatorSeeded(Target(stack, dlq_arn), versions, dead_letters)

    return make
