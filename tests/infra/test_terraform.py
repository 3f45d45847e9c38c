"""Static checks of the Terraform module in ``terraform/``.

The wiring is read with python-hcl2 (no Terraform binary, no provider download, no network) and the
security posture is scanned with checkov, which lives in its own virtualenv (``.venv-checkov``) and
runs here as a subprocess.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO_ROOT / "terraform"
TERRAFORM_README = TERRAFORM_DIR / "README.md"
CONSUMER_EXAMPLE_VARS = TERRAFORM_DIR / "examples" / "consumer-lambda.tfvars"
CHECKOV_TIMEOUT_SECONDS = 240

Block = dict[str, Any]

SERIALIZATION = hcl2.SerializationOptions(
    with_comments=False,
    explicit_blocks=False,
    strip_string_quotes=True,
)


@dataclass(frozen=True)
class Module:
    """Every top-level block of the module's ``*.tf`` files, keyed by type and name."""

    resources: dict[str, dict[str, Block]]
    data: dict[str, dict[str, Block]]
    variables: dict[str, Block]
    locals: dict[str, Any]
    outputs: dict[str, Block]

    def resource(self, kind: str, name: str) -> Block:
        """Return the body of ``resource "kind" "name"``, failing the test when it is missing."""
        assert name in self.resources.get(kind, {}), f"resource {kind}.{name} is not defined"
        return self.resources[kind][name]

    def data_source(self, kind: str, name: str) -> Block:
        """Return the body of ``data "kind" "name"``, failing the test when it is missing."""
        assert name in self.data.get(kind, {}), f"data {kind}.{name} is not defined"
        return self.data[kind][name]


def _add_labelled(target: dict[str, dict[str, Block]], entries: list[Block], where: str) -> None:
    for entry in entries:
        for kind, by_name in entry.items():
            for name, body in by_name.items():
                assert name not in target.setdefault(kind, {}), f"{kind}.{name} defined twice ({where})"
                target[kind][name] = body


def _add_named(target: dict[str, Block], entries: list[Block], where: str) -> None:
    for entry in entries:
        for name, body in entry.items():
            assert name not in target, f"{name} defined twice ({where})"
            target[name] = body


def load_module(directory: Path) -> Module:
    """Parse every ``*.tf`` file of ``directory`` into one :class:`Module`."""
    resources: dict[str, dict[str, Block]] = {}
    data: dict[str, dict[str, Block]] = {}
    variables: dict[str, Block] = {}
    local_values: dict[str, Any] = {}
    outputs: dict[str, Block] = {}
    files = sorted(directory.glob("*.tf"))
    assert files, f"no Terraform files in {directory}"
    for path in files:
        with path.open(encoding="utf-8") as handle:
            parsed = hcl2.load(handle, serialization_options=SERIALIZATION)
        _add_labelled(resources, parsed.get("resource", []), path.name)
        _add_labelled(data, parsed.get("data", []), path.name)
        _add_named(variables, parsed.get("variable", []), path.name)
        _add_named(local_values, parsed.get("locals", []), path.name)
        _add_named(outputs, parsed.get("output", []), path.name)
    return Module(resources, data, variables, local_values, outputs)


def only(blocks: list[Block]) -> Block:
    """Return the single nested block hcl2 wraps in a list (``rule {}``, ``queue {}`` ...)."""
    assert len(blocks) == 1, f"expected exactly one block, got {len(blocks)}"
    return blocks[0]


def statements_by_sid(document: Block) -> dict[str, Block]:
    """Index the statements of an ``aws_iam_policy_document`` by their ``sid``."""
    statements: list[Block] = document["statement"]
    indexed = {statement["sid"]: statement for statement in statements}
    assert len(indexed) == len(statements), "every statement needs a distinct sid"
    return indexed


def conditions(statement: Block) -> dict[str, Block]:
    """Index the ``condition`` blocks of a policy statement by their context key."""
    return {condition["variable"]: condition for condition in statement.get("condition", [])}


def compact(expression: str) -> str:
    """Drop all whitespace from an HCL expression so assertions ignore formatting."""
    return re.sub(r"\s+", "", expression)


def checkov_skips() -> list[tuple[str, str, str]]:
    """List every inline ``#checkov:skip=ID:reason`` in the module as (file, id, reason)."""
    found = []
    for path in sorted(TERRAFORM_DIR.glob("*.tf")):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?", text):
            found.append((path.name, match.group(1), (match.group(2) or "").strip()))
    return found


@pytest.fixture(scope="session")
def module() -> Module:
    """The parsed Terraform module."""
    return load_module(TERRAFORM_DIR)


@pytest.fixture(scope="session")
def forwarder_statements(module: Module) -> dict[str, Block]:
    """Statements of the forwarder's IAM policy document, by sid."""
    return statements_by_sid(module.data_source("aws_iam_policy_document", "forwarder"))


