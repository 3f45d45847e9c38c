# Optional: the forwarder as a Lambda function (app.lambda_handler.handler) fed by an SQS event
# source mapping. Metrics go to the Datadog Lambda extension, which listens for DogStatsD on
# localhost:8125 inside the execution environment.

resource "aws_cloudwatch_log_group" "consumer" {
  #checkov:skip=CKV_AWS_338:Operational logs of the forwarder, not an audit trail (Datadog keeps the metrics and events); retention is var.log_retention_days.
  count = var.enable_consumer_lambda ? 1 : 0

  name              = local.consumer_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}

resource "aws_iam_role" "consumer" {
  count = var.enable_consumer_lambda ? 1 : 0

  name               = "${var.name_prefix}-forwarder"
  description        = "cloud-job-metrics forwarder Lambda: SQS job queue to Datadog"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume_role.json
}

resource "aws_iam_role_policy_attachment" "consumer_forwarder" {
  count = var.enable_consumer_lambda ? 1 : 0

  role       = aws_iam_role.consumer[0].name
  policy_arn = aws_iam_policy.forwarder.arn
}

data "aws_iam_policy_document" "consumer" {
  count = var.enable_consumer_lambda ? 1 : 0

  # The basic execution permissions, scoped to the function's own log group (Terraform creates the
  # group, so logs:CreateLogGroup is not needed).
  statement {
    sid       = "BasicExecutionLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.consumer[0].arn}:*"]
  }

  # The Datadog extension and the forwarder read the API key at start (DD_API_KEY_SECRET_ARN);
  # the forwarder reads it again once when the intake refuses the key (after a rotation).
  statement {
    sid       = "ReadDatadogApiKey"
    effect    = "Allow"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.datadog_api_key_secret_arn]
  }

  # A secret under a customer managed key needs kms:Decrypt on that key as well. The key is not
  # known here, so the grant names any key of the secret's account and region, and only through
  # Secrets Manager, for this secret's encryption context: it cannot decrypt anything else.
  # (With the AWS managed key aws/secretsmanager the statement is unused and harmless.)
  statement {
    sid       = "DecryptDatadogApiKey"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = ["arn:${local.partition}:kms:${local.api_key_secret_region}:${local.api_key_secret_account}:key/*"]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.api_key_secret_region}.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:SecretARN"
      values   = [var.datadog_api_key_secret_arn]
    }
  }
}

locals {
  # arn:<partition>:secretsmanager:<region>:<account>:secret:<name>
  api_key_secret_region  = try(split(":", var.datadog_api_key_secret_arn)[3], local.region)
  api_key_secret_account = try(split(":", var.datadog_api_key_secret_arn)[4], local.account_id)
}

resource "aws_iam_role_policy" "consumer" {
  count = var.enable_consumer_lambda ? 1 : 0

  name   = "forwarder-runtime"
  role   = aws_iam_role.consumer[0].id
  policy = data.aws_iam_policy_document.consumer[0].json
}

resource "aws_iam_role_policy_attachment" "consumer_xray" {
  count = var.enable_consumer_lambda && var.lambda_tracing_mode == "Active" ? 1 : 0

  role       = aws_iam_role.consumer[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

resource "aws_lambda_function" "consumer" {
  #checkov:skip=CKV_AWS_116:Invoked synchronously by the SQS event source mapping; failed records go back to the queue and its redrive policy moves them to the DLQ. A function-level DLQ applies only to asynchronous invocations.
  #checkov:skip=CKV_AWS_117:Calls only public AWS APIs (SQS, S3, Secrets Manager) and Datadog's intake; a VPC would need a NAT gateway or endpoints for no isolation benefit.
  #checkov:skip=CKV_AWS_115:Concurrency is capped where it matters, on the event source mapping (scaling_config.maximum_concurrency); reserved concurrency would also throttle the poller and fails in accounts at the default limit.
  #checkov:skip=CKV_AWS_272:The package is built outside Terraform (consumer_package_path); code signing belongs to that build pipeline, which does not exist yet.
  count = var.enable_consumer_lambda ? 1 : 0

  function_name    = local.consumer_function_name
  description      = "Forwards job metadata from the SQS job queue to Datadog"
  role             = aws_iam_role.consumer[0].arn
  runtime          = var.lambda_runtime
  handler          = "app.lambda_handler.handler"
  architectures    = [var.consumer_architecture]
  filename         = var.consumer_package_path
  source_code_hash = filebase64sha256(var.consumer_package_path)
  memory_size      = var.consumer_memory_mb
  timeout          = var.consumer_timeout_seconds
  layers           = [var.datadog_extension_layer_arn]
  kms_key_arn      = aws_kms_key.this.arn

  environment {
    variables = merge(
      {
        SQS_QUEUE_URL         = aws_sqs_queue.jobs.id
        DEAD_LETTER_QUEUE_URL = aws_sqs_queue.jobs_dlq.id
        ALLOWED_BUCKETS       = aws_s3_bucket.job_results.id
        KEY_PREFIX            = var.job_results_prefix
        KEY_SUFFIX            = ".json"
        DD_API_KEY_SECRET_ARN = var.datadog_api_key_secret_arn
        DD_SITE               = var.datadog_site
        DD_SERVICE            = var.name_prefix
        # DogStatsD of the Datadog extension, inside the execution environment.
        DD_AGENT_HOST     = "127.0.0.1"
        DD_DOGSTATSD_PORT = "8125"
        # Concurrent execution environments overwrite each other's counts and gauges in the
        # extension; distributions are kept whole. Flush at the end of every invocation, so a
        # batch's metrics have left before Lambda deletes its messages.
        DISTRIBUTIONS                = "true"
        DD_SERVERLESS_FLUSH_STRATEGY = "end"
      },
      var.consumer_environment,
    )
  }

  tracing_config {
    mode = var.lambda_tracing_mode
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.consumer[0].name
  }

  depends_on = [aws_iam_role_policy.consumer]
}

resource "aws_lambda_event_source_mapping" "consumer" {
  count = var.enable_consumer_lambda ? 1 : 0

  event_source_arn                   = aws_sqs_queue.jobs.arn
  function_name                      = aws_lambda_function.consumer[0].arn
  batch_size                         = var.consumer_batch_size
  maximum_batching_window_in_seconds = var.consumer_batching_window_seconds
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.consumer_maximum_concurrency
  }

  # The poller checks the role's SQS permissions when the mapping is created.
  depends_on = [aws_iam_role_policy_attachment.consumer_forwarder]
}
