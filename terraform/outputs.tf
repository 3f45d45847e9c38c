output "bucket_name" {
  description = "Name of the job-results bucket."
  value       = aws_s3_bucket.job_results.id
}

output "bucket_arn" {
  description = "ARN of the job-results bucket."
  value       = aws_s3_bucket.job_results.arn
}

output "job_results_prefix" {
  description = "Key prefix the notification watches (objects must also end in .json)."
  value       = var.job_results_prefix
}

output "queue_url" {
  description = "URL of the job queue (SQS_QUEUE_URL for the forwarder)."
  value       = aws_sqs_queue.jobs.id
}

output "queue_arn" {
  description = "ARN of the job queue."
  value       = aws_sqs_queue.jobs.arn
}

output "queue_visibility_timeout_seconds" {
  description = "Visibility timeout the job queue got (raised for the consumer Lambda when it is on)."
  value       = aws_sqs_queue.jobs.visibility_timeout_seconds
}

output "dlq_url" {
  description = "URL of the dead-letter queue."
  value       = aws_sqs_queue.jobs_dlq.id
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.jobs_dlq.arn
}

output "kms_key_arn" {
  description = "ARN of the customer-managed KMS key encrypting the bucket, the queues and the logs."
  value       = aws_kms_key.this.arn
}

output "forwarder_policy_arn" {
  description = "ARN of the forwarder's least-privilege IAM policy; attach it to the role or user running cloud-job-metrics."
  value       = aws_iam_policy.forwarder.arn
}

output "forwarder_policy_json" {
  description = "The forwarder's IAM policy document, for review or for an account where policies are managed elsewhere."
  value       = data.aws_iam_policy_document.forwarder.json
}

output "operator_policy_arn" {
  description = "ARN of the operator's least-privilege IAM policy (backfill, dlq, redrive); attach it to a person's or a break-glass role, not to the forwarder."
  value       = aws_iam_policy.operator.arn
}

output "operator_policy_json" {
  description = "The operator's IAM policy document, for review or for an account where policies are managed elsewhere."
  value       = data.aws_iam_policy_document.operator.json
}

output "generator_function_name" {
  description = "Name of the scheduled generator Lambda (null when enable_generator is false)."
  value       = one(aws_lambda_function.generator[*].function_name)
}

output "consumer_function_name" {
  description = "Name of the consumer (forwarder) Lambda (null when enable_consumer_lambda is false)."
  value       = one(aws_lambda_function.consumer[*].function_name)
}
