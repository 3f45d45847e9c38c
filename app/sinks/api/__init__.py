"""The Datadog HTTP API sink: a message is deleted only after the intake acknowledged its data.

:class:`ApiSink` does the delivery; :mod:`.payload` builds the requests (pure); :mod:`.retry`
decides when to try again; :mod:`.transport` is the one seam to the network.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from app.errors import ConfigurationError
from app.settings import Secret, Settings
from app.sinks.api.retry import RetryPolicy
from app.sinks.api.sink import EVENT_WORKERS, ApiSink
from app.sinks.api.transport import Request, Response, Transport, Urllib3Transport

__all__ = ["ApiSink", "Request", "Response", "RetryPolicy", "Transport", "Urllib3Transport", "api_sink"]


def api_sink(
    settings: Settings, *, secrets_client: Any = None, transport: Transport | None = None
) -> ApiSink:
    """The API sink for ``settings``: the key from the environment or, once, from Secrets Manager."""
    target = settings.api
    api_key = target.api_key
    reload_key: Callable[[], Secret] | None = None
    arn = target.api_key_secret_arn
    if arn is not None:
        from app.aws.secrets import read_api_key

        if secrets_client is None:
            from app.aws.clients import secrets_client as make_secrets_client

            secrets_client = make_secrets_client(settings, arn)
        api_key = read_api_key(secrets_client, arn)
        # Read again once when the intake refuses the key: the secret may have been rotated.
        reload_key = functools.partial(read_api_key, secrets_client, arn)
    if api_key is None:
        raise ConfigurationError("the api sink needs DD_API_KEY or DD_API_KEY_SECRET_ARN")
    return ApiSink(
        transport=transport
        or Urllib3Transport(target.base_url, pool_size=settings.concurrency + 2 + EVENT_WORKERS),
        api_key=api_key,
        reload_key=reload_key,
        host=target.hostname,
        base_url=target.base_url,
    )
