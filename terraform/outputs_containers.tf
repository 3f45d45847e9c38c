output "container_cluster_name" {
  description = "ECS cluster of the scheduled drain and the poller service (null when both are off)."
  value       = one(aws_ecs_cluster.containers[*].name)
}

output "container_task_role_arn" {
  description = "Role the forwarder container runs as (the forwarder policy, plus the API-key secret for SINK=api)."
  value       = one(aws_iam_role.container_task[*].arn)
}

output "container_execution_role_arn" {
  description = "Role ECS starts the tasks with (image pull, log streams, the agent's API key)."
  value       = one(aws_iam_role.container_execution[*].arn)
}

output "container_log_group_name" {
  description = "CloudWatch log group of the forwarder's JSON logs (streams scheduled/..., poller/..., agent/...)."
  value       = one(aws_cloudwatch_log_group.containers[*].name)
}

output "container_security_group_id" {
  description = "Security group of the tasks: no ingress, egress 443 only."
  value       = one(aws_security_group.containers[*].id)
}

output "container_alerts_topic_arn" {
  description = "SNS topic of the container alerts (runs that fail to start or fail, the queue's oldest message too old); subscribe to it."
  value       = one(aws_sns_topic.container_alerts[*].arn)
}

output "scheduled_task_definition_arn" {
  description = "Task definition (with revision) the schedule runs (null when enable_scheduled_task is false)."
  value       = one(aws_ecs_task_definition.scheduled_drain[*].arn)
}

output "scheduled_task_schedule_name" {
  description = "EventBridge Scheduler schedule of the drain (null when enable_scheduled_task is false)."
  value       = one(aws_scheduler_schedule.scheduled_drain[*].name)
}

output "scheduled_task_max_runtime_seconds" {
  description = "MAX_RUNTIME_SECONDS of each scheduled run: a minute less than the interval."
  value       = var.enable_scheduled_task ? local.scheduled_task_max_runtime_seconds : null
}

output "schedule_dlq_url" {
  description = "Dead-letter queue of scheduler invocations that could not start a task (null when enable_scheduled_task is false)."
  value       = one(aws_sqs_queue.schedule_dlq[*].id)
}

output "poller_service_name" {
  description = "ECS service of the poller (null when enable_poller_service is false)."
  value       = one(aws_ecs_service.poller[*].name)
}

output "poller_target_backlog_per_task" {
  description = "Backlog per task the poller's target tracking keeps: poller_acceptable_delay_seconds / poller_seconds_per_message."
  value       = var.enable_poller_service ? local.poller_target_backlog_per_task : null
}
