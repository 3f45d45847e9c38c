variable "aws_region" {
  description = "Region to deploy into. Null uses AWS_REGION or the profile's region."
  type        = string
  default     = null
}

variable "name_prefix" {
  description = "Prefix for every named resource (queues, functions, roles, policy, log groups)."
  type        = string
  default     = "cloud-job-metrics"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,30}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-32 characters of lowercase letters, digits and hyphens, not starting or ending with a hyphen."
  }
}

variable "tags" {
  description = "Tags applied to every resource through the provider's default_tags."
  type        = map(string)
  default     = {}
}

# --- bucket -----------------------------------------------------------------------------------------

variable "bucket_name" {
  description = "Exact name of the job-results bucket. Null lets AWS generate a unique name from name_prefix."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)."
  }
}

variable "bucket_force_destroy" {
  description = "Allow terraform destroy to delete the bucket with all object versions in it (demo/test stacks only)."
  type        = bool
  default     = false
}

variable "job_results_prefix" {
  description = "Key prefix the batch jobs write under; the notification, the generator and the forwarder's read access use it. Empty for the whole bucket."
  type        = string
  default     = "jobs/"

  validation {
    condition     = !startswith(var.job_results_prefix, "/") && length(var.job_results_prefix) <= 512
    error_message = "job_results_prefix must not start with '/' and must be at most 512 characters."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which overwritten (noncurrent) object versions are deleted."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a whole number of at least 1."
  }
}

variable "access_log_bucket" {
  description = "Name of an existing bucket that receives S3 server access logs for the job-results bucket. Null disables access logging."
  type        = string
  default     = null
}

# --- queue ------------------------------------------------------------------------------------------

variable "queue_visibility_timeout_seconds" {
  description = "Visibility timeout of the job queue for the CLI forwarder. With the consumer Lambda on, the module raises it to at least 6x the function timeout plus the batching window."
  type        = number
  default     = 120

  validation {
    condition     = var.queue_visibility_timeout_seconds >= 30 && var.queue_visibility_timeout_seconds <= 43200
    error_message = "queue_visibility_timeout_seconds must be between 30 and 43200 (12 hours)."
  }
}

variable "queue_message_retention_seconds" {
  description = "How long an unprocessed notification stays on the job queue."
  type        = number
  default     = 345600 # 4 days

  validation {
    condition     = var.queue_message_retention_seconds >= 60 && var.queue_message_retention_seconds <= 1209600
    error_message = "queue_message_retention_seconds must be between 60 and 1209600 (14 days)."
  }
}

variable "dlq_message_retention_seconds" {
  description = "How long a rejected message stays on the dead-letter queue; keep it longer than the job queue's retention."
  type        = number
  default     = 1209600 # 14 days, the maximum

  validation {
    condition     = var.dlq_message_retention_seconds >= 60 && var.dlq_message_retention_seconds <= 1209600
    error_message = "dlq_message_retention_seconds must be between 60 and 1209600 (14 days)."
  }
}

variable "max_receive_count" {
  description = "Deliveries of one message before SQS moves it to the dead-letter queue (redrive maxReceiveCount)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000 && floor(var.max_receive_count) == var.max_receive_count
    error_message = "max_receive_count must be a whole number between 1 and 1000."
  }
}

# --- encryption -------------------------------------------------------------------------------------

variable "kms_deletion_window_days" {
  description = "Waiting period before the module's KMS key is deleted after destroy."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

# --- Lambda functions (shared) ----------------------------------------------------------------------

variable "lambda_runtime" {
  description = "Python runtime of the generator and consumer functions."
  type        = string
  default     = "python3.12"

  validation {
    condition     = contains(["python3.12", "python3.13"], var.lambda_runtime)
    error_message = "lambda_runtime must be python3.12 or python3.13."
  }
}

variable "log_retention_days" {
  description = "Retention of the functions' CloudWatch log groups."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention period CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}

variable "lambda_tracing_mode" {
  description = "X-Ray tracing mode of both functions: PassThrough (no sampling of its own) or Active (also grants X-Ray write access)."
  type        = string
  default     = "PassThrough"

  validation {
    condition     = contains(["PassThrough", "Active"], var.lambda_tracing_mode)
    error_message = "lambda_tracing_mode must be PassThrough or Active."
  }
}

# --- generator Lambda -------------------------------------------------------------------------------

variable "enable_generator" {
  description = "Deploy the scheduled generator Lambda that writes random job metadata (for demos and end-to-end checks; turn off in production)."
  type        = bool
  default     = true
}

variable "generator_schedule_expression" {
  description = "EventBridge schedule of the generator."
  type        = string
  default     = "rate(1 minute)"

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.generator_schedule_expression))
    error_message = "generator_schedule_expression must be an EventBridge rate(...) or cron(...) expression."
  }
}

# --- consumer Lambda --------------------------------------------------------------------------------

variable "enable_consumer_lambda" {
  description = "Deploy the forwarder as a Lambda function fed by an SQS event source mapping (the CLI forwarder needs none of it)."
  type        = bool
  default     = false
}