@pytest.fixture(scope="session")
def operator_statements(module: Module) -> dict[str, Block]:
    """Statements of the operator's IAM policy document, by sid."""
    return statements_by_sid(module.data_source("aws_iam_policy_document", "operator"))


# --- bucket -----------------------------------------------------------------------------------------


def test_bucket_versioning_is_enabled(module: Module) -> None:
    """The job-results bucket keeps object versions."""
    versioning = module.resource("aws_s3_bucket_versioning", "job_results")
    assert versioning["bucket"] == "${aws_s3_bucket.job_results.id}"
    assert only(versioning["versioning_configuration"])["status"] == "Enabled"


def test_bucket_is_encrypted_with_the_rotating_module_key(module: Module) -> None:
    """Objects are encrypted with SSE-KMS under the module's customer-managed, rotating key."""
    sse = module.resource("aws_s3_bucket_server_side_encryption_configuration", "job_results")
    rule = only(sse["rule"])
    default = only(rule["apply_server_side_encryption_by_default"])
    assert default["sse_algorithm"] == "aws:kms"
    assert default["kms_master_key_id"] == "${aws_kms_key.this.arn}"
    assert rule["bucket_key_enabled"] is True
    assert module.resource("aws_kms_key", "this")["enable_key_rotation"] is True


def test_bucket_blocks_all_public_access(module: Module) -> None:
    """All four public-access-block switches are on and ACLs are disabled."""
    block = module.resource("aws_s3_bucket_public_access_block", "job_results")
    for switch in (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ):
        assert block[switch] is True, switch
    ownership = module.resource("aws_s3_bucket_ownership_controls", "job_results")
    assert only(ownership["rule"])["object_ownership"] == "BucketOwnerEnforced"


def test_bucket_policy_denies_requests_without_tls(module: Module) -> None:
    """The bucket policy denies every request to the bucket and its objects made without TLS."""
    policy = module.resource("aws_s3_bucket_policy", "job_results")
    assert policy["policy"] == "${data.aws_iam_policy_document.job_results_bucket.json}"
    document = module.data_source("aws_iam_policy_document", "job_results_bucket")
    deny = statements_by_sid(document)["DenyInsecureTransport"]
    assert deny["effect"] == "Deny"
    assert deny["actions"] == ["s3:*"]
    assert set(deny["resources"]) == {
        "${aws_s3_bucket.job_results.arn}",
        "${aws_s3_bucket.job_results.arn}/*",
    }
    assert only(deny["principals"]) == {"type": "*", "identifiers": ["*"]}
    secure = conditions(deny)["aws:SecureTransport"]
    assert (secure["test"], secure["values"]) == ("Bool", ["false"])


def test_bucket_lifecycle_expires_noncurrent_versions(module: Module) -> None:
    """Overwritten object versions expire after a configurable number of days."""
    lifecycle = module.resource("aws_s3_bucket_lifecycle_configuration", "job_results")
    rules = {rule["id"]: rule for rule in lifecycle["rule"]}
    noncurrent = rules["expire-noncurrent-versions"]
    assert noncurrent["status"] == "Enabled"
    expiration = only(noncurrent["noncurrent_version_expiration"])
    assert expiration["noncurrent_days"] == "${var.noncurrent_version_expiration_days}"
    assert "${aws_s3_bucket_versioning.job_results}" in lifecycle["depends_on"]


# --- queues -----------------------------------------------------------------------------------------


def test_queues_long_poll_and_use_the_module_key(module: Module) -> None:
    """The job queue long-polls for 20 s and both queues are SSE-KMS encrypted with the module key."""
    jobs = module.resource("aws_sqs_queue", "jobs")
    dlq = module.resource("aws_sqs_queue", "jobs_dlq")
    assert jobs["receive_wait_time_seconds"] == 20
    for queue in (jobs, dlq):
        assert queue["kms_master_key_id"] == "${aws_kms_key.this.arn}"


def test_redrive_policy_targets_the_dlq_with_the_variable_receive_count(module: Module) -> None:
    """The job queue redrives to the DLQ's ARN after var.max_receive_count deliveries."""
    redrive = compact(module.resource("aws_sqs_queue", "jobs")["redrive_policy"])
    assert redrive.startswith("${jsonencode(")
    assert "deadLetterTargetArn=aws_sqs_queue.jobs_dlq.arn" in redrive
    assert "maxReceiveCount=var.max_receive_count" in redrive
    assert "validation" in module.variables["max_receive_count"]


def test_dlq_accepts_redrives_only_from_the_job_queue(module: Module) -> None:
    """The DLQ's redrive-allow policy names the job queue alone."""
    allow = compact(module.resource("aws_sqs_queue_redrive_allow_policy", "jobs_dlq")["redrive_allow_policy"])
    assert 'redrivePermission=\\"byQueue\\"' in allow or 'redrivePermission="byQueue"' in allow
    assert "sourceQueueArns=[aws_sqs_queue.jobs.arn]" in allow


