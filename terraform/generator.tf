# Scheduled generator: the demo's job-metadata producer (app/generator.py), deployed as a Lambda that
# writes one random job file a minute, so the whole pipeline can be watched end to end.

data "archive_file" "generator" {
  count = var.enable_generator ? 1 : 0

  type        = "zip"
  source_file = "${path.module}/../app/generator.py"
  output_path = "${path.module}/build/generator.zip"
}

resource "aws_cloudwatch_log_group" "generator" {
  #checkov:skip=CKV_AWS_338:Operational logs of a demo producer, not an audit trail; retention is var.log_retention_days (default 30 days).
  count = var.enable_generator ? 1 : 0

  name              = local.generator_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}

resource "aws_iam_role" "generator" {
  count = var.enable_generator ? 1 : 0

  name               = "${var.name_prefix}-generator"
  description        = "cloud-job-metrics generator Lambda: writes job metadata into the job-results bucket"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume_role.json
}

data "aws_iam_policy_document" "generator" {
  count = var.enable_generator ? 1 : 0

  statement {
    sid       = "WriteJobMetadata"
    effect    = "Allow"
    actions   = ["s3:PutObject"]
    resources = [local.job_objects_arn]
  }

  # The bucket is SSE-KMS with the module's key: a PUT needs a data key, through S3 only.
  statement {
    sid       = "EncryptJobMetadata"
    effect    = "Allow"
    actions   = ["kms:GenerateDataKey"]
    resources = [aws_kms_key.this.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }

  statement {
    sid       = "WriteOwnLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.generator[0].arn}:*"]
  }
}

resource "aws_iam_role_policy" "generator" {
  count = var.enable_generator ? 1 : 0

  name   = "generator"
  role   = aws_iam_role.generator[0].id
  policy = data.aws_iam_policy_document.generator[0].json
}

resource "aws_iam_role_policy_attachment" "generator_xray" {
  count = var.enable_generator && var.lambda_tracing_mode == "Active" ? 1 : 0

  role       = aws_iam_role.generator[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

resource "aws_lambda_function" "generator" {
  #checkov:skip=CKV_AWS_116:Invoked asynchronously once a minute with random data; a lost invocation is replaced by the next one, so a dead-letter target would only collect noise.
  #checkov:skip=CKV_AWS_117:Calls only the public S3 API; a VPC would need a NAT gateway or endpoints for no isolation benefit.
  #checkov:skip=CKV_AWS_115:Concurrency is bounded by the schedule (one invocation a minute); reserving concurrency fails in accounts at the default limit.
  #checkov:skip=CKV_AWS_272:The code is zipped by Terraform from this repository at apply time; there is no signing pipeline to verify against.
  count = var.enable_generator ? 1 : 0

  function_name    = local.generator_function_name
  description      = "Writes one random job-metadata file to the job-results bucket"
  role             = aws_iam_role.generator[0].arn
  runtime          = var.lambda_runtime
  handler          = "generator.handler"
  architectures    = ["arm64"]
  filename         = data.archive_file.generator[0].output_path
  source_code_hash = data.archive_file.generator[0].output_base64sha256
  memory_size      = 128
  timeout          = 30
  kms_key_arn      = aws_kms_key.this.arn

  environment {
    variables = {
      JOB_RESULTS_BUCKET = aws_s3_bucket.job_results.id
      JOB_RESULTS_PREFIX = var.job_results_prefix
    }
  }

  tracing_config {
    mode = var.lambda_tracing_mode
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.generator[0].name
  }

  depends_on = [aws_iam_role_policy.generator]
}

resource "aws_cloudwatch_event_rule" "generator" {
  count = var.enable_generator ? 1 : 0

  name                = "${var.name_prefix}-generator"
  description         = "Runs the cloud-job-metrics generator on a schedule"
  schedule_expression = var.generator_schedule_expression
}

resource "aws_cloudwatch_event_target" "generator" {
  count = var.enable_generator ? 1 : 0

  rule      = aws_cloudwatch_event_rule.generator[0].name
  target_id = "generator"
  arn       = aws_lambda_function.generator[0].arn

  retry_policy {
    maximum_event_age_in_seconds = 60
    maximum_retry_attempts       = 0
  }
}

resource "aws_lambda_permission" "generator_schedule" {
  count = var.enable_generator ? 1 : 0

  statement_id  = "AllowEventBridgeSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.generator[0].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.generator[0].arn
}
