"""The exception tree of cloud-job-metrics.

Every error the package raises on purpose derives from :class:`CloudJobMetricsError`. The two main
branches decide the fate of an SQS message, so foreign exceptions (botocore, pydantic, socket) are
translated into one of them at the boundary where they occur::

    CloudJobMetricsError
    ├── ConfigurationError        bad flags, environment or queue set-up; the CLI exits with 2
    │   └── AccessDeniedError     AWS refused a call: names the API action and the IAM permission
    ├── PermanentError            retrying cannot help: the message goes to the dead-letter queue
    │   ├── EnvelopeError         the SQS body is not a notification we understand
    │   ├── InvalidObjectError    the job-metadata object is not valid (JSON, types, size, depth)
    │   ├── ObjectNotFoundError   the object or the notified version is gone
    │   ├── BucketNotAllowedError the notification names a bucket outside the allow-list
    │   └── PayloadRejectedError  the sink refused this message's data as malformed (HTTP 400)
    └── TransientError            may succeed later: the message comes back after a backoff
        ├── AwsUnavailableError   throttling, 5xx, timeouts, dropped connections
        │   └── EndpointUnreachableError  no connection at all (at start-up: a configuration error)
        ├── AgentUnavailableError the DogStatsD agent did not take the datagrams
        └── IntakeUnavailableError the Datadog HTTP intake did not acknowledge (408, 429, 5xx, no answer)
"""

from __future__ import annotations


class CloudJobMetricsError(Exception):
    """Root of every error raised by this package on purpose; ``reason`` is a short code."""

    reason = "error"


class ConfigurationError(CloudJobMetricsError):
    """The configuration or the queue set-up cannot work; nothing is processed."""


class AccessDeniedError(ConfigurationError):
    """AWS answered access denied: the identity lacks ``permission`` for the API ``action``.

    Raised for every call, mid-run too: the messages in hand are neither deleted nor
    dead-lettered, so they come back after their visibility timeout (nothing is lost).
    """

    reason = "access-denied"

    def __init__(
        self, action: str, permission: str, *, resource: str = "", code: str = "AccessDenied"
    ) -> None:
        where = f" on {resource}" if resource else ""
        super().__init__(f"access denied: {action}{where} needs the IAM permission {permission} ({code})")
        self.action = action
        self.permission = permission


class PermanentError(CloudJobMetricsError):
    """The message can never be processed; retrying would only delay the dead-letter queue.

    ``reason`` is a short machine-friendly code (``invalid-json``, ``object-too-large`` …) that
    travels with the message to the dead-letter queue; the exception text is the human detail.
    """

    reason = "permanent"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class EnvelopeError(PermanentError):
    """The SQS message body is not an S3, SNS or EventBridge notification we can read."""

    reason = "invalid-envelope"


class InvalidObjectError(PermanentError):
    """The job-metadata object violates the format (see DESIGN "Input 2")."""

    reason = "invalid-object"


class ObjectNotFoundError(PermanentError):
    """The notified object or version no longer exists (404, or a 403 that blames s3:ListBucket)."""

    reason = "object-not-found"


class BucketNotAllowedError(PermanentError):
    """The notification names a bucket outside ``ALLOWED_BUCKETS``; the object is not read."""

    reason = "bucket-not-allowed"


class PayloadRejectedError(PermanentError):
    """The sink refused the metrics built from this message as malformed; resending cannot help."""

    reason = "payload-rejected"


class TransientError(CloudJobMetricsError):
    """The work may succeed later; the message is kept and retried after a backoff."""

    reason = "transient"


class AwsUnavailableError(TransientError):
    """An AWS call was throttled, failed on the server side or lost its connection."""

    reason = "aws-unavailable"


class EndpointUnreachableError(AwsUnavailableError):
    """No connection to the AWS endpoint could be made at all.

    Mid-run this is an outage like any other; before anything was processed it usually means a
    wrong endpoint or network set-up, which the drain reports as a configuration error.
    """


class AgentUnavailableError(TransientError):
    """The DogStatsD agent did not accept what was sent (socket error or refused port)."""

    reason = "agent-unavailable"


class IntakeUnavailableError(TransientError):
    """The Datadog HTTP intake did not answer 2xx after the retries (408, 429, 5xx, no connection)."""

    reason = "intake-unavailable"
