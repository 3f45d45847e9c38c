# Example inputs for the autoscaled poller service on ECS Fargate, here with the datadog-agent
# sidecar and allowed to sleep at zero tasks (copy, then replace the IDs, the ARN and the digest).
# The test suite also scans the module with these values, so checkov covers it.
aws_region                      = "eu-west-1"
tags                            = { product = "cloud-job-metrics", team = "data-platform" }
enable_generator                = false
enable_poller_service           = true
container_image                 = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/cloud-job-metrics@sha256:4f1c7e9a0b3d2c5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6"
container_cpu_architecture      = "ARM64"
container_cpu                   = 512
container_memory_mb             = 1024
container_vpc_id                = "vpc-0a1b2c3d4e5f60718"
container_subnet_ids            = ["subnet-0a1b2c3d4e5f60718", "subnet-0f1e2d3c4b5a69788"]
container_datadog_agent         = true
datadog_agent_image             = "public.ecr.aws/datadog/agent:7.83.0"
datadog_api_key_secret_arn      = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:datadog-api-key-AbCdEf"
datadog_site                    = "datadoghq.eu"
poller_min_tasks                = 0
poller_max_tasks                = 8
poller_acceptable_delay_seconds = 60
poller_seconds_per_message      = 0.01
