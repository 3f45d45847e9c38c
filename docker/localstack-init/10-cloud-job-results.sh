#!/bin/bash
# Provisions the AWS side of cloud-job-metrics inside LocalStack, mirroring what
# the real account holds: the results bucket, the notification queue, its
# dead-letter queue and the bucket -> queue notification for new .json objects.
#
# LocalStack runs every executable *.sh in /etc/localstack/init/ready.d/ once the
# emulator is ready to serve requests. A non-zero exit marks the script ERROR in
# /_localstack/init/ready, which the compose health check looks at, so the tests
# never start against a half-provisioned emulator.
set -euo pipefail

bucket="${CJM_BUCKET:-cloud-job-results}"
queue="${CJM_QUEUE:-cloud-job-results-queue}"
dlq="${CJM_DLQ:-cloud-job-results-dlq}"
region="${AWS_DEFAULT_REGION:-us-east-1}"
# After this many receives without a delete, SQS moves a message to the DLQ.
max_receive_count=5
# Long enough for one batch of ten objects to be fetched and forwarded; the
# forwarder extends it for messages held longer than half of it.
visibility_timeout_seconds=60
# The DLQ keeps messages as long as SQS allows (14 days) so they can be redriven.
dlq_retention_seconds=1209600

workdir="$(mktemp -d)"
trap 'rm -rf "${workdir}"' EXIT

echo "cloud-job-metrics init: bucket=${bucket} queue=${queue} dlq=${dlq} region=${region}"

# --- dead-letter queue -------------------------------------------------------
dlq_url="$(awslocal sqs create-queue --queue-name "${dlq}" \
  --attributes "MessageRetentionPeriod=${dlq_retention_seconds}" \
  --query QueueUrl --output text)"
dlq_arn="$(awslocal sqs get-queue-attributes --queue-url "${dlq_url}" \
  --attribute-names QueueArn --query Attributes.QueueArn --output text)"

# --- main queue with its RedrivePolicy ----------------------------------------
# RedrivePolicy is itself a JSON document passed as a string attribute, hence
# the escaped quotes inside the attributes file.
cat >"${workdir}/queue-attributes.json" <<JSON
{
  "VisibilityTimeout": "${visibility_timeout_seconds}",
  "ReceiveMessageWaitTimeSeconds": "20",
  "RedrivePolicy": "{\"deadLetterTargetArn\":\"${dlq_arn}\",\"maxReceiveCount\":\"${max_receive_count}\"}"
}
JSON
queue_url="$(awslocal sqs create-queue --queue-name "${queue}" \
  --attributes "file://${workdir}/queue-attributes.json" \
  --query QueueUrl --output text)"
queue_arn="$(awslocal sqs get-queue-attributes --queue-url "${queue_url}" \
  --attribute-names QueueArn --query Attributes.QueueArn --output text)"

# Real S3 may only deliver to a queue whose policy lets the bucket send to it;
# LocalStack does not enforce this, but keeping it here documents the contract.
cat >"${workdir}/queue-policy.json" <<JSON
{
  "Policy": "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Sid\":\"AllowResultsBucket\",\"Effect\":\"Allow\",\"Principal\":{\"Service\":\"s3.amazonaws.com\"},\"Action\":\"sqs:SendMessage\",\"Resource\":\"${queue_arn}\",\"Condition\":{\"ArnLike\":{\"aws:SourceArn\":\"arn:aws:s3:::${bucket}\"}}}]}"
}
JSON
awslocal sqs set-queue-attributes --queue-url "${queue_url}" \
  --attributes "file://${workdir}/queue-policy.json"

# --- bucket ---------------------------------------------------------------------
# us-east-1 is the one region that rejects an explicit LocationConstraint.
if [ "${region}" = "us-east-1" ]; then
  awslocal s3api create-bucket --bucket "${bucket}" >/dev/null
else
  awslocal s3api create-bucket --bucket "${bucket}" \
    --create-bucket-configuration "LocationConstraint=${region}" >/dev/null
fi

# --- bucket notification: every created .json object goes to the queue ----------
# Configuring it makes S3 send an s3:TestEvent to the queue, which the forwarder
# acknowledges and ignores.
cat >"${workdir}/notification.json" <<JSON
{
  "QueueConfigurations": [
    {
      "Id": "job-metadata-to-sqs",
      "QueueArn": "${queue_arn}",
      "Events": ["s3:ObjectCreated:*"],
      "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".json"}]}}
    }
  ]
}
JSON
awslocal s3api put-bucket-notification-configuration --bucket "${bucket}" \
  --notification-configuration "file://${workdir}/notification.json"

echo "cloud-job-metrics init: ready; SQS_QUEUE_URL=${queue_url}"
