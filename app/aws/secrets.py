"""The Datadog API key from AWS Secrets Manager, read at start-up (as the Datadog Forwarder does).

Read again once when the intake refuses the key in use (the secret may have been rotated).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from app.errors import ConfigurationError
from app.settings import Secret, api_key_problem


def read_api_key(secrets_client: Any, secret_arn: str) -> Secret:
    """``GetSecretValue`` of ``secret_arn``: its ``SecretString``, stripped, as a :class:`Secret`.

    Every failure is a configuration error (exit 2): without the key nothing can be delivered.
    The error names the ARN and AWS's error code, never the value; a value that cannot be a key
    (a line break or a space inside, a control character) is one of those failures.
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
    raw = answer.get("SecretString")
    value = raw.strip() if isinstance(raw, str) else ""
    if not value:
        raise ConfigurationError(f"the secret {secret_arn} holds no SecretString")
    problem = api_key_problem(value)
    if problem is not None:
        raise ConfigurationError(
            f"the secret DD_API_KEY_SECRET_ARN {secret_arn} is not a usable Datadog API key: {problem}"
        )
    return Secret(value)
