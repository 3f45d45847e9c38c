"""The forwarder variant: this product's own drain, through its public entry point.

``app.drain.service.drain_queue(settings, *, sqs, s3, statsd)`` gets the instrumented clients, so every
request is counted exactly as for the other variants, and the DogStatsD client the CLI would build
(``app.aws.clients.statsd_client``) aimed at the benchmark's receiver, so the forwarder runs with its
production client configuration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.measure import VariantSpec


def default_settings() -> dict[str, int]:
    """The forwarder's defaults that shape the comparison (receive loops, GET workers, long poll)."""
    from app.settings import Settings

    defaults = Settings()
    return {
        "concurrency": defaults.concurrency,
        "fetch_workers": defaults.fetch_workers,
        "wait_seconds": defaults.receive_wait_seconds(follow=False),
    }


def make_forwarder_drain(
    spec: VariantSpec, *, sqs: Any, s3: Any, statsd: Any
) -> Callable[[], tuple[int, dict[str, Any]]]:
    from app.drain.service import drain_queue
    from app.settings import Settings, StatsdTarget
    from app.sinks.dogstatsd import statsd_client

    settings = Settings(
        queue_url=spec.queue_url,
        endpoint_url=spec.endpoint_url,
        region="us-east-1",
        statsd=StatsdTarget(host="127.0.0.1", port=spec.statsd_port),
        concurrency=spec.concurrency,
        fetch_workers=spec.fetch_workers,
        wait_time_seconds=spec.wait_seconds,
    )

    del statsd  # the variants' shared client is replaced by the one the product builds
    client = statsd_client(settings)

    def drain() -> tuple[int, dict[str, Any]]:
        summary = drain_queue(settings, sqs=sqs, s3=s3, statsd=client, follow=False)
        fields = dataclasses.asdict(summary) if dataclasses.is_dataclass(summary) else dict(vars(summary))
        return int(fields.get("forwarded", 0)), fields

    return drain
