# Metric names as app/core/catalog.py lists them (the tests read the catalog and check every query).
locals {
  # "<namespace>.": an empty namespace drops the dot too, as the forwarder does.
  job_prefix = var.namespace == "" ? "" : "${var.namespace}."

  # The job counter: a distribution of 1 per job, read with count: (the number of runs).
  runs_metric = "${local.job_prefix}runs"
  # The forwarder's own counters: distributions of one value per batch, read with sum:.
  messages_metric = "cloud_job_metrics.batch.messages"
  lag_metric      = "cloud_job_metrics.lag_seconds"
  sqs_visible     = "aws.sqs.approximate_number_of_messages_visible"

  notify = join(" ", var.notification_handles)
}

# dashboard.json is the one definition of the dashboard (also importable by hand). It names the
# default namespace; the module rewrites "cloud_job." to var.namespace (the health metrics keep
# their fixed cloud_job_metrics prefix, which the word boundary leaves alone) and points the queue
# template variables at var.queue_name and var.dlq_name.
locals {
  dashboard_source = jsondecode(replace(file("${path.module}/dashboard.json"), "/\\bcloud_job\\./", local.job_prefix))

  dashboard_queue_defaults = {
    queue = [var.queue_name]
    dlq   = [var.dlq_name]
  }

  dashboard = merge(local.dashboard_source, {
    title = var.dashboard_title
    template_variables = [
      for template_variable in local.dashboard_source.template_variables : merge(template_variable, {
        defaults = lookup(local.dashboard_queue_defaults, template_variable.name, template_variable.defaults)
      })
    ]
  })
}
