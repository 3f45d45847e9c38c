# The operator's permissions (`cloud-job-metrics backfill`, `dlq`, `redrive`), as a managed policy of
# their own: for a person or a break-glass role, never for the forwarder. Exactly the calls the
# commands make, on this stack's bucket, queue and dead-letter queue.

data "aws_iam_policy_document" "operator" {
  # backfill: is the bucket versioned, then list the latest version of each key. The bucket is
  # always versioned (bucket.tf), so ListObjectVersions is the listing and s3:ListBucket is not needed.
  statement {
    sid    = "ListJobObjects"
    effect = "Allow"
    actions = [
      "s3:GetBucketVersioning",
      "s3:ListBucketVersions",
    ]
    resources = [aws_s3_bucket.job_results.arn]
  }

  # backfill and redrive send notifications to the job queue; dlq and redrive read its
  # RedrivePolicy to find the dead-letter queue (whose URL is derived from the ARN: no GetQueueUrl).
  statement {
    sid    = "FeedJobQueue"
    effect = "Allow"
    actions = [
      "sqs:SendMessage",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.jobs.arn]
  }

  # dlq: receive, release at once, count. redrive: receive, delete after the send to the job queue,
  # release what was not chosen, count; StartMessageMoveTask for an unfiltered redrive (AWS checks
  # it on the source of the move, the DLQ, and needs the receive, delete and attribute permissions
  # there as well). No ListMessageMoveTasks: nothing calls it.
  statement {
    sid    = "InspectAndRedriveDeadLetters"
    effect = "Allow"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
      "sqs:DeleteMessage",
      "sqs:StartMessageMoveTask",
    ]
    resources = [aws_sqs_queue.jobs_dlq.arn]
  }

  # Both queues are SSE-KMS with the module key: receiving needs kms:Decrypt, sending needs
  # kms:GenerateDataKey and kms:Decrypt (SQS's key-management guide lists both for producers); only
  # through SQS. Listing the bucket reads no object, so no use of the key through S3.
  statement {
    sid    = "UseQueueKey"
    effect = "Allow"
    actions = [
      "kms:Decrypt",
      "kms:GenerateDataKey",
    ]
    resources = [aws_kms_key.this.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["sqs.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_policy" "operator" {
  name        = "${var.name_prefix}-operator"
  description = "cloud-job-metrics operator: backfill the job queue, inspect and redrive the dead-letter queue"
  policy      = data.aws_iam_policy_document.operator.json
}