def test_visibility_timeout_covers_six_lambda_timeouts(module: Module) -> None:
    """With the consumer on, the visibility timeout is at least 6x the Lambda timeout plus the window."""
    jobs = module.resource("aws_sqs_queue", "jobs")
    assert jobs["visibility_timeout_seconds"] == "${local.queue_visibility_timeout_seconds}"
    per_lambda = compact(module.locals["lambda_visibility_timeout_seconds"])
    assert "6*var.consumer_timeout_seconds" in per_lambda
    assert "var.consumer_batching_window_seconds" in per_lambda
    chosen = compact(module.locals["queue_visibility_timeout_seconds"])
    expected = (
        "var.enable_consumer_lambda"
        "?max(var.queue_visibility_timeout_seconds,local.lambda_visibility_timeout_seconds)"
        ":var.queue_visibility_timeout_seconds"
    )
    assert expected in chosen
    consumer = module.resource("aws_lambda_function", "consumer")
    assert consumer["timeout"] == "${var.consumer_timeout_seconds}"


def test_queue_policy_admits_only_this_bucket(module: Module) -> None:
    """Only S3, for this bucket in this account, may send to the job queue."""
    policy = module.resource("aws_sqs_queue_policy", "jobs")
    assert policy["queue_url"] == "${aws_sqs_queue.jobs.id}"
    assert policy["policy"] == "${data.aws_iam_policy_document.jobs_queue.json}"
    allow = statements_by_sid(module.data_source("aws_iam_policy_document", "jobs_queue"))[
        "AllowJobResultsBucketNotifications"
    ]
    assert allow["effect"] == "Allow"
    assert allow["actions"] == ["sqs:SendMessage"]
    assert allow["resources"] == ["${aws_sqs_queue.jobs.arn}"]
    assert only(allow["principals"]) == {"type": "Service", "identifiers": ["s3.amazonaws.com"]}
    by_key = conditions(allow)
    assert by_key["aws:SourceArn"]["values"] == ["${aws_s3_bucket.job_results.arn}"]
    assert by_key["aws:SourceArn"]["test"] in {"ArnEquals", "ArnLike"}
    assert by_key["aws:SourceAccount"]["values"] == ["${local.account_id}"]
    assert by_key["aws:SourceAccount"]["test"] == "StringEquals"


def test_queue_policy_denies_requests_without_tls(module: Module) -> None:
    """The job queue's policy denies every SQS action on it made without TLS."""
    deny = statements_by_sid(module.data_source("aws_iam_policy_document", "jobs_queue"))[
        "DenyInsecureTransport"
    ]
    assert_denies_insecure_transport(deny, "${aws_sqs_queue.jobs.arn}")


def test_dlq_policy_denies_requests_without_tls(module: Module) -> None:
    """The DLQ carries a queue policy of its own that denies every SQS action on it made without TLS."""
    policy = module.resource("aws_sqs_queue_policy", "jobs_dlq")
    assert policy["queue_url"] == "${aws_sqs_queue.jobs_dlq.id}"
    assert policy["policy"] == "${data.aws_iam_policy_document.jobs_dlq.json}"
    statements = statements_by_sid(module.data_source("aws_iam_policy_document", "jobs_dlq"))
    assert set(statements) == {"DenyInsecureTransport"}
    assert_denies_insecure_transport(statements["DenyInsecureTransport"], "${aws_sqs_queue.jobs_dlq.arn}")


def assert_denies_insecure_transport(deny: Block, queue_arn: str) -> None:
    """``deny`` refuses every SQS action on ``queue_arn`` to anyone when aws:SecureTransport is false."""
    assert deny["effect"] == "Deny"
    assert deny["actions"] == ["sqs:*"]
    assert deny["resources"] == [queue_arn]
    assert only(deny["principals"]) == {"type": "*", "identifiers": ["*"]}
    secure = conditions(deny)["aws:SecureTransport"]
    assert (secure["test"], secure["values"]) == ("Bool", ["false"])


def test_notification_sends_new_json_objects_to_the_queue(module: Module) -> None:
    """S3 notifies the job queue of created .json objects under the prefix, after the queue policy exists."""
    notification = module.resource("aws_s3_bucket_notification", "job_results")
    assert notification["bucket"] == "${aws_s3_bucket.job_results.id}"
    queue = only(notification["queue"])
    assert queue["queue_arn"] == "${aws_sqs_queue.jobs.arn}"
    assert queue["events"] == ["s3:ObjectCreated:*"]
    assert queue["filter_suffix"] == ".json"
    assert "var.job_results_prefix" in queue["filter_prefix"]
    assert notification["depends_on"] == ["${aws_sqs_queue_policy.jobs}"]


