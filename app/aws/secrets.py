"""The Datadog API key from AWS Secrets Manager, read once at start-up (as the Datadog Forwarder does)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from app.errors import ConfigurationError
from app.settings import Secret


def read_api_key(secrets_client: Any, secret_arn: str) -> Secret:
    """``GetSecretValue`` of ``secret_arn``: its ``SecretString``, stripped, as a :class:`Secret`.

    Every failure is a configuration error (exit 2): without the key nothing can be delivered.
    The error names the ARN and AWS's error code, never the value.
    """
    try:
        answer = secrets_client.get_secret_value(SecretId=secret_arn)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ConfigurationError(f"cannot read DD_API_KEY_SECRET_ARN {secret_arn}: {code}") from None
    except BotoCoreError as exc:
        raise ConfigurationError(
            f"cannot read DD_API_KEY_SECRET_ARN {secret_arn}: {type(exc).__name__}"
        ) from None
    value = (answer.get("SecretString") or "").strip()
    if not value:
        raise ConfigurationError(f"the secret {secret_arn} holds no SecretString")
    return Secret(value)
