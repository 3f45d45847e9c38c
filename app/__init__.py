"""cloud-job-metrics: job-metadata files announced on SQS become Datadog gauges and events.

The public surface: :class:`CloudResourceHandler` (SQS + S3), :class:`MetricSubmitter`
(DogStatsD, client injected), :func:`drain_queue` (the drain as a function), :class:`Settings`
and the error tree rooted at :class:`CloudJobMetricsError`.
"""

from app.aws.resources import CloudResourceHandler
from app.drain.service import Summary, drain_queue
from app.errors import (
    AgentUnavailableError,
    AwsUnavailableError,
    BucketNotAllowedError,
    CloudJobMetricsError,
    ConfigurationError,
    EnvelopeError,
    InvalidObjectError,
    ObjectNotFoundError,
    PermanentError,
    TransientError,
)
from app.settings import Settings, StatsdTarget
from app.sinks.dogstatsd import MetricSubmitter

__all__ = [
    "AgentUnavailableError",
    "AwsUnavailableError",
    "BucketNotAllowedError",
    "CloudJobMetricsError",
    "CloudResourceHandler",
    "ConfigurationError",
    "EnvelopeError",
    "InvalidObjectError",
    "MetricSubmitter",
    "ObjectNotFoundError",
    "PermanentError",
    "Settings",
    "StatsdTarget",
    "Summary",
    "TransientError",
    "drain_queue",
]