def test_key_policy_lets_this_bucket_publish_to_the_encrypted_queue(module: Module) -> None:
    """The key policy grants S3 GenerateDataKey and Decrypt, for this bucket in this account only."""
    assert module.resource("aws_kms_key", "this")["policy"] == "${data.aws_iam_policy_document.kms.json}"
    statement = statements_by_sid(module.data_source("aws_iam_policy_document", "kms"))[
        "S3NotificationsToEncryptedQueue"
    ]
    assert set(statement["actions"]) == {"kms:GenerateDataKey", "kms:Decrypt"}
    assert only(statement["principals"]) == {"type": "Service", "identifiers": ["s3.amazonaws.com"]}
    by_key = conditions(statement)
    assert by_key["aws:SourceArn"]["values"] == ["${aws_s3_bucket.job_results.arn}"]
    assert by_key["aws:SourceAccount"]["values"] == ["${local.account_id}"]


# --- forwarder IAM policy ---------------------------------------------------------------------------


def test_forwarder_policy_holds_exactly_the_needed_actions(forwarder_statements: dict[str, Block]) -> None:
    """Each forwarder statement grants exactly its listed actions on exactly its resource."""
    expected: dict[str, tuple[set[str], list[str]]] = {
        "ConsumeJobQueue": (
            {
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
            },
            ["${aws_sqs_queue.jobs.arn}"],
        ),
        "DeadLetterRejectedMessages": (
            {"sqs:SendMessage", "sqs:GetQueueAttributes"},
            ["${aws_sqs_queue.jobs_dlq.arn}"],
        ),
        "ReadJobMetadata": ({"s3:GetObject", "s3:GetObjectVersion"}, ["${local.job_objects_arn}"]),
        "DecryptJobData": ({"kms:Decrypt"}, ["${aws_kms_key.this.arn}"]),
        "EncryptDeadLetters": ({"kms:GenerateDataKey"}, ["${aws_kms_key.this.arn}"]),
    }
    assert set(forwarder_statements) == set(expected)
    for sid, (actions, resources) in expected.items():
        statement = forwarder_statements[sid]
        assert statement["effect"] == "Allow", sid
        assert set(statement["actions"]) == actions, sid
        assert len(statement["actions"]) == len(actions), f"{sid} lists an action twice"
        assert statement["resources"] == resources, sid


def test_forwarder_key_use_is_limited_to_s3_and_sqs(forwarder_statements: dict[str, Block]) -> None:
    """The forwarder may use the key only through S3 and SQS, and create data keys only through SQS."""
    decrypt = conditions(forwarder_statements["DecryptJobData"])["kms:ViaService"]
    assert set(decrypt["values"]) == {"s3.${local.region}.amazonaws.com", "sqs.${local.region}.amazonaws.com"}
    encrypt = conditions(forwarder_statements["EncryptDeadLetters"])["kms:ViaService"]
    assert encrypt["values"] == ["sqs.${local.region}.amazonaws.com"]


def test_forwarder_reads_only_objects_under_the_job_prefix(module: Module) -> None:
    """The object ARN pattern the forwarder may read is the bucket ARN plus the job prefix."""
    assert module.locals["job_objects_arn"] == "${aws_s3_bucket.job_results.arn}/${var.job_results_prefix}*"


def test_forwarder_policy_is_a_managed_policy_exported_as_arn_and_json(module: Module) -> None:
    """The forwarder policy exists as a managed policy and is exported by ARN and as JSON."""
    policy = module.resource("aws_iam_policy", "forwarder")
    assert policy["policy"] == "${data.aws_iam_policy_document.forwarder.json}"
    assert module.outputs["forwarder_policy_arn"]["value"] == "${aws_iam_policy.forwarder.arn}"
    assert (
        module.outputs["forwarder_policy_json"]["value"] == "${data.aws_iam_policy_document.forwarder.json}"
    )


# --- operator IAM policy ----------------------------------------------------------------------------


def test_operator_policy_holds_exactly_the_commands_actions(operator_statements: dict[str, Block]) -> None:
    """Each operator statement grants exactly the calls of backfill, dlq and redrive on its resource."""
    expected: dict[str, tuple[set[str], list[str]]] = {
        "ListJobObjects": (
            {"s3:GetBucketVersioning", "s3:ListBucketVersions"},
            ["${aws_s3_bucket.job_results.arn}"],
        ),
        "FeedJobQueue": ({"sqs:SendMessage", "sqs:GetQueueAttributes"}, ["${aws_sqs_queue.jobs.arn}"]),
        "InspectAndRedriveDeadLetters": (
            {
                "sqs:ReceiveMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
                "sqs:DeleteMessage",
                "sqs:StartMessageMoveTask",
            },
            ["${aws_sqs_queue.jobs_dlq.arn}"],
        ),
        "UseQueueKey": ({"kms:Decrypt", "kms:GenerateDataKey"}, ["${aws_kms_key.this.arn}"]),
    }
    assert set(operator_statements) == set(expected)
    for sid, (actions, resources) in expected.items():
        statement = operator_statements[sid]
        assert statement["effect"] == "Allow", sid
        assert set(statement["actions"]) == actions, sid
        assert len(statement["actions"]) == len(actions), f"{sid} lists an action twice"
        assert statement["resources"] == resources, sid


