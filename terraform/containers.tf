# What the two container paths share: the ECS cluster, the task and execution roles, the security
# group, the log group, the forwarder's and the agent's container definitions, and the alerts topic.
# The scheduled drain is in scheduled_task.tf, the poller service in poller_service.tf.

locals {
  containers_enabled = var.enable_scheduled_task || var.enable_poller_service

  container_cluster_name   = var.name_prefix
  container_log_group_name = "/aws/ecs/${var.name_prefix}-forwarder"

  # The forwarder's container name, which the alert rules match exit codes on.
  forwarder_container_name = "forwarder"
  agent_container_name     = "datadog-agent"

  # The agent creates its DogStatsD socket in a volume both containers mount.
  dogstatsd_socket_directory = "/var/run/datadog"
  dogstatsd_socket_path      = "${local.dogstatsd_socket_directory}/dsd.socket"

  # Objects in flight are bounded by MAX_IN_FLIGHT_MESSAGES x MAX_OBJECT_BYTES (1 MiB by default):
  # a quarter of the task's memory for them leaves the rest to the interpreter and its pools.
  container_max_in_flight_messages = max(40, floor(var.container_memory_mb / 4))

  # An image in ECR (<account>.dkr.ecr.<region>.amazonaws.com/<repository>@sha256:...) needs pull
  # permissions on its repository; a public image needs none.
  container_image_ecr = var.container_image == null ? null : try(
    regex("^(?P<account>[0-9]{12})\\.dkr\\.ecr\\.(?P<region>[a-z0-9-]+)\\.amazonaws\\.com(?:\\.cn)?/(?P<repository>[^@:]+)@", var.container_image),
    null,
  )
  container_image_repository_arn = local.container_image_ecr == null ? null : "arn:${local.partition}:ecr:${local.container_image_ecr.region}:${local.container_image_ecr.account}:repository/${local.container_image_ecr.repository}"

  # The forwarder's settings, by the names app/settings.py reads. With the agent sidecar metrics
  # go over its Unix socket; without it, to the HTTP API with the key read from Secrets Manager
  # by the forwarder itself (the task role may read that one secret).
  container_sink_environment = var.container_datadog_agent ? tomap({
    SINK             = "dogstatsd"
    DD_DOGSTATSD_URL = "unix://${local.dogstatsd_socket_path}"
    }) : tomap({
    SINK                  = "api"
    DD_API_KEY_SECRET_ARN = var.datadog_api_key_secret_arn
    DD_SITE               = var.datadog_site
  })

  container_forwarder_environment = merge(
    {
      SQS_QUEUE_URL          = aws_sqs_queue.jobs.id
      DEAD_LETTER_QUEUE_URL  = aws_sqs_queue.jobs_dlq.id
      ALLOWED_BUCKETS        = aws_s3_bucket.job_results.id
      KEY_PREFIX             = var.job_results_prefix
      KEY_SUFFIX             = ".json"
      LOG_FORMAT             = "json"
      MAX_IN_FLIGHT_MESSAGES = tostring(local.container_max_in_flight_messages)
    },
    local.container_sink_environment,
  )

  # The forwarder's container; each path adds its command, environment and log stream prefix.
  # SIGTERM stops the receives and settles every batch in hand: 120 s is Fargate's maximum.
  forwarder_container = {
    name                   = local.forwarder_container_name
    image                  = var.container_image
    essential              = true
    readonlyRootFilesystem = true
    user                   = "10001:10001"
    stopTimeout            = 120
    mountPoints = concat(
      [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }],
      var.container_datadog_agent ? [{ sourceVolume = "dogstatsd-socket", containerPath = local.dogstatsd_socket_directory, readOnly = true }] : [],
    )
    # Start only once the agent listens; ECS stops containers in reverse order, so the agent
    # stops after the forwarder and flushes what it received.
    dependsOn = var.container_datadog_agent ? [{ containerName = local.agent_container_name, condition = "HEALTHY" }] : []
  }

  # The datadog-agent sidecar, done for a task that ends: pinned image, the last (incomplete)
  # 10 s bucket flushed on stop, healthy before the forwarder starts, time to flush on SIGTERM.
  # Not essential: an agent that dies makes DogStatsD sends fail visibly, and the forwarder keeps
  # those messages for a retry.
  agent_container = {
    name                   = local.agent_container_name
    image                  = var.datadog_agent_image
    essential              = false
    readonlyRootFilesystem = false
    stopTimeout            = 60
    environment = [
      { name = "DD_APM_ENABLED", value = "false" },
      { name = "DD_DOGSTATSD_FLUSH_INCOMPLETE_BUCKETS", value = "true" },
      { name = "DD_DOGSTATSD_SOCKET", value = local.dogstatsd_socket_path },
      { name = "DD_SITE", value = var.datadog_site },
      { name = "ECS_FARGATE", value = "true" },
    ]
    secrets = [{ name = "DD_API_KEY", valueFrom = var.datadog_api_key_secret_arn }]
    healthCheck = {
      command     = ["CMD-SHELL", "agent health"]
      interval    = 10
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }
    mountPoints = [{ sourceVolume = "dogstatsd-socket", containerPath = local.dogstatsd_socket_directory, readOnly = false }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = local.container_log_group_name
        awslogs-region        = local.region
        awslogs-stream-prefix = "agent"
      }
    }
  }
}

