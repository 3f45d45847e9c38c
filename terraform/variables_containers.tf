# Inputs of the two container paths: the scheduled drain (scheduled_task.tf) and the autoscaled
# poller service (poller_service.tf), with what they share (containers.tf). Both are off by default.

variable "enable_scheduled_task" {
  description = "Run `cloud-job-metrics drain` as an ECS Fargate task started by an EventBridge Scheduler schedule every scheduled_task_interval_minutes."
  type        = bool
  default     = false

  validation {
    condition     = !var.enable_scheduled_task || var.datadog_api_key_secret_arn != null
    error_message = "enable_scheduled_task needs datadog_api_key_secret_arn: the forwarder (SINK=api) or the agent sidecar reads the Datadog API key from it."
  }
}

variable "enable_poller_service" {
  description = "Run `cloud-job-metrics drain --follow` as an ECS Fargate service whose task count follows the job queue's backlog per task."
  type        = bool
  default     = false

  validation {
    condition     = !var.enable_poller_service || var.datadog_api_key_secret_arn != null
    error_message = "enable_poller_service needs datadog_api_key_secret_arn: the forwarder (SINK=api) or the agent sidecar reads the Datadog API key from it."
  }
}

variable "container_image" {
  description = "The forwarder's image by digest, <repository>@sha256:<64 hex digits> (the tag of a multi-arch build may move; the digest cannot). Required with either container path."
  type        = string
  default     = null

  validation {
    condition     = var.container_image == null || can(regex("^[^@[:space:]]+@sha256:[0-9a-f]{64}$", coalesce(var.container_image, "x")))
    error_message = "container_image must name the image by digest: <repository>@sha256:<64 lowercase hex digits>."
  }

  validation {
    condition     = !(var.enable_scheduled_task || var.enable_poller_service) || var.container_image != null
    error_message = "enable_scheduled_task and enable_poller_service need container_image (<repository>@sha256:<digest>)."
  }
}

variable "container_cpu_architecture" {
  description = "CPU architecture of the Fargate tasks; the image must contain it (make image builds linux/amd64 and linux/arm64). ARM64 costs about 20 % less."
  type        = string
  default     = "ARM64"

  validation {
    condition     = contains(["ARM64", "X86_64"], var.container_cpu_architecture)
    error_message = "container_cpu_architecture must be ARM64 or X86_64."
  }
}

variable "container_cpu" {
  description = "CPU units of each task (1024 = 1 vCPU). The forwarder needs about 2 ms of CPU per message."
  type        = number
  default     = 256

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.container_cpu)
    error_message = "container_cpu must be a Fargate CPU size: 256, 512, 1024, 2048 or 4096."
  }
}

variable "container_memory_mb" {
  description = "Memory of each task in MiB; must be a size Fargate pairs with container_cpu (256 CPU: 512, 1024 or 2048). A quarter of it bounds the objects held in flight."
  type        = number
  default     = 512

  # The CPU and memory pairs Fargate accepts (Linux).
  validation {
    condition = contains(lookup({
      "256"  = [512, 1024, 2048]
      "512"  = [1024, 2048, 3072, 4096]
      "1024" = [for gb in range(2, 9) : gb * 1024]
      "2048" = [for gb in range(4, 17) : gb * 1024]
      "4096" = [for gb in range(8, 31) : gb * 1024]
    }, tostring(var.container_cpu), []), var.container_memory_mb)
    error_message = "container_memory_mb must be a size Fargate pairs with container_cpu: 256 with 512, 1024 or 2048; 512 with 1024-4096; 1024 with 2048-8192; 2048 with 4096-16384; 4096 with 8192-30720 (in steps of 1024)."
  }
}

variable "container_vpc_id" {
  description = "VPC of the tasks' security group. Required with either container path."
  type        = string
  default     = null

  validation {
    condition     = !(var.enable_scheduled_task || var.enable_poller_service) || var.container_vpc_id != null
    error_message = "enable_scheduled_task and enable_poller_service need container_vpc_id."
  }
}

variable "container_subnet_ids" {
  description = "Subnets of the tasks (awsvpc). They need a route to SQS, S3, ECR, CloudWatch Logs, Secrets Manager and Datadog: a NAT gateway (private subnets) or container_assign_public_ip (public subnets)."
  type        = list(string)
  default     = []

  validation {
    condition     = !(var.enable_scheduled_task || var.enable_poller_service) || length(var.container_subnet_ids) > 0
    error_message = "enable_scheduled_task and enable_poller_service need at least one subnet in container_subnet_ids."
  }
}

variable "container_assign_public_ip" {
  description = "Give each task a public IP (only for public subnets without a NAT gateway; a task in a public subnet without one cannot pull its image)."
  type        = bool
  default     = false
}