def test_operator_key_use_is_limited_to_sqs(operator_statements: dict[str, Block]) -> None:
    """The operator may use the module key only through SQS (listing the bucket reads no object)."""
    via = conditions(operator_statements["UseQueueKey"])["kms:ViaService"]
    assert (via["test"], via["values"]) == ("StringEquals", ["sqs.${local.region}.amazonaws.com"])


def test_operator_policy_lists_only_the_versioned_bucket(module: Module) -> None:
    """The bucket is always versioned, so backfill lists versions and the policy has no s3:ListBucket."""
    versioning = only(module.resource("aws_s3_bucket_versioning", "job_results")["versioning_configuration"])
    assert versioning["status"] == "Enabled"
    document = module.data_source("aws_iam_policy_document", "operator")
    granted = {action for statement in document["statement"] for action in statement["actions"]}
    assert "s3:ListBucket" not in granted
    assert not any(action.endswith("*") for action in granted), "the operator policy uses a wildcard"


def test_operator_policy_is_separate_and_exported_as_arn_and_json(module: Module) -> None:
    """The operator policy is its own managed policy, exported by ARN and JSON, attached to no role."""
    policy = module.resource("aws_iam_policy", "operator")
    assert policy["policy"] == "${data.aws_iam_policy_document.operator.json}"
    assert module.outputs["operator_policy_arn"]["value"] == "${aws_iam_policy.operator.arn}"
    assert module.outputs["operator_policy_json"]["value"] == "${data.aws_iam_policy_document.operator.json}"
    attachments = module.resources.get("aws_iam_role_policy_attachment", {})
    assert all(body["policy_arn"] != "${aws_iam_policy.operator.arn}" for body in attachments.values())


# --- generator Lambda -------------------------------------------------------------------------------


def test_generator_archive_packages_app_generator(module: Module) -> None:
    """The generator zip is built from app/generator.py, which exists and defines handler(event, context)."""
    archive = module.data_source("archive_file", "generator")
    assert archive["type"] == "zip"
    assert archive["source_file"] == "${path.module}/../app/generator.py"
    source = TERRAFORM_DIR / ".." / "app" / "generator.py"
    assert source.is_file(), f"{source} is missing"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    handlers = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "handler"]
    assert handlers, "app/generator.py defines no top-level handler()"
    assert len(handlers[0].args.args) == 2, "handler must take (event, context)"
    function = module.resource("aws_lambda_function", "generator")
    assert function["handler"] == "generator.handler"
    assert function["filename"] == "${data.archive_file.generator[0].output_path}"
    assert function["source_code_hash"] == "${data.archive_file.generator[0].output_base64sha256}"


def test_generator_gets_the_bucket_and_prefix_it_reads(module: Module) -> None:
    """The generator's environment names the bucket and prefix under the names app/generator.py reads."""
    variables = only(module.resource("aws_lambda_function", "generator")["environment"])["variables"]
    assert variables == {
        "JOB_RESULTS_BUCKET": "${aws_s3_bucket.job_results.id}",
        "JOB_RESULTS_PREFIX": "${var.job_results_prefix}",
    }
    source = (REPO_ROOT / "app" / "generator.py").read_text(encoding="utf-8")
    for name in variables:
        assert f'"{name}"' in source, f"app/generator.py does not read {name}"


def test_generator_runs_every_minute_from_eventbridge(module: Module) -> None:
    """An EventBridge rule invokes the generator on var.generator_schedule_expression (rate(1 minute))."""
    rule = module.resource("aws_cloudwatch_event_rule", "generator")
    assert rule["schedule_expression"] == "${var.generator_schedule_expression}"
    assert module.variables["generator_schedule_expression"]["default"] == "rate(1 minute)"
    target = module.resource("aws_cloudwatch_event_target", "generator")
    assert target["rule"] == "${aws_cloudwatch_event_rule.generator[0].name}"
    assert target["arn"] == "${aws_lambda_function.generator[0].arn}"
    permission = module.resource("aws_lambda_permission", "generator_schedule")
    assert permission["action"] == "lambda:InvokeFunction"
    assert permission["principal"] == "events.amazonaws.com"
    assert permission["source_arn"] == "${aws_cloudwatch_event_rule.generator[0].arn}"


