output "dashboard_url" {
  description = "Path of the dashboard in the Datadog app."
  value       = datadog_dashboard_json.forwarder.url
}

output "monitor_ids" {
  description = "Id of each monitor, by its name in the module."
  value = {
    job_failed       = datadog_monitor.job_failed.id
    failure_rate     = datadog_monitor.failure_rate.id
    lag              = datadog_monitor.lag.id
    dlq_not_empty    = datadog_monitor.dlq_not_empty.id
    queue_backlog    = datadog_monitor.queue_backlog.id
    forwarder_idle   = datadog_monitor.forwarder_idle.id
    forwarder_silent = datadog_monitor.forwarder_silent.id
  }
}
