resource "datadog_dashboard_json" "forwarder" {
  dashboard = jsonencode(local.dashboard)
}