resource "aws_ecs_cluster" "containers" {
  count = local.containers_enabled ? 1 : 0

  name = local.container_cluster_name

  # Container Insights publishes RunningTaskCount, which the poller's backlog per task divides by.
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "containers" {
  #checkov:skip=CKV_AWS_338:Operational logs of the forwarder and its agent, not an audit trail (Datadog keeps the metrics and events); retention is var.log_retention_days.
  count = local.containers_enabled ? 1 : 0

  name              = local.container_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}

# --- roles ------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "ecs_tasks_assume_role" {
  count = local.containers_enabled ? 1 : 0

  statement {
    sid     = "EcsTasksAssumeRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    # Only tasks of this account may assume the roles (confused-deputy protection).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# The task role is what the forwarder runs as: the forwarder's policy, plus the API-key secret
# when it posts to the HTTP API itself.
resource "aws_iam_role" "container_task" {
  count = local.containers_enabled ? 1 : 0

  name               = "${var.name_prefix}-forwarder-task"
  description        = "cloud-job-metrics forwarder on ECS: drain the job queue, read job metadata"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume_role[0].json
}

resource "aws_iam_role_policy_attachment" "container_task_forwarder" {
  count = local.containers_enabled ? 1 : 0

  role       = aws_iam_role.container_task[0].name
  policy_arn = aws_iam_policy.forwarder.arn
}

data "aws_iam_policy_document" "container_task" {
  count = local.containers_enabled && !var.container_datadog_agent ? 1 : 0

  # SINK=api: the forwarder reads the key at start (DD_API_KEY_SECRET_ARN), and once more when
  # the intake refuses it (after a rotation).
  statement {
    sid       = "ReadDatadogApiKey"
    effect    = "Allow"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.datadog_api_key_secret_arn]
  }

  # A secret under a customer managed key needs kms:Decrypt too: any key of the secret's account
  # and region, only through Secrets Manager and for this secret (as the consumer Lambda's role).
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

resource "aws_iam_role_policy" "container_task" {
  count = local.containers_enabled && !var.container_datadog_agent ? 1 : 0

  name   = "forwarder-api-key"
  role   = aws_iam_role.container_task[0].id
  policy = data.aws_iam_policy_document.container_task[0].json
}

# The execution role is what ECS uses to start the task: pull the image, create log streams and,
# for the agent sidecar, read the API key into its environment. The containers never see it.
resource "aws_iam_role" "container_execution" {
  count = local.containers_enabled ? 1 : 0

  name               = "${var.name_prefix}-forwarder-execution"
  description        = "cloud-job-metrics on ECS: pull the forwarder image, write its logs, read the agent's API key"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume_role[0].json
}

data "aws_iam_policy_document" "container_execution" {
  count = local.containers_enabled ? 1 : 0

  statement {
    sid       = "WriteContainerLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.containers[0].arn}:*"]
  }

  dynamic "statement" {
    for_each = local.container_image_repository_arn == null ? [] : [local.container_image_repository_arn]

    content {
      sid       = "PullForwarderImage"
      effect    = "Allow"
      actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
      resources = [statement.value]
    }
  }

  # ECR's registry token is not tied to a repository: AWS accepts only "*" for this action.
  dynamic "statement" {
    for_each = local.container_image_repository_arn == null ? [] : ["*"]

    content {
      sid       = "GetRegistryToken"
      effect    = "Allow"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = var.container_datadog_agent ? [var.datadog_api_key_secret_arn] : []

    content {
      sid       = "ReadDatadogApiKeyForTheAgent"
      effect    = "Allow"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = var.container_datadog_agent ? [var.datadog_api_key_secret_arn] : []

    content {
      sid       = "DecryptDatadogApiKeyForTheAgent"
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
        values   = [statement.value]
      }
    }
  }
}

resource "aws_iam_role_policy" "container_execution" {
  count = local.containers_enabled ? 1 : 0

  name   = "start-forwarder-task"
  role   = aws_iam_role.container_execution[0].id
  policy = data.aws_iam_policy_document.container_execution[0].json
}

# --- network ----------------------------------------------------------------------------------------

# Nothing connects to the forwarder; it calls AWS APIs, ECR and Datadog over HTTPS, and the
# agent sidecar sends to Datadog over HTTPS too. DNS goes to the VPC resolver, which security
# groups do not filter.
resource "aws_security_group" "containers" {
  count = local.containers_enabled ? 1 : 0

  name        = "${var.name_prefix}-forwarder"
  description = "cloud-job-metrics forwarder tasks: no inbound traffic, outbound HTTPS only"
  vpc_id      = var.container_vpc_id

  egress {
    description = "HTTPS to AWS APIs, ECR and the Datadog intake"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

# --- alerts -----------------------------------------------------------------------------------------

resource "aws_sns_topic" "container_alerts" {
  count = local.containers_enabled ? 1 : 0

  name              = "${var.name_prefix}-container-alerts"
  kms_master_key_id = aws_kms_key.this.arn
}

data "aws_iam_policy_document" "container_alerts" {
  count = local.containers_enabled ? 1 : 0

  statement {
    sid       = "TaskStateRulesPublish"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.container_alerts[0].arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:events:${local.region}:${local.account_id}:rule/${var.name_prefix}-*"]
    }
  }

  statement {
    sid       = "QueueAlarmsPublish"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.container_alerts[0].arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:cloudwatch:${local.region}:${local.account_id}:alarm:${var.name_prefix}-*"]
    }
  }
}

resource "aws_sns_topic_policy" "container_alerts" {
  count = local.containers_enabled ? 1 : 0

  arn    = aws_sns_topic.container_alerts[0].arn
  policy = data.aws_iam_policy_document.container_alerts[0].json
}

resource "aws_sns_topic_subscription" "container_alerts_email" {
  for_each = local.containers_enabled ? toset(var.container_alert_email_addresses) : toset([])

  topic_arn = aws_sns_topic.container_alerts[0].arn
  protocol  = "email"
  endpoint  = each.value
}

# Runs that never start, fail, or fall behind all leave messages waiting: the oldest one's age is
# the dead man's switch that needs no run to report anything.
resource "aws_cloudwatch_metric_alarm" "queue_oldest_message" {
  count = local.containers_enabled ? 1 : 0

  alarm_name          = "${var.name_prefix}-jobs-oldest-message"
  alarm_description   = "A job notification has waited more than ${var.queue_age_alarm_seconds} s on ${local.queue_name}: the forwarder does not run, fails, or falls behind."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = var.queue_age_alarm_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.container_alerts[0].arn]
  ok_actions          = [aws_sns_topic.container_alerts[0].arn]

  dimensions = {
    QueueName = aws_sqs_queue.jobs.name
  }
}

# Encrypted SNS topic and dead-letter queue: the services that write to them need the key
# (added to the key policy in kms.tf through source_policy_documents).
data "aws_iam_policy_document" "kms_containers" {
  #checkov:skip=CKV_AWS_109:Key policy: Resource "*" means this key only; the statements admit AWS services, scoped by aws:SourceAccount.
  #checkov:skip=CKV_AWS_111:Key policy: Resource "*" means this key only; the statements admit AWS services, scoped by aws:SourceAccount.
  #checkov:skip=CKV_AWS_356:Key policy: Resource "*" is the only valid resource in a key policy and refers to the key itself.
  count = local.containers_enabled ? 1 : 0

  statement {
    sid       = "AlertsToEncryptedTopic"
    effect    = "Allow"
    actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com", "cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  dynamic "statement" {
    for_each = var.enable_scheduled_task ? ["scheduler.amazonaws.com"] : []

    content {
      sid       = "SchedulerToEncryptedDeadLetterQueue"
      effect    = "Allow"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = ["*"]

      principals {
        type        = "Service"
        identifiers = [statement.value]
      }

      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }
    }
  }
}
