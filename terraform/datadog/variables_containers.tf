# Inputs of the monitor in monitors_containers.tf: how old the job queue's oldest message may grow.

variable "queue_age_window" {
  description = "Window over which the job queue's oldest message must stay too old before queue_oldest_message fires."
  type        = string
  default     = "last_10m"

  validation {
    condition     = can(regex("^last_[0-9]+[mhd]$", var.queue_age_window))
    error_message = "queue_age_window is a monitor window such as last_10m or last_1h."
  }
}

variable "queue_age_warning_seconds" {
  description = "Age of the job queue's oldest message that warns. Keep it above one schedule interval plus a run (600 s for a 5-minute schedule)."
  type        = number
  default     = 600
}

variable "queue_age_critical_seconds" {
  description = "Age of the job queue's oldest message that alerts: scheduled runs have not started, failed, or fallen behind for several intervals."
  type        = number
  default     = 900

  validation {
    condition     = var.queue_age_critical_seconds > var.queue_age_warning_seconds
    error_message = "queue_age_critical_seconds must lie above queue_age_warning_seconds."
  }
}