def test_generator_role_may_only_write_job_files_and_its_logs(module: Module) -> None:
    """The generator's own role can put objects under the prefix, encrypt them via S3, and log."""
    assert module.resource("aws_lambda_function", "generator")["role"] == "${aws_iam_role.generator[0].arn}"
    statements = statements_by_sid(module.data_source("aws_iam_policy_document", "generator"))
    granted = {sid: set(statement["actions"]) for sid, statement in statements.items()}
    assert granted == {
        "WriteJobMetadata": {"s3:PutObject"},
        "EncryptJobMetadata": {"kms:GenerateDataKey"},
        "WriteOwnLogs": {"logs:CreateLogStream", "logs:PutLogEvents"},
    }
    assert statements["WriteJobMetadata"]["resources"] == ["${local.job_objects_arn}"]
    assert statements["WriteOwnLogs"]["resources"] == ["${aws_cloudwatch_log_group.generator[0].arn}:*"]


# --- consumer Lambda --------------------------------------------------------------------------------


def test_consumer_lambda_is_optional_and_off_by_default(module: Module) -> None:
    """Every consumer resource hangs on var.enable_consumer_lambda, which defaults to false."""
    assert module.variables["enable_consumer_lambda"]["default"] is False
    consumer_resources = [
        body
        for kind, by_name in module.resources.items()
        for name, body in by_name.items()
        if name.startswith("consumer")
    ]
    assert len(consumer_resources) >= 5
    for body in consumer_resources:
        assert "var.enable_consumer_lambda" in body["count"]
    assert (
        module.outputs["consumer_function_name"]["value"]
        == "${one(aws_lambda_function.consumer[*].function_name)}"
    )


def test_consumer_inputs_are_required_only_when_the_consumer_is_on(module: Module) -> None:
    """The package, extension layer and API-key secret are validated as required with the consumer."""
    for name in ("consumer_package_path", "datadog_extension_layer_arn", "datadog_api_key_secret_arn"):
        variable = module.variables[name]
        assert variable["default"] is None, name
        conditions_text = [compact(validation["condition"]) for validation in variable["validation"]]
        assert f"${{!var.enable_consumer_lambda||var.{name}!=null}}" in conditions_text, name


def test_event_source_mapping_reports_batch_item_failures(module: Module) -> None:
    """The SQS event source mapping reports partial failures and is bounded by variables."""
    mapping = module.resource("aws_lambda_event_source_mapping", "consumer")
    assert mapping["event_source_arn"] == "${aws_sqs_queue.jobs.arn}"
    assert mapping["function_name"] == "${aws_lambda_function.consumer[0].arn}"
    assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
    assert mapping["batch_size"] == "${var.consumer_batch_size}"
    assert mapping["maximum_batching_window_in_seconds"] == "${var.consumer_batching_window_seconds}"
    scaling = only(mapping["scaling_config"])
    assert scaling["maximum_concurrency"] == "${var.consumer_maximum_concurrency}"
    validation = only(module.variables["consumer_maximum_concurrency"]["validation"])
    assert ">= 2" in validation["condition"]


def test_consumer_function_runs_the_forwarder_with_the_datadog_extension(module: Module) -> None:
    """The consumer runs app.lambda_handler.handler with the extension layer and Datadog settings."""
    function = module.resource("aws_lambda_function", "consumer")
    assert function["handler"] == "app.lambda_handler.handler"
    assert function["filename"] == "${var.consumer_package_path}"
    assert function["layers"] == ["${var.datadog_extension_layer_arn}"]
    assert function["runtime"] == "${var.lambda_runtime}"
    environment = compact(only(function["environment"])["variables"])
    for setting in (
        "DD_API_KEY_SECRET_ARN=var.datadog_api_key_secret_arn",
        "DD_SITE=var.datadog_site",
        'DD_DOGSTATSD_PORT="8125"',
        "SQS_QUEUE_URL=aws_sqs_queue.jobs.id",
        "DEAD_LETTER_QUEUE_URL=aws_sqs_queue.jobs_dlq.id",
        "ALLOWED_BUCKETS=aws_s3_bucket.job_results.id",
        "KEY_PREFIX=var.job_results_prefix",
        'KEY_SUFFIX=".json"',
    ):
        assert setting in environment, setting


def test_consumer_handler_and_settings_exist_in_the_app(module: Module) -> None:
    """The consumer's handler is a function of app/lambda_handler.py and the app reads its settings."""
    module_path, _, function_name = module.resource("aws_lambda_function", "consumer")["handler"].rpartition(
        "."
    )
    source = REPO_ROOT / Path(*module_path.split(".")).with_suffix(".py")
    assert source.is_file(), f"{source} is missing"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    assert any(isinstance(node, ast.FunctionDef) and node.name == function_name for node in tree.body)
    settings = (REPO_ROOT / "app" / "settings.py").read_text(encoding="utf-8")
    for name in ("SQS_QUEUE_URL", "DEAD_LETTER_QUEUE_URL", "ALLOWED_BUCKETS", "KEY_PREFIX", "KEY_SUFFIX"):
        assert f'"{name}"' in settings, f"app/settings.py does not read {name}"


