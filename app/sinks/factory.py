"""Builds the configured sink; only entry points call this."""

from __future__ import annotations

from app.settings import Settings
from app.sinks.base import Sink
from app.sinks.dogstatsd import MetricSubmitter, statsd_client


def build_sink(settings: Settings) -> Sink:
    """The sink ``settings`` ask for, with its real client."""
    if settings.sink == "api":
        from app.sinks.api import api_sink

        return api_sink(settings)
    return MetricSubmitter(statsd_client(settings), target=settings.statsd)
