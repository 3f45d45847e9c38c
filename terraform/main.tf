data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region

  queue_name = "${var.name_prefix}-jobs"
  dlq_name   = "${var.name_prefix}-jobs-dlq"

  generator_function_name = "${var.name_prefix}-generator"
  consumer_function_name  = "${var.name_prefix}-forwarder"

  # Log groups are named before their functions exist so retention and encryption apply from the
  # first invocation (a group Lambda creates itself never expires).
  generator_log_group_name = "/aws/lambda/${local.generator_function_name}"
  consumer_log_group_name  = "/aws/lambda/${local.consumer_function_name}"

  # Lambda's SQS poller hides a message for the whole batch it is building and for the invocation:
  # AWS asks for at least 6x the function timeout plus the batching window. The CLI forwarder keeps
  # the configured value (it extends visibility itself for long-held messages).
  lambda_visibility_timeout_seconds = 6 * var.consumer_timeout_seconds + var.consumer_batching_window_seconds
  queue_visibility_timeout_seconds = (
    var.enable_consumer_lambda
    ? max(var.queue_visibility_timeout_seconds, local.lambda_visibility_timeout_seconds)
    : var.queue_visibility_timeout_seconds
  )

  # ARN pattern of the objects the producers write and the forwarder reads.
  job_objects_arn = "${aws_s3_bucket.job_results.arn}/${var.job_results_prefix}*"
}
