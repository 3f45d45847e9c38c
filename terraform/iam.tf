# The forwarder's permissions, as one managed policy: attached to the consumer Lambda's role below,
# and exported (ARN and JSON) for the role or user that runs `cloud-job-metrics drain`.

data "aws_iam_policy_document" "forwarder" {
  statement {
    sid    = "ConsumeJobQueue"
    effect = "Allow"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.jobs.arn]
  }

  statement {
    sid    = "DeadLetterRejectedMessages"
    effect = "Allow"
    # GetQueueAttributes: only `cloud-job-metrics check` reads the DLQ. No GetQueueUrl: the DLQ's
    # URL is derived from its ARN and the job queue's URL.
    actions = [
      "sqs:SendMessage",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.jobs_dlq.arn]
  }

  statement {
    sid    = "ReadJobMetadata"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:GetObjectVersion",
    ]
    resources = [local.job_objects_arn]
  }

  # Reading the SSE-KMS objects and receiving from the encrypted queue.
  statement {
    sid       = "DecryptJobData"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values = [
        "s3.${local.region}.amazonaws.com",
        "sqs.${local.region}.amazonaws.com",
      ]
    }
  }

  # Sending a rejected message to the encrypted DLQ needs a data key as well.
  statement {
    sid       = "EncryptDeadLetters"
    effect    = "Allow"
    actions   = ["kms:GenerateDataKey"]
    resources = [aws_kms_key.this.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["sqs.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_policy" "forwarder" {
  name        = "${var.name_prefix}-forwarder"
  description = "cloud-job-metrics forwarder: drain the job queue, dead-letter rejects, read job metadata"
  policy      = data.aws_iam_policy_document.forwarder.json
}

data "aws_iam_policy_document" "lambda_assume_role" {
  statement {
    sid     = "LambdaAssumeRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}
