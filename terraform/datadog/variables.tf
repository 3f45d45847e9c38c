variable "datadog_api_url" {
  description = "Datadog API URL of your site, e.g. https://api.datadoghq.eu/. Null uses DD_HOST or the US1 site."
  type        = string
  default     = null
}

variable "namespace" {
  description = "The forwarder's METRIC_NAMESPACE. Empty when the forwarder runs with an empty namespace."
  type        = string
  default     = "cloud_job"

  validation {
    condition     = var.namespace == "" || can(regex("^[A-Za-z][A-Za-z0-9_.]*[A-Za-z0-9_]$", var.namespace))
    error_message = "namespace must be empty or a metric name prefix: a letter, then letters, digits, _ or ., not ending with a dot."
  }
}

variable "queue_name" {
  description = "Name of the job queue as the AWS integration tags it (queuename:, lower case)."
  type        = string
  default     = "cloud-job-metrics-jobs"

  validation {
    condition     = can(regex("^[a-z0-9_-]{1,80}$", var.queue_name))
    error_message = "queue_name must be an SQS queue name in lower case: Datadog lower-cases tag values."
  }
}

variable "dlq_name" {
  description = "Name of the dead-letter queue as the AWS integration tags it (queuename:, lower case)."
  type        = string
  default     = "cloud-job-metrics-jobs-dlq"

  validation {
    condition     = can(regex("^[a-z0-9_-]{1,80}$", var.dlq_name))
    error_message = "dlq_name must be an SQS queue name in lower case: Datadog lower-cases tag values."
  }
}

variable "job_scope" {
  description = "Tag filter of the job monitors (the part between the braces). Every job metric carries cloud_job_metric; add e.g. env:prod."
  type        = string
  default     = "cloud_job_metric"
}

variable "health_scope" {
  description = "Tag filter of the forwarder-health monitors, e.g. env:prod with CONSTANT_TAGS=env:prod. * for all forwarders."
  type        = string
  default     = "*"
}

variable "dashboard_title" {
  description = "Title of the dashboard."
  type        = string
  default     = "cloud-job-metrics: jobs and forwarder"
}

variable "notification_handles" {
  description = "Who the monitors notify, e.g. [\"@slack-ops-alerts\", \"@pagerduty-batch\"]. Empty: the monitors alert in Datadog only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for handle in var.notification_handles : startswith(handle, "@")])
    error_message = "Every notification handle starts with @."
  }
}

variable "monitor_tags" {
  description = "Tags on every monitor."
  type        = list(string)
  default     = ["service:cloud-job-metrics"]
}

variable "monitor_priority" {
  description = "Priority of the alerting monitors, 1 (highest) to 5."
  type        = number
  default     = 2

  validation {
    condition     = contains([1, 2, 3, 4, 5], var.monitor_priority)
    error_message = "monitor_priority is 1, 2, 3, 4 or 5."
  }
}

variable "renotify_interval_minutes" {
  description = "Minutes after which a monitor still alerting notifies again; 0 never re-notifies."
  type        = number
  default     = 120
}

variable "job_failure_window" {
  description = "Window of the job-failed monitor: any failed job in it alerts, per job."
  type        = string
  default     = "last_15m"

  validation {
    condition     = can(regex("^last_[0-9]+[mhd]$", var.job_failure_window))
    error_message = "job_failure_window is a monitor window such as last_15m, last_1h or last_1d."
  }
}

variable "failure_rate_window" {
  description = "Window over which the failure rate per job is computed."
  type        = string
  default     = "last_4h"

  validation {
    condition     = can(regex("^last_[0-9]+[mhd]$", var.failure_rate_window))
    error_message = "failure_rate_window is a monitor window such as last_1h or last_4h."
  }
}

variable "failure_rate_warning_percent" {
  description = "Failure rate of a job (percent of its runs in the window) that warns."
  type        = number
  default     = 10
}

variable "failure_rate_critical_percent" {
  description = "Failure rate of a job (percent of its runs in the window) that alerts."
  type        = number
  default     = 25

  validation {
    condition     = var.failure_rate_critical_percent > var.failure_rate_warning_percent && var.failure_rate_critical_percent <= 100
    error_message = "failure_rate_critical_percent must lie above failure_rate_warning_percent and at most 100."
  }
}

variable "lag_window" {
  description = "Window over which the lag must stay above a threshold before the lag monitor fires."
  type        = string
  default     = "last_15m"

  validation {
    condition     = can(regex("^last_[0-9]+[mhd]$", var.lag_window))
    error_message = "lag_window is a monitor window such as last_15m."
  }
}

variable "lag_warning_seconds" {
  description = "Lag (S3 event to hand-off) that warns, in seconds."
  type        = number
  default     = 300
}

variable "lag_critical_seconds" {
  description = "Lag (S3 event to hand-off) that alerts, in seconds."
  type        = number
  default     = 900

  validation {
    condition     = var.lag_critical_seconds > var.lag_warning_seconds
    error_message = "lag_critical_seconds must lie above lag_warning_seconds."
  }
}

variable "silence_window" {
  description = "How long the forwarder may handle no message while the job queue holds some. Keep it longer than the interval between scheduled drains."
  type        = string
  default     = "last_30m"

  validation {
    condition     = can(regex("^last_[0-9]+[mhd]$", var.silence_window))
    error_message = "silence_window is a monitor window such as last_30m or last_2h."
  }
}

variable "aws_evaluation_delay_seconds" {
  description = "Evaluation delay of the monitors on aws.sqs metrics: the AWS integration crawls CloudWatch minutes late."
  type        = number
  default     = 900
}
