# The dead man's switch for the scheduled drain and the poller service: whatever stops messages
# from being forwarded (a schedule that never fires, a task that cannot start or pull its image,
# a run that exits 2 before deleting anything, a poller crash-looping or too few pollers) lets the
# oldest message on the job queue age. The AWS stack raises the same alarm in CloudWatch
# (queue_age_alarm_seconds); this one reaches the people Datadog notifies.
resource "datadog_monitor" "queue_oldest_message" {
  name  = "[cloud-job-metrics] Job queue ${var.queue_name} has a message waiting too long"
  type  = "query alert"
  query = "min(${var.queue_age_window}):max:aws.sqs.approximate_age_of_oldest_message{queuename:${var.queue_name}} > ${var.queue_age_critical_seconds}"

  message = <<-EOT
    {{#is_alert}}The oldest message on ${var.queue_name} has waited more than {{threshold}} s for all of ${var.queue_age_window} (now {{value}} s).{{/is_alert}}
    {{#is_warning}}The oldest message on ${var.queue_name} has waited more than {{warn_threshold}} s for all of ${var.queue_age_window} (now {{value}} s).{{/is_warning}}
    {{#is_recovery}}Messages on ${var.queue_name} are forwarded again within {{warn_threshold}} s.{{/is_recovery}}

    Scheduled drains are not starting, fail, or fall behind; or the poller service has no healthy task.
    Check the container alerts topic (runs stopped with TaskFailedToStart or a non-zero exit), the
    schedule's dead-letter queue, the forwarder's last summary line in its log group, and the
    backlog per task of the poller service.
    ${local.notify}
  EOT

  monitor_thresholds {
    critical = var.queue_age_critical_seconds
    warning  = var.queue_age_warning_seconds
  }

  tags                = var.monitor_tags
  priority            = var.monitor_priority
  include_tags        = true
  notify_no_data      = false
  require_full_window = false
  evaluation_delay    = var.aws_evaluation_delay_seconds
  renotify_interval   = var.renotify_interval_minutes
}
