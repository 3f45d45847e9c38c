# Optional: `cloud-job-metrics drain` as an ECS Fargate task that EventBridge Scheduler starts every
# scheduled_task_interval_minutes. Each run drains the queue and exits; at MAX_RUNTIME_SECONDS,
# a minute before the next run is due, it stops receiving, settles what it holds and exits 0, so
# a backlog larger than one interval's work cannot keep runs piling up. What it leaves is the next
# run's work (several drains may share the queue, so a short overlap is harmless).

locals {
  scheduled_task_family           = "${var.name_prefix}-scheduled-drain"
  scheduled_task_interval_seconds = var.scheduled_task_interval_minutes * 60

  # Stop receiving a minute before the next run: time for the last batches, the summary and the
  # agent's flush. 240 s for the default 5-minute schedule.
  scheduled_task_max_runtime_seconds = local.scheduled_task_interval_seconds - 60

  # The scheduler gives up on a RunTask call after half an interval, well before the next run.
  scheduled_task_retry_max_event_age_seconds = max(60, floor(local.scheduled_task_interval_seconds / 2))

  # Every revision of this family, and nothing else, may be run by the scheduler.
  scheduled_task_definition_arn_pattern = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${local.scheduled_task_family}:*"

  scheduled_forwarder_container = merge(local.forwarder_container, {
    command = ["drain"]
    environment = [
      for name, value in merge(
        local.container_forwarder_environment,
        { MAX_RUNTIME_SECONDS = tostring(local.scheduled_task_max_runtime_seconds) },
        var.container_environment,
      ) : { name = name, value = value }
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = local.container_log_group_name
        awslogs-region        = local.region
        awslogs-stream-prefix = "scheduled"
      }
    }
  })
}

resource "aws_ecs_task_definition" "scheduled_drain" {
  #checkov:skip=CKV_AWS_336:The forwarder's root file system is read-only; only the optional datadog-agent sidecar writes its runtime configuration and run files into its own.
  count = var.enable_scheduled_task ? 1 : 0

  family                   = local.scheduled_task_family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.container_cpu)
  memory                   = tostring(var.container_memory_mb)
  task_role_arn            = aws_iam_role.container_task[0].arn
  execution_role_arn       = aws_iam_role.container_execution[0].arn

  container_definitions = jsonencode(concat(
    [local.scheduled_forwarder_container],
    var.container_datadog_agent ? [local.agent_container] : [],
  ))

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.container_cpu_architecture
  }

  volume {
    name = "tmp"
  }

  dynamic "volume" {
    for_each = var.container_datadog_agent ? ["dogstatsd-socket"] : []

    content {
      name = volume.value
    }
  }
}

# --- the schedule -----------------------------------------------------------------------------------

# Invocations the scheduler could not deliver (RunTask refused after the retries) land here.
resource "aws_sqs_queue" "schedule_dlq" {
  count = var.enable_scheduled_task ? 1 : 0

  name                              = "${var.name_prefix}-schedule-dlq"
  message_retention_seconds         = 1209600 # 14 days, the maximum
  kms_master_key_id                 = aws_kms_key.this.arn
  kms_data_key_reuse_period_seconds = 300
}

