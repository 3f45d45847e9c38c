# Example inputs for the optional consumer Lambda (copy, then replace the ARNs and the path).
# The test suite also scans the module with these values, so checkov covers the consumer resources.
aws_region                   = "eu-west-1"
tags                         = { product = "cloud-job-metrics", team = "data-platform" }
enable_consumer_lambda       = true
consumer_package_path        = "build/forwarder.zip"
consumer_architecture        = "x86_64"
consumer_timeout_seconds     = 60
consumer_maximum_concurrency = 5
datadog_extension_layer_arn  = "arn:aws:lambda:eu-west-1:464622532012:layer:Datadog-Extension:65"
datadog_api_key_secret_arn   = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:datadog-api-key-AbCdEf"
datadog_site                 = "datadoghq.eu"
