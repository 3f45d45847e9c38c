resource "aws_s3_bucket" "job_results" {
  #checkov:skip=CKV_AWS_144:Job metadata is re-creatable telemetry; cross-region replication would double storage and KMS cost for no recovery need. Versioning covers accidental overwrites.
  #checkov:skip=CKV_AWS_18:Server access logging needs a separate log bucket owned by the account's logging setup; it is switched on with var.access_log_bucket (aws_s3_bucket_logging below).
  bucket        = var.bucket_name
  bucket_prefix = var.bucket_name == null ? "${var.name_prefix}-" : null
  force_destroy = var.bucket_force_destroy
}

resource "aws_s3_bucket_ownership_controls" "job_results" {
  bucket = aws_s3_bucket.job_results.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "job_results" {
  bucket = aws_s3_bucket.job_results.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "job_results" {
  bucket = aws_s3_bucket.job_results.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "job_results" {
  bucket = aws_s3_bucket.job_results.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this.arn
    }
    # S3 Bucket Keys cut the KMS requests (and their cost) per object by orders of magnitude.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "job_results" {
  bucket = aws_s3_bucket.job_results.id

  # Lifecycle rules act on the versions that exist when they run; wait for versioning.
  depends_on = [aws_s3_bucket_versioning.job_results]

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

resource "aws_s3_bucket_logging" "job_results" {
  count = var.access_log_bucket == null ? 0 : 1

  bucket        = aws_s3_bucket.job_results.id
  target_bucket = var.access_log_bucket
  target_prefix = "s3-access/${aws_s3_bucket.job_results.id}/"
}

data "aws_iam_policy_document" "job_results_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.job_results.arn, "${aws_s3_bucket.job_results.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "job_results" {
  bucket = aws_s3_bucket.job_results.id
  policy = data.aws_iam_policy_document.job_results_bucket.json

  # A bucket policy is rejected while the public access block is still being applied.
  depends_on = [aws_s3_bucket_public_access_block.job_results]
}

resource "aws_s3_bucket_notification" "job_results" {
  bucket = aws_s3_bucket.job_results.id

  queue {
    id            = "job-metadata-to-sqs"
    queue_arn     = aws_sqs_queue.jobs.arn
    events        = ["s3:ObjectCreated:*"]
    filter_prefix = var.job_results_prefix == "" ? null : var.job_results_prefix
    filter_suffix = ".json"
  }

  # S3 validates the destination (sends s3:TestEvent) when the notification is saved, so the queue
  # policy allowing this bucket must exist first.
  depends_on = [aws_sqs_queue_policy.jobs]
}