def test_consumer_role_gets_the_forwarder_policy_logs_and_the_api_key(module: Module) -> None:
    """The consumer's role carries the forwarder policy, scoped log writing and the API-key secret."""
    attachment = module.resource("aws_iam_role_policy_attachment", "consumer_forwarder")
    assert attachment["role"] == "${aws_iam_role.consumer[0].name}"
    assert attachment["policy_arn"] == "${aws_iam_policy.forwarder.arn}"
    statements = statements_by_sid(module.data_source("aws_iam_policy_document", "consumer"))
    assert set(statements["BasicExecutionLogs"]["actions"]) == {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert statements["BasicExecutionLogs"]["resources"] == ["${aws_cloudwatch_log_group.consumer[0].arn}:*"]
    assert set(statements) == {"BasicExecutionLogs", "ReadDatadogApiKey", "DecryptDatadogApiKey"}
    assert statements["ReadDatadogApiKey"]["actions"] == ["secretsmanager:GetSecretValue"]
    assert statements["ReadDatadogApiKey"]["resources"] == ["${var.datadog_api_key_secret_arn}"]
    mapping = module.resource("aws_lambda_event_source_mapping", "consumer")
    assert "${aws_iam_role_policy_attachment.consumer_forwarder}" in mapping["depends_on"]


def test_consumer_may_decrypt_the_api_key_only_through_secrets_manager_for_that_secret(
    module: Module,
) -> None:
    """kms:Decrypt for a secret under a customer key: via Secrets Manager, for that secret's ARN only."""
    statements = statements_by_sid(module.data_source("aws_iam_policy_document", "consumer"))
    decrypt = statements["DecryptDatadogApiKey"]
    assert decrypt["effect"] == "Allow"
    assert decrypt["actions"] == ["kms:Decrypt"]
    assert [compact(r) for r in decrypt["resources"]] == [
        "arn:${local.partition}:kms:${local.api_key_secret_region}:${local.api_key_secret_account}:key/*"
    ]
    by_key = conditions(decrypt)
    assert set(by_key) == {"kms:ViaService", "kms:EncryptionContext:SecretARN"}
    assert by_key["kms:ViaService"]["test"] == "StringEquals"
    assert by_key["kms:ViaService"]["values"] == [
        "secretsmanager.${local.api_key_secret_region}.amazonaws.com"
    ]
    assert by_key["kms:EncryptionContext:SecretARN"]["test"] == "StringEquals"
    assert by_key["kms:EncryptionContext:SecretARN"]["values"] == ["${var.datadog_api_key_secret_arn}"]
    region = compact(module.locals["api_key_secret_region"])
    account = compact(module.locals["api_key_secret_account"])
    assert region.startswith('${try(split(":",var.datadog_api_key_secret_arn)[3]'), region
    assert account.startswith('${try(split(":",var.datadog_api_key_secret_arn)[4]'), account


# --- module hygiene ---------------------------------------------------------------------------------


def test_functions_use_a_current_python_runtime(module: Module) -> None:
    """Both functions run var.lambda_runtime, which defaults to and only allows python3.12/3.13."""
    runtime = module.variables["lambda_runtime"]
    assert runtime["default"] in {"python3.12", "python3.13"}
    assert "python3.12" in only(runtime["validation"])["condition"]
    for name in ("generator", "consumer"):
        assert module.resource("aws_lambda_function", name)["runtime"] == "${var.lambda_runtime}"


def test_log_groups_have_retention_and_encryption(module: Module) -> None:
    """Each function logs to its own pre-created log group with retention and the module key."""
    for name in ("generator", "consumer"):
        group = module.resource("aws_cloudwatch_log_group", name)
        assert group["retention_in_days"] == "${var.log_retention_days}"
        assert group["kms_key_id"] == "${aws_kms_key.this.arn}"
        function = module.resource("aws_lambda_function", name)
        assert (
            only(function["logging_config"])["log_group"] == f"${{aws_cloudwatch_log_group.{name}[0].name}}"
        )


def test_variables_are_typed_and_described(module: Module) -> None:
    """Every input variable declares a type and a description."""
    for name, variable in module.variables.items():
        assert variable.get("type"), f"variable {name} has no type"
        assert variable.get("description"), f"variable {name} has no description"


def test_outputs_cover_the_contract(module: Module) -> None:
    """The module exports what the forwarder and its operators need."""
    required = {
        "bucket_name",
        "bucket_arn",
        "queue_url",
        "queue_arn",
        "dlq_url",
        "dlq_arn",
        "forwarder_policy_arn",
        "forwarder_policy_json",
        "operator_policy_arn",
        "operator_policy_json",
        "generator_function_name",
        "consumer_function_name",
    }
    assert required <= set(module.outputs)
    for name, output in module.outputs.items():
        assert output.get("description"), f"output {name} has no description"
    assert module.outputs["queue_url"]["value"] == "${aws_sqs_queue.jobs.id}"
    assert module.outputs["dlq_arn"]["value"] == "${aws_sqs_queue.jobs_dlq.arn}"


def test_checkov_skips_carry_reasons_and_are_documented() -> None:
    """Every inline checkov skip explains itself and is listed in terraform/README.md."""
    skips = checkov_skips()
    assert skips, "expected the documented skips; none found"
    readme = TERRAFORM_README.read_text(encoding="utf-8")
    for filename, check_id, reason in skips:
        assert len(reason) >= 30, f"{filename}: skip of {check_id} needs a real reason"
        assert check_id in readme, f"{check_id} (skipped in {filename}) is not listed in terraform/README.md"


# --- checkov ----------------------------------------------------------------------------------------


def checkov_binary() -> Path:
    """Locate checkov: $CHECKOV_BIN, else the repository's .venv-checkov; fail when neither exists."""
    configured = os.environ.get("CHECKOV_BIN")
    candidate = Path(configured) if configured else REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
    if not candidate.is_file():
        pytest.fail(
            f"checkov not found at {candidate}. Install it in its own virtualenv: "
            "python3 -m venv .venv-checkov && .venv-checkov/bin/pip install checkov "
            "(or point CHECKOV_BIN at a checkov executable).",
            pytrace=False,
        )
    return candidate


def checkov_environment() -> dict[str, str]:
    """Environment that keeps checkov offline: no platform key, no mapping or SCA downloads."""
    environment = dict(os.environ)
    for name in ("BC_API_KEY", "PRISMA_API_URL"):
        environment.pop(name, None)
    environment.update(
        {
            "BC_SKIP_MAPPING": "TRUE",
            "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
            "LOG_LEVEL": "WARNING",
        }
    )
    return environment


def checkov_reports(
    directory: Path | str, *frameworks: str, extra: Sequence[str] = ()
) -> tuple[list[dict[str, Any]], subprocess.CompletedProcess[str]]:
    """Run checkov offline on ``directory`` with ``frameworks``; return its JSON reports and the run.

    checkov prints one report per framework (a list), or a single object when only one applies.
    Fails the test, with checkov's output, when no JSON report comes back.
    """
    started = time.monotonic()
    completed = subprocess.run(
        [
            str(checkov_binary()),
            "--framework",
            *frameworks,
            "--directory",
            str(directory),
            "--download-external-modules",
            "false",
            "--skip-download",
            "--compact",
            "--quiet",
            "--output",
            "json",
            *extra,
        ],
        cwd=REPO_ROOT,
        env=checkov_environment(),
        capture_output=True,
        text=True,
        timeout=CHECKOV_TIMEOUT_SECONDS,
        check=False,
    )
    try:
        report = json.loads(completed.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"checkov exited {completed.returncode} without a JSON report after "
            f"{time.monotonic() - started:.1f}s:\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}",
            pytrace=False,
        )
    return (report if isinstance(report, list) else [report]), completed


@pytest.mark.parametrize(
    "var_file",
    [None, CONSUMER_EXAMPLE_VARS],
    ids=["defaults", "consumer-lambda-on"],
)
def test_checkov_finds_no_failed_checks(var_file: Path | None) -> None:
    """Checkov scans the module (with and without the consumer Lambda) and reports no failed check."""
    extra: list[str] = []
    if var_file is not None:
        assert var_file.is_file(), f"{var_file} is missing"
        extra = ["--var-file", str(var_file.relative_to(REPO_ROOT))]
    reports, completed = checkov_reports("terraform", "terraform", extra=extra)
    terraform_reports = [entry for entry in reports if entry.get("check_type") == "terraform"]
    assert terraform_reports, f"checkov produced no terraform report: {completed.stdout[:500]}"
    summary = terraform_reports[0]["summary"]
    failed = terraform_reports[0]["results"].get("failed_checks", [])
    failures = sorted(f"{check['check_id']} {check['resource']} ({check['file_path']})" for check in failed)
    assert summary["failed"] == 0, "checkov failed checks:\n" + "\n".join(failures)
    assert summary["parsing_errors"] == 0, f"checkov could not parse the module: {summary}"
    assert summary["passed"] > 50, f"checkov scanned suspiciously little: {summary}"
    assert completed.returncode == 0, f"checkov exited {completed.returncode}: {completed.stderr[-2000:]}"