data "aws_iam_policy_document" "scheduler_assume_role" {
  count = var.enable_scheduled_task ? 1 : 0

  statement {
    sid     = "SchedulerAssumeRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  count = var.enable_scheduled_task ? 1 : 0

  name               = "${var.name_prefix}-scheduler"
  description        = "cloud-job-metrics: EventBridge Scheduler starts the scheduled drain task"
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume_role[0].json
}

data "aws_iam_policy_document" "scheduler" {
  count = var.enable_scheduled_task ? 1 : 0

  statement {
    sid       = "RunScheduledDrain"
    effect    = "Allow"
    actions   = ["ecs:RunTask"]
    resources = [local.scheduled_task_definition_arn_pattern]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.containers[0].arn]
    }
  }

  # RunTask hands both roles to ECS; without PassRole on each the task never starts.
  statement {
    sid     = "PassTaskRoles"
    effect  = "Allow"
    actions = ["iam:PassRole"]
    resources = [
      aws_iam_role.container_task[0].arn,
      aws_iam_role.container_execution[0].arn,
    ]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  # Managed and propagated tags are set by RunTask, which then needs TagResource on the new task.
  statement {
    sid       = "TagScheduledDrain"
    effect    = "Allow"
    actions   = ["ecs:TagResource"]
    resources = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${local.container_cluster_name}/*"]

    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RunTask"]
    }
  }

  statement {
    sid       = "SendUndeliveredRuns"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.schedule_dlq[0].arn]
  }

  statement {
    sid       = "EncryptUndeliveredRuns"
    effect    = "Allow"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.this.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["sqs.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "scheduler" {
  count = var.enable_scheduled_task ? 1 : 0

  name   = "run-scheduled-drain"
  role   = aws_iam_role.scheduler[0].id
  policy = data.aws_iam_policy_document.scheduler[0].json
}

resource "aws_scheduler_schedule" "scheduled_drain" {
  #checkov:skip=CKV_AWS_297:The schedule stores no data beyond the task definition ARN and the network settings; a customer-managed key on it would only add a KMS dependency to every run.
  count = var.enable_scheduled_task ? 1 : 0

  name                = local.scheduled_task_family
  description         = "Start a cloud-job-metrics drain every ${var.scheduled_task_interval_minutes} minutes"
  schedule_expression = "rate(${var.scheduled_task_interval_minutes} minutes)"

  # On time, every time: a flexible window would let runs drift and bunch up.
  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_ecs_cluster.containers[0].arn
    role_arn = aws_iam_role.scheduler[0].arn

    ecs_parameters {
      task_definition_arn     = aws_ecs_task_definition.scheduled_drain[0].arn
      launch_type             = "FARGATE"
      task_count              = 1
      propagate_tags          = "TASK_DEFINITION"
      enable_ecs_managed_tags = true

      network_configuration {
        subnets          = var.container_subnet_ids
        security_groups  = [aws_security_group.containers[0].id]
        assign_public_ip = var.container_assign_public_ip
      }
    }

    # A retried RunTask that starts after the next run is due would only duplicate it.
    retry_policy {
      maximum_event_age_in_seconds = local.scheduled_task_retry_max_event_age_seconds
      maximum_retry_attempts       = var.scheduled_task_retry_attempts
    }

    dead_letter_config {
      arn = aws_sqs_queue.schedule_dlq[0].arn
    }
  }

  depends_on = [aws_iam_role_policy.scheduler]
}

# --- alerts -----------------------------------------------------------------------------------------

# A run that could not start (image pull, secrets, network: stop code TaskFailedToStart) or whose
# forwarder exited non-zero (1: rejected or retried messages; 2: configuration, access denied) is
# an ECS event, not a scheduler error: this rule turns it into a notification.
resource "aws_cloudwatch_event_rule" "scheduled_drain_stopped" {
  count = var.enable_scheduled_task ? 1 : 0

  name        = "${var.name_prefix}-scheduled-drain-stopped"
  description = "A scheduled cloud-job-metrics drain failed to start or its forwarder exited non-zero"

  event_pattern = jsonencode({
    source        = ["aws.ecs"]
    "detail-type" = ["ECS Task State Change"]
    detail = {
      clusterArn        = [aws_ecs_cluster.containers[0].arn]
      lastStatus        = ["STOPPED"]
      taskDefinitionArn = [{ prefix = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${local.scheduled_task_family}:" }]
      "$or" = [
        { stopCode = ["TaskFailedToStart"] },
        { containers = { name = [local.forwarder_container_name], exitCode = [{ "anything-but" = 0 }] } },
      ]
    }
  })
}

# A run the scheduler could not start at all (RunTask refused after the retries: a missing
# permission, throttling, an invalid network setting) leaves no ECS event, only this queue's message.
resource "aws_cloudwatch_metric_alarm" "schedule_dlq_not_empty" {
  count = var.enable_scheduled_task ? 1 : 0

  alarm_name          = "${var.name_prefix}-schedule-dlq-not-empty"
  alarm_description   = "EventBridge Scheduler could not start a scheduled drain; the reason is in the message on ${aws_sqs_queue.schedule_dlq[0].name}."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.container_alerts[0].arn]
  ok_actions          = [aws_sns_topic.container_alerts[0].arn]

  dimensions = {
    QueueName = aws_sqs_queue.schedule_dlq[0].name
  }
}

resource "aws_cloudwatch_event_target" "scheduled_drain_stopped" {
  count = var.enable_scheduled_task ? 1 : 0

  rule = aws_cloudwatch_event_rule.scheduled_drain_stopped[0].name
  arn  = aws_sns_topic.container_alerts[0].arn
}