variable "container_datadog_agent" {
  description = "Send metrics through a datadog-agent sidecar over DogStatsD on a shared Unix socket (SINK=dogstatsd) instead of the HTTP API (SINK=api, acknowledged by the intake, the default)."
  type        = bool
  default     = false
}

variable "datadog_agent_image" {
  description = "The datadog-agent sidecar's image, pinned to a release (or a digest). 7.83.0 has dogstatsd_flush_incomplete_buckets, which flushes the open 10 s bucket when the task stops."
  type        = string
  default     = "public.ecr.aws/datadog/agent:7.83.0"

  validation {
    condition     = can(regex("(:[0-9]+\\.[0-9]+\\.[0-9]+(-[0-9A-Za-z.]+)?|@sha256:[0-9a-f]{64})$", var.datadog_agent_image))
    error_message = "datadog_agent_image must be pinned: a release tag such as :7.83.0 or a @sha256: digest, never latest or a bare major version."
  }
}

variable "container_environment" {
  description = "Extra forwarder settings for both container paths (METRIC_NAMESPACE, CONSTANT_TAGS, FIELDS ...). They override the module's values."
  type        = map(string)
  default     = {}

  validation {
    condition     = !contains(keys(var.container_environment), "DD_API_KEY")
    error_message = "Do not pass DD_API_KEY in plain text; the key comes from datadog_api_key_secret_arn."
  }
}

variable "container_alert_email_addresses" {
  description = "Email addresses subscribed to the container alerts topic (each must confirm). Other subscribers can use the container_alerts_topic_arn output."
  type        = list(string)
  default     = []
}

variable "queue_age_alarm_seconds" {
  description = "Age of the job queue's oldest message that raises the CloudWatch alarm: runs that never start, fail or fall behind all let it grow. Keep it above two schedule intervals."
  type        = number
  default     = 900

  validation {
    condition     = var.queue_age_alarm_seconds >= 120
    error_message = "queue_age_alarm_seconds must be at least 120."
  }
}

# --- scheduled drain --------------------------------------------------------------------------------

variable "scheduled_task_interval_minutes" {
  description = "Minutes between scheduled drains. Each run stops receiving a minute before the next is due (MAX_RUNTIME_SECONDS)."
  type        = number
  default     = 5

  validation {
    condition     = var.scheduled_task_interval_minutes >= 2 && var.scheduled_task_interval_minutes <= 1440 && floor(var.scheduled_task_interval_minutes) == var.scheduled_task_interval_minutes
    error_message = "scheduled_task_interval_minutes must be a whole number between 2 and 1440."
  }
}

variable "scheduled_task_retry_attempts" {
  description = "How often the scheduler retries a RunTask call that failed (throttling, capacity) within half an interval, before the invocation goes to the schedule's dead-letter queue."
  type        = number
  default     = 2

  validation {
    condition     = var.scheduled_task_retry_attempts >= 0 && var.scheduled_task_retry_attempts <= 185 && floor(var.scheduled_task_retry_attempts) == var.scheduled_task_retry_attempts
    error_message = "scheduled_task_retry_attempts must be a whole number between 0 and 185."
  }
}

# --- poller service ---------------------------------------------------------------------------------

variable "poller_min_tasks" {
  description = "Fewest poller tasks. 1 keeps a poller listening; 0 lets the service sleep when the queue is empty, and a step policy wakes it when messages arrive."
  type        = number
  default     = 1

  validation {
    condition     = var.poller_min_tasks >= 0 && floor(var.poller_min_tasks) == var.poller_min_tasks
    error_message = "poller_min_tasks must be a whole number of at least 0."
  }
}

variable "poller_max_tasks" {
  description = "Most poller tasks the backlog may scale the service to."
  type        = number
  default     = 4

  validation {
    condition     = var.poller_max_tasks >= 1 && var.poller_max_tasks >= var.poller_min_tasks && floor(var.poller_max_tasks) == var.poller_max_tasks
    error_message = "poller_max_tasks must be a whole number of at least 1 and at least poller_min_tasks."
  }
}

variable "poller_acceptable_delay_seconds" {
  description = "How long a message may wait on the queue; with poller_seconds_per_message it sets the backlog per task the service scales to keep."
  type        = number
  default     = 60

  validation {
    condition     = var.poller_acceptable_delay_seconds >= 10
    error_message = "poller_acceptable_delay_seconds must be at least 10."
  }
}

variable "poller_seconds_per_message" {
  description = "Time one poller task needs per message. The benchmark measured about 300 messages/s (0.0033 s) for one process on 2 cores at 20-60 ms round trips; the default assumes a 0.25 vCPU task does a sixth of that."
  type        = number
  default     = 0.02

  validation {
    condition     = var.poller_seconds_per_message > 0 && var.poller_seconds_per_message <= var.poller_acceptable_delay_seconds
    error_message = "poller_seconds_per_message must be positive and at most poller_acceptable_delay_seconds."
  }
}
