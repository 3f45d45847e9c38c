# Optional: `cloud-job-metrics drain --follow` as an ECS Fargate service. Application Auto Scaling
# owns the task count: target tracking keeps the backlog per task (visible messages / running
# tasks) at what one task works off within poller_acceptable_delay_seconds.

locals {
  poller_family       = "${var.name_prefix}-poller"
  poller_service_name = "${var.name_prefix}-poller"

  # Backlog per task = acceptable delay / time per message (AWS's "backlog per task" recipe),
  # rounded (0.02 is not exact in binary): 60 s / 0.02 s = 3,000 messages per task by default.
  poller_target_backlog_per_task = floor(var.poller_acceptable_delay_seconds / var.poller_seconds_per_message + 0.5)

  poller_forwarder_container = merge(local.forwarder_container, {
    command = ["drain", "--follow"]
    environment = [
      for name, value in merge(local.container_forwarder_environment, var.container_environment) : { name = name, value = value }
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = local.container_log_group_name
        awslogs-region        = local.region
        awslogs-stream-prefix = "poller"
      }
    }
  })
}

resource "aws_ecs_task_definition" "poller" {
  #checkov:skip=CKV_AWS_336:The forwarder's root file system is read-only; only the optional datadog-agent sidecar writes its runtime configuration and run files into its own.
  count = var.enable_poller_service ? 1 : 0

  family                   = local.poller_family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.container_cpu)
  memory                   = tostring(var.container_memory_mb)
  task_role_arn            = aws_iam_role.container_task[0].arn
  execution_role_arn       = aws_iam_role.container_execution[0].arn

  container_definitions = jsonencode(concat(
    [local.poller_forwarder_container],
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

resource "aws_ecs_service" "poller" {
  count = var.enable_poller_service ? 1 : 0

  name                    = local.poller_service_name
  cluster                 = aws_ecs_cluster.containers[0].arn
  task_definition         = aws_ecs_task_definition.poller[0].arn
  launch_type             = "FARGATE"
  platform_version        = "LATEST"
  desired_count           = var.poller_min_tasks
  propagate_tags          = "SERVICE"
  enable_ecs_managed_tags = true

  # A new revision starts beside the old tasks; the old ones get SIGTERM and settle their batches.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.container_subnet_ids
    security_groups  = [aws_security_group.containers[0].id]
    assign_public_ip = var.container_assign_public_ip
  }

  # Application Auto Scaling sets the task count; Terraform would reset it on every apply.
  lifecycle {
    ignore_changes = [desired_count]
  }

  depends_on = [aws_iam_role_policy_attachment.container_task_forwarder]
}

# --- scaling ----------------------------------------------------------------------------------------

resource "aws_appautoscaling_target" "poller" {
  count = var.enable_poller_service ? 1 : 0

  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${aws_ecs_cluster.containers[0].name}/${aws_ecs_service.poller[0].name}"
  min_capacity       = var.poller_min_tasks
  max_capacity       = var.poller_max_tasks
}

resource "aws_appautoscaling_policy" "poller_backlog" {
  count = var.enable_poller_service ? 1 : 0

  name               = "${var.name_prefix}-poller-backlog-per-task"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.poller[0].service_namespace
  scalable_dimension = aws_appautoscaling_target.poller[0].scalable_dimension
  resource_id        = aws_appautoscaling_target.poller[0].resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = local.poller_target_backlog_per_task
    scale_out_cooldown = 60
    # Scale in slowly: a stopped task settles what it holds, but a new one pays its start again.
    scale_in_cooldown = 300

    customized_metric_specification {
      metrics {
        id          = "m1"
        label       = "Messages visible on the job queue"
        return_data = false

        metric_stat {
          stat = "Sum"

          metric {
            namespace   = "AWS/SQS"
            metric_name = "ApproximateNumberOfMessagesVisible"

            dimensions {
              name  = "QueueName"
              value = aws_sqs_queue.jobs.name
            }
          }
        }
      }

      metrics {
        id          = "m2"
        label       = "Running poller tasks"
        return_data = false

        metric_stat {
          stat = "Average"

          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"

            dimensions {
              name  = "ClusterName"
              value = aws_ecs_cluster.containers[0].name
            }

            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.poller[0].name
            }
          }
        }
      }

      metrics {
        id          = "e1"
        label       = "Backlog per task"
        expression  = "m1 / m2"
        return_data = true
      }
    }
  }
}

# With no task running, backlog per task has no value and target tracking does nothing: when
# the minimum is 0, this alarm (messages waiting and no task running) sets the count to 1, and
# target tracking takes it from there.
resource "aws_cloudwatch_metric_alarm" "poller_wake" {
  count = var.enable_poller_service && var.poller_min_tasks == 0 ? 1 : 0

  alarm_name          = "${var.name_prefix}-poller-wake"
  alarm_description   = "Messages wait on ${local.queue_name} and no poller task runs: start one."
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.poller_wake[0].arn]

  metric_query {
    id          = "visible"
    return_data = false

    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesVisible"
      period      = 60
      stat        = "Maximum"

      dimensions = {
        QueueName = aws_sqs_queue.jobs.name
      }
    }
  }

  metric_query {
    id          = "running"
    return_data = false

    metric {
      namespace   = "ECS/ContainerInsights"
      metric_name = "RunningTaskCount"
      period      = 60
      stat        = "Maximum"

      dimensions = {
        ClusterName = aws_ecs_cluster.containers[0].name
        ServiceName = aws_ecs_service.poller[0].name
      }
    }
  }

  metric_query {
    id          = "asleep_with_work"
    label       = "Messages visible while no poller task runs"
    expression  = "IF(visible > 0 AND FILL(running, 0) < 1, 1, 0)"
    return_data = true
  }
}

resource "aws_appautoscaling_policy" "poller_wake" {
  count = var.enable_poller_service && var.poller_min_tasks == 0 ? 1 : 0

  name               = "${var.name_prefix}-poller-wake"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.poller[0].service_namespace
  scalable_dimension = aws_appautoscaling_target.poller[0].scalable_dimension
  resource_id        = aws_appautoscaling_target.poller[0].resource_id

  step_scaling_policy_configuration {
    adjustment_type         = "ExactCapacity"
    cooldown                = 60
    metric_aggregation_type = "Maximum"

    step_adjustment {
      metric_interval_lower_bound = 0
      scaling_adjustment          = 1
    }
  }
}

# --- alerts -----------------------------------------------------------------------------------------

# A poller task that could not start, or whose forwarder ended on its own (a crash, or exit 2 for a
# configuration error or refused permission). Tasks stopped by scale-in or a deployment carry
# the stop code ServiceSchedulerInitiated and do not match.
resource "aws_cloudwatch_event_rule" "poller_stopped" {
  count = var.enable_poller_service ? 1 : 0

  name        = "${var.name_prefix}-poller-stopped"
  description = "A cloud-job-metrics poller task failed to start or its forwarder exited on its own"

  event_pattern = jsonencode({
    source        = ["aws.ecs"]
    "detail-type" = ["ECS Task State Change"]
    detail = {
      clusterArn        = [aws_ecs_cluster.containers[0].arn]
      lastStatus        = ["STOPPED"]
      taskDefinitionArn = [{ prefix = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${local.poller_family}:" }]
      stopCode          = ["TaskFailedToStart", "EssentialContainerExited"]
    }
  })
}

resource "aws_cloudwatch_event_target" "poller_stopped" {
  count = var.enable_poller_service ? 1 : 0

  rule = aws_cloudwatch_event_rule.poller_stopped[0].name
  arn  = aws_sns_topic.container_alerts[0].arn
}
