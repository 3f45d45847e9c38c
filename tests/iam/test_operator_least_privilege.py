"""The operator's commands under exactly the Terraform operator policy, then less each permission.

With the whole of ``terraform/operator_iam.tf``, ``backfill`` enqueues the bucket's objects,
``dlq`` reports the dead-letter queue without changing it, and ``redrive`` (unfiltered, and by
reason) moves dead letters back. Without any one permission, each run that needs it exits 2 with
one line naming it (and the queue or bucket it was refused on), and both queues still hold every
message: nothing is lost.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import pytest

from tests.conftest import CliResult
from tests.iam.conftest import (
    OPERATOR,
    REDRIVEN_REASON,
    Credentials,
    IamEmulator,
    OperatorSeeded,
    Permission,
    module_permissions,
    policy_document,
)

# The runs, as an operator types them (the queue comes from --queue-url, the DLQ from its
# RedrivePolicy).
RUNS: Mapping[str, Callable[[OperatorSeeded], tuple[str, ...]]] = {
    "backfill": lambda seeded: ("backfill", "--bucket", seeded.stack.bucket),
    "dlq": lambda seeded: ("dlq", "--json"),
    "redrive": lambda seeded: ("redrive",),
    "redrive-reason": lambda seeded: ("redrive", "--reason", REDRIVEN_REASON),
}

DLQ_STATEMENT = "InspectAndRedriveDeadLetters"
MOVE_TASK: Permission = (DLQ_STATEMENT, "sqs:StartMessageMoveTask")

# Which runs call each permission (every other run does not).
NEEDED_BY: Mapping[Permission, tuple[str, ...]] = {
    ("ListJobObjects", "s3:GetBucketVersioning"): ("backfill",),
    ("ListJobObjects", "s3:ListBucketVersions"): ("backfill",),
    ("FeedJobQueue", "sqs:SendMessage"): ("backfill", "redrive"),
    ("FeedJobQueue", "sqs:GetQueueAttributes"): ("dlq", "redrive"),
    (DLQ_STATEMENT, "sqs:ReceiveMessage"): ("dlq", "redrive"),
    (DLQ_STATEMENT, "sqs:ChangeMessageVisibility"): ("dlq", "redrive-reason"),
    (DLQ_STATEMENT, "sqs:GetQueueAttributes"): ("dlq", "redrive"),
    (DLQ_STATEMENT, "sqs:DeleteMessage"): ("redrive",),
}
# moto 5.2.5 cannot run SQS's own move task: it checks StartMessageMoveTask against the resource
# "*" (the request carries ARNs, not the QueueUrl moto derives resources from), where AWS checks it
# against the move's source queue, so the DLQ-scoped grant is refused here; granted on "*" it
# answers 500 (not implemented). Either way `redrive` falls back to moving message by message,
# which needs only permissions the policy grants and the tests below take away one by one; without
# StartMessageMoveTask the run therefore succeeds (on AWS too: the fallback is the design).
FALLS_BACK: Mapping[Permission, str] = {MOVE_TASK: "redrive moves message by message instead"}
# moto does not encrypt queues, so SQS never calls KMS on the caller's behalf here;
# tests/infra/test_terraform.py pins the key and the kms:ViaService condition instead.
NOT_EMULATED: Mapping[Permission, str] = {
    ("UseQueueKey", "kms:Decrypt"): "SQS does not call KMS in the emulator",
    ("UseQueueKey", "kms:GenerateDataKey"): "SQS does not call KMS in the emulator",
}
CASES = [(permission, kind) for permission, kinds in NEEDED_BY.items() for kind in kinds]


def case_id(case: tuple[Permission, str]) -> str:
    """``run-without-Sid-action`` as a test id."""
    (sid, action), kind = case
    return f"{kind}-without-{sid}-{action}"


def run(iam_emulator: IamEmulator, credentials: Credentials, seeded: OperatorSeeded, kind: str) -> CliResult:
    """Run the operator command ``kind`` on ``seeded``'s stack as ``credentials``."""
    return iam_emulator.run_cli(
        credentials,
        *RUNS[kind](seeded),
        "--queue-url",
        seeded.stack.queue_url,
        env={"LOG_FORMAT": "text"},
    )


def operator(
    iam_emulator: IamEmulator, seeded: OperatorSeeded, without: Permission | None = None
) -> Credentials:
    """A user holding the module's operator policy for ``seeded``, optionally less one permission."""
    return iam_emulator.create_user(policy_document(seeded.target, document=OPERATOR, without=without))


def letters(seeded: OperatorSeeded, *reasons: str) -> list[str]:
    """The dead-letter bodies with one of ``reasons`` (all of them without), sorted."""
    return sorted(body for body, reason in seeded.dead_letters.items() if not reasons or reason in reasons)