variable "consumer_package_path" {
  description = "Path of the forwarder's deployment zip (the app package and its dependencies, built outside Terraform). Required when enable_consumer_lambda is true."
  type        = string
  default     = null

  validation {
    condition     = var.consumer_package_path == null || endswith(coalesce(var.consumer_package_path, "x"), ".zip")
    error_message = "consumer_package_path must point at a .zip file."
  }

  validation {
    condition     = !var.enable_consumer_lambda || var.consumer_package_path != null
    error_message = "enable_consumer_lambda needs consumer_package_path (the forwarder's deployment zip)."
  }
}

variable "consumer_architecture" {
  description = "Instruction set of the consumer function; must match the compiled wheels in the package and the Datadog extension layer."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.consumer_architecture)
    error_message = "consumer_architecture must be x86_64 or arm64."
  }
}

variable "consumer_timeout_seconds" {
  description = "Timeout of the consumer function; the queue's visibility timeout follows it (6x plus the batching window)."
  type        = number
  default     = 60

  validation {
    condition     = var.consumer_timeout_seconds >= 3 && var.consumer_timeout_seconds <= 900
    error_message = "consumer_timeout_seconds must be between 3 and 900."
  }
}

variable "consumer_memory_mb" {
  description = "Memory of the consumer function (CPU scales with it)."
  type        = number
  default     = 512

  validation {
    condition     = var.consumer_memory_mb >= 128 && var.consumer_memory_mb <= 10240
    error_message = "consumer_memory_mb must be between 128 and 10240."
  }
}

variable "consumer_batch_size" {
  description = "Maximum messages per invocation. Above 10 a batching window of at least 1 second is required."
  type        = number
  default     = 10

  validation {
    condition     = var.consumer_batch_size >= 1 && var.consumer_batch_size <= 10000
    error_message = "consumer_batch_size must be between 1 and 10000."
  }
}

variable "consumer_batching_window_seconds" {
  description = "How long the event source mapping gathers messages before invoking (MaximumBatchingWindowInSeconds)."
  type        = number
  default     = 5

  validation {
    condition     = var.consumer_batching_window_seconds >= 0 && var.consumer_batching_window_seconds <= 300
    error_message = "consumer_batching_window_seconds must be between 0 and 300."
  }

  validation {
    condition     = var.consumer_batch_size <= 10 || var.consumer_batching_window_seconds >= 1
    error_message = "consumer_batch_size above 10 needs consumer_batching_window_seconds of at least 1."
  }
}

variable "consumer_maximum_concurrency" {
  description = "Upper bound of concurrent consumer invocations the SQS event source may start (scaling_config.maximum_concurrency)."
  type        = number
  default     = 5

  validation {
    condition     = var.consumer_maximum_concurrency >= 2 && var.consumer_maximum_concurrency <= 1000
    error_message = "consumer_maximum_concurrency must be between 2 and 1000 (AWS minimum is 2)."
  }
}

variable "datadog_extension_layer_arn" {
  description = "ARN (with version) of the Datadog Lambda extension layer for the consumer's region and architecture, e.g. arn:aws:lambda:<region>:464622532012:layer:Datadog-Extension:<version>. Required when enable_consumer_lambda is true."
  type        = string
  default     = null

  validation {
    condition     = var.datadog_extension_layer_arn == null || can(regex("^arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:layer:[A-Za-z0-9_-]+:[0-9]+$", coalesce(var.datadog_extension_layer_arn, "x")))
    error_message = "datadog_extension_layer_arn must be a versioned Lambda layer ARN."
  }

  validation {
    condition     = !var.enable_consumer_lambda || var.datadog_extension_layer_arn != null
    error_message = "enable_consumer_lambda needs datadog_extension_layer_arn (the Datadog Lambda extension layer)."
  }
}

variable "datadog_api_key_secret_arn" {
  description = "ARN of the Secrets Manager secret holding the Datadog API key (plain string); the extension reads it at start. Required when enable_consumer_lambda is true."
  type        = string
  default     = null

  validation {
    condition     = var.datadog_api_key_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", coalesce(var.datadog_api_key_secret_arn, "x")))
    error_message = "datadog_api_key_secret_arn must be a Secrets Manager secret ARN."
  }

  validation {
    condition     = !var.enable_consumer_lambda || var.datadog_api_key_secret_arn != null
    error_message = "enable_consumer_lambda needs datadog_api_key_secret_arn (Secrets Manager secret with the Datadog API key)."
  }
}

variable "datadog_site" {
  description = "Datadog site the extension sends to (DD_SITE)."
  type        = string
  default     = "datadoghq.com"

  validation {
    condition     = contains(["datadoghq.com", "us3.datadoghq.com", "us5.datadoghq.com", "datadoghq.eu", "ap1.datadoghq.com", "ap2.datadoghq.com", "ddog-gov.com"], var.datadog_site)
    error_message = "datadog_site must be a known Datadog site, e.g. datadoghq.com or datadoghq.eu."
  }
}

variable "consumer_environment" {
  description = "Extra environment variables for the consumer (forwarder settings such as the metric namespace or constant tags). They override the module's defaults."
  type        = map(string)
  default     = {}

  validation {
    condition     = !contains(keys(var.consumer_environment), "DD_API_KEY")
    error_message = "Do not pass DD_API_KEY in plain text; use datadog_api_key_secret_arn."
  }
}
