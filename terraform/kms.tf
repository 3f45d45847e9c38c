# One customer-managed key encrypts the bucket, both queues, the log groups and the functions'
# environment. A CMK (rather than SQS-managed SSE or the aws/s3 key) is what lets S3 publish to an
# encrypted queue: the key policy below grants S3 GenerateDataKey/Decrypt for this bucket only.

resource "aws_kms_key" "this" {
  description             = "${var.name_prefix}: job-results bucket, job queues and logs"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name_prefix}"
  target_key_id = aws_kms_key.this.key_id
}

data "aws_iam_policy_document" "kms" {
  # The container paths add the services that write to their encrypted topic and queue.
  source_policy_documents = data.aws_iam_policy_document.kms_containers[*].json

  #checkov:skip=CKV_AWS_109:Key policy: Resource "*" means this key only; administration is delegated to the account's IAM policies (the AWS default key policy).
  #checkov:skip=CKV_AWS_111:Key policy: Resource "*" means this key only; write access is delegated to the account's IAM policies (the AWS default key policy).
  #checkov:skip=CKV_AWS_356:Key policy: Resource "*" is the only valid resource in a key policy and refers to the key itself.

  statement {
    sid       = "DelegateToAccountIam"
    effect    = "Allow"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "S3NotificationsToEncryptedQueue"
    effect    = "Allow"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.job_results.arn]
    }
  }

  statement {
    sid    = "CloudWatchLogsForThisStack"
    effect = "Allow"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values = [
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/lambda/${var.name_prefix}-*",
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/ecs/${var.name_prefix}-*",
      ]
    }
  }
}
