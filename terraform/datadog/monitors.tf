# Monitors on the job counter (a distribution, counted with count:), the forwarder's health
# metrics (per-batch distributions, summed with sum:) and the AWS integration's queue metrics.
# Every message uses Datadog's template variables ({{#is_alert}}, {{value}}, {{job.name}}) and
# ends with var.notification_handles.

resource "datadog_monitor" "job_failed" {
  name  = "[cloud-job-metrics] Job {{job.name}} failed"
  type  = "query alert"
  query = "sum(${var.job_failure_window}):count:${local.runs_metric}{${var.job_scope},status:failure} by {job}.as_count() > 0"

  message = <<-EOT
    {{#is_alert}}Job {{job.name}} failed {{value}} time(s) within ${var.job_failure_window}.{{/is_alert}}
    {{#is_recovery}}Job {{job.name}} has not failed within ${var.job_failure_window}.{{/is_recovery}}

    Each failure is also an event titled "Job {{job.name}} failed" whose text names the job file in S3.
    ${local.notify}
  EOT

  monitor_thresholds {
    critical = 0
  }

  tags                = var.monitor_tags
  priority            = var.monitor_priority
  include_tags        = true
  notify_no_data      = false
  require_full_window = false
  renotify_interval   = var.renotify_interval_minutes
}

resource "datadog_monitor" "failure_rate" {
  name  = "[cloud-job-metrics] Failure rate of job {{job.name}} is high"
  type  = "query alert"
  query = "sum(${var.failure_rate_window}):100 * count:${local.runs_metric}{${var.job_scope},status:failure} by {job}.as_count() / count:${local.runs_metric}{${var.job_scope}} by {job}.as_count() > ${var.failure_rate_critical_percent}"

  message = <<-EOT
    {{#is_alert}}{{value}}% of the runs of job {{job.name}} failed within ${var.failure_rate_window} (alert above {{threshold}}%).{{/is_alert}}
    {{#is_warning}}{{value}}% of the runs of job {{job.name}} failed within ${var.failure_rate_window} (warning above {{warn_threshold}}%).{{/is_warning}}
    {{#is_recovery}}The failure rate of job {{job.name}} is back under {{warn_threshold}}%.{{/is_recovery}}

    The rate is failed runs over all runs of the job, from the job counter ${local.runs_metric}.
    ${local.notify}
  EOT

  monitor_thresholds {
    critical = var.failure_rate_critical_percent
    warning  = var.failure_rate_warning_percent
  }

  tags                = var.monitor_tags
  priority            = var.monitor_priority
  include_tags        = true
  notify_no_data      = false
  require_full_window = false
  renotify_interval   = var.renotify_interval_minutes
}

resource "datadog_monitor" "lag" {
  name  = "[cloud-job-metrics] Forwarding lag is high"
  type  = "query alert"
  query = "min(${var.lag_window}):max:${local.lag_metric}{${var.health_scope}} > ${var.lag_critical_seconds}"

  message = <<-EOT
    {{#is_alert}}Every batch forwarded within ${var.lag_window} reached Datadog more than {{threshold}} s after its S3 event (now {{value}} s).{{/is_alert}}
    {{#is_warning}}Batches forwarded within ${var.lag_window} reached Datadog more than {{warn_threshold}} s after their S3 events (now {{value}} s).{{/is_warning}}
    {{#is_recovery}}The forwarding lag is back under {{warn_threshold}} s.{{/is_recovery}}

    Lag grows when the forwarder runs too rarely or too slowly for the traffic, or retries messages
    (see the failures by reason on the dashboard). Gauges of jobs older than an hour are not sent.
    ${local.notify}
  EOT

  monitor_thresholds {
    critical = var.lag_critical_seconds
    warning  = var.lag_warning_seconds
  }

  tags                = var.monitor_tags
  priority            = var.monitor_priority
  include_tags        = true
  notify_no_data      = false
  require_full_window = false
  renotify_interval   = var.renotify_interval_minutes
}

resource "datadog_monitor" "dlq_not_empty" {
  name  = "[cloud-job-metrics] Dead-letter queue ${var.dlq_name} is not empty"
  type  = "query alert"
  query = "max(last_15m):max:${local.sqs_visible}{queuename:${var.dlq_name}} > 0"

  message = <<-EOT
    {{#is_alert}}{{value}} message(s) wait in the dead-letter queue ${var.dlq_name}.{{/is_alert}}
    {{#is_recovery}}The dead-letter queue ${var.dlq_name} is empty again.{{/is_recovery}}

    Each message carries the attributes reason and detail; the "job metadata rejected" events name
    the same reasons. Fix the input or the configuration, then redrive or delete the messages.
    ${local.notify}
  EOT

  monitor_thresholds {
    critical = 0
  }

  tags                = var.monitor_tags
  priority            = var.monitor_priority
  include_tags        = true
  notify_no_data      = false
  require_full_window = false
  evaluation_delay    = var.aws_evaluation_delay_seconds
  renotify_interval   = var.renotify_interval_minutes
}

# "The forwarder is silent while the queue is not empty" is the composite of two monitors that
# notify nobody themselves. Both use the same evaluation delay, so they look at the same minutes.
resource "datadog_monitor" "queue_backlog" {
  name  = "[cloud-job-metrics] Job queue ${var.queue_name} held messages for ${var.silence_window}"
  type  = "query alert"
  query = "min(${var.silence_window}):min:${local.sqs_visible}{queuename:${var.queue_name}} > 0"

  message = <<-EOT
    Part of the composite monitor "[cloud-job-metrics] Forwarder silent while the job queue is not empty"; it notifies nobody itself.
  EOT

  monitor_thresholds {
    critical = 0
  }

  tags                = var.monitor_tags
  priority            = 5
  notify_no_data      = false
  require_full_window = false
  evaluation_delay    = var.aws_evaluation_delay_seconds
}

resource "datadog_monitor" "forwarder_idle" {
  name = "[cloud-job-metrics] Forwarder handled no message for ${var.silence_window}"
  type = "query alert"
  # sum: of the per-batch values is the number of messages; default_zero: a forwarder that sends
  # nothing at all evaluates to 0 (an alert), not to No Data.
  query = "sum(${var.silence_window}):default_zero(sum:${local.messages_metric}{${var.health_scope}}.as_count()) < 1"

  message = <<-EOT
    Part of the composite monitor "[cloud-job-metrics] Forwarder silent while the job queue is not empty"; it notifies nobody itself.
  EOT

  monitor_thresholds {
    critical = 1
  }

  tags                = var.monitor_tags
  priority            = 5
  notify_no_data      = false
  require_full_window = false
  evaluation_delay    = var.aws_evaluation_delay_seconds
}

resource "datadog_monitor" "forwarder_silent" {
  name  = "[cloud-job-metrics] Forwarder silent while the job queue is not empty"
  type  = "composite"
  query = "${datadog_monitor.queue_backlog.id} && ${datadog_monitor.forwarder_idle.id}"

  message = <<-EOT
    {{#is_alert}}The job queue ${var.queue_name} has held messages for ${var.silence_window} and no forwarder handled any.{{/is_alert}}
    {{#is_recovery}}The forwarder handles messages again, or the job queue is empty.{{/is_recovery}}

    Check that the scheduled drain runs (or the consumer Lambda's event source mapping is enabled),
    that it reaches the DogStatsD agent, and its last summary line and exit code.
    ${local.notify}
  EOT

  tags              = var.monitor_tags
  priority          = var.monitor_priority
  include_tags      = true
  renotify_interval = var.renotify_interval_minutes
}