def last_line(text: str) -> str:
    """The last non-empty line of ``text``."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# --- the whole policy ------------------------------------------------------------------------------


def test_backfill_under_the_operator_policy_enqueues_every_object_with_its_version(
    iam_emulator: IamEmulator, operator_seeded: Callable[[], OperatorSeeded]
) -> None:
    """Exactly the operator policy lists the versioned bucket and enqueues one notification per object."""
    seeded = operator_seeded()

    result = run(iam_emulator, operator(iam_emulator, seeded), seeded, "backfill")

    assert result.returncode == 0, result.stderr
    assert (result.summary["listed"], result.summary["enqueued"], result.summary["failed"]) == (3, 3, 0)
    enqueued = {}
    for body in iam_emulator.bodies(seeded.stack.queue_url):
        (record,) = json.loads(body)["Records"]
        enqueued[record["s3"]["object"]["key"]] = record["s3"]["object"]["versionId"]
    assert enqueued == seeded.versions
    assert iam_emulator.bodies(seeded.stack.dead_letter_queue_url) == letters(seeded)


def test_dlq_under_the_operator_policy_reports_and_changes_nothing(
    iam_emulator: IamEmulator, operator_seeded: Callable[[], OperatorSeeded]
) -> None:
    """Exactly the operator policy finds the DLQ from the RedrivePolicy, counts per reason, releases all."""
    seeded = operator_seeded()

    result = run(iam_emulator, operator(iam_emulator, seeded), seeded, "dlq")

    assert result.returncode == 0, result.stderr
    report = result.summary
    assert report["dead_letter_queue_url"] == seeded.stack.dead_letter_queue_url
    assert {r["reason"]: r["count"] for r in report["reasons"]} == {"object-not-found": 2, "invalid-json": 1}
    assert iam_emulator.bodies(seeded.stack.dead_letter_queue_url) == letters(seeded)
    assert iam_emulator.messages(seeded.stack.queue_url) == 0


def test_redrive_under_the_operator_policy_moves_everything_message_by_message(
    iam_emulator: IamEmulator, operator_seeded: Callable[[], OperatorSeeded]
) -> None:
    """The move task is refused by the emulator, and the fallback moves every letter once with the policy."""
    seeded = operator_seeded()

    result = run(iam_emulator, operator(iam_emulator, seeded), seeded, "redrive")

    assert result.returncode == 0, result.stderr
    assert "redrive.native_unavailable" in result.stderr
    assert (result.summary["native"], result.summary["moved"], result.summary["left"]) == (False, 3, 0)
    assert iam_emulator.bodies(seeded.stack.queue_url) == letters(seeded)
    assert iam_emulator.messages(seeded.stack.dead_letter_queue_url) == 0


def test_redrive_by_reason_under_the_operator_policy_releases_the_rest(
    iam_emulator: IamEmulator, operator_seeded: Callable[[], OperatorSeeded]
) -> None:
    """By reason, the chosen letter moves and the others are made visible again on the DLQ at once."""
    seeded = operator_seeded()

    result = run(iam_emulator, operator(iam_emulator, seeded), seeded, "redrive-reason")

    assert result.returncode == 0, result.stderr
    assert (result.summary["moved"], result.summary["left"]) == (1, 2)
    assert iam_emulator.bodies(seeded.stack.queue_url) == letters(seeded, REDRIVEN_REASON)
    assert iam_emulator.bodies(seeded.stack.dead_letter_queue_url) == letters(seeded, "object-not-found")


# --- the policy less one permission ----------------------------------------------------------------


def test_every_operator_permission_is_exercised_or_explained() -> None:
    """Each (statement, action) of the operator policy is taken away below, or its absence is explained."""
    permissions = set(module_permissions(OPERATOR))
    groups = [set(NEEDED_BY), set(FALLS_BACK), set(NOT_EMULATED)]
    assert all(group <= permissions for group in groups), (
        "a table names a permission the module no longer grants"
    )
    assert permissions == set().union(*groups)
    assert sum(len(group) for group in groups) == len(permissions), "a permission is in two tables"


@pytest.mark.parametrize(("without", "kind"), CASES, ids=[case_id(case) for case in CASES])
def test_each_operator_permission_is_needed_and_its_absence_loses_nothing(
    iam_emulator: IamEmulator,
    operator_seeded: Callable[[], OperatorSeeded],
    without: Permission,
    kind: str,
) -> None:
    """Without the permission, the run exits 2 with one line naming it, and both queues keep every message."""
    seeded = operator_seeded()
    sid, permission = without
    queue, dlq = seeded.stack.queue_url, seeded.stack.dead_letter_queue_url
    refused_on = {"ListJobObjects": f"bucket {seeded.stack.bucket}", "FeedJobQueue": queue}.get(sid, dlq)

    result = run(iam_emulator, operator(iam_emulator, seeded, without), seeded, kind)

    assert result.returncode == 2, result.stdout + result.stderr
    error = last_line(result.stderr)
    assert error.startswith("cloud-job-metrics: error: access denied:"), result.stderr
    assert f" on {refused_on} needs the IAM permission {permission} " in error
    assert result.stdout == ""
    # Nothing lost. Letters the run received are made visible again at once, unless the missing
    # permission is the one that does that (then they are in flight until their timeout).
    if permission == "sqs:ChangeMessageVisibility":
        moved = letters(seeded, REDRIVEN_REASON) if kind == "redrive-reason" else []
        assert iam_emulator.bodies(queue) == moved
        assert iam_emulator.messages(dlq) == len(seeded.dead_letters) - len(moved)
    elif permission == "sqs:DeleteMessage":
        # Sent, then refused the delete: a duplicate on both queues, never a loss.
        assert iam_emulator.bodies(queue) == letters(seeded)
        assert iam_emulator.bodies(dlq) == letters(seeded)
    else:
        assert iam_emulator.messages(queue) == 0
        assert iam_emulator.bodies(dlq) == letters(seeded)


def test_redrive_without_the_move_task_permission_falls_back_and_moves_everything(
    iam_emulator: IamEmulator, operator_seeded: Callable[[], OperatorSeeded]
) -> None:
    """Without sqs:StartMessageMoveTask, redrive logs the missing permission and moves message by message."""
    seeded = operator_seeded()

    result = run(iam_emulator, operator(iam_emulator, seeded, MOVE_TASK), seeded, "redrive")

    assert result.returncode == 0, result.stderr
    assert "missing=sqs:StartMessageMoveTask" in result.stderr
    assert (result.summary["native"], result.summary["moved"]) == (False, 3)
    assert iam_emulator.bodies(seeded.stack.queue_url) == letters(seeded)
    assert iam_emulator.messages(seeded.stack.dead_letter_queue_url) == 0
