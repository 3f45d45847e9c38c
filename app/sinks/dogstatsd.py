"""MetricSubmitter: the DogStatsD side, with the ``datadog`` package's client injected.

DogStatsD over UDP acknowledges nothing, and the client swallows socket errors, counting them in
``packets_dropped_writer`` instead. So every hand-off here ends with a flush and a look at that
counter: if anything was dropped, :class:`~app.errors.AgentUnavailableError` is raised and the
caller keeps the messages for a retry. Over a Unix socket a down agent is always seen this way;
over UDP only a refused loopback port is (an ICMP error surfaces on the next send).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Sequence
from typing import Protocol

from datadog.dogstatsd.base import DogStatsd

from app.core.metrics import SELF_PREFIX, Event, Gauge, Health, JobMetrics, sanitize_tag
from app.errors import AgentUnavailableError
from app.settings import Settings, StatsdTarget

log = logging.getLogger(__name__)


class StatsdClient(Protocol):
    """The part of ``datadog.DogStatsd`` the forwarder uses (see its docs for each method)."""

    packets_dropped_writer: int

    def gauge(self, metric: str, value: float, tags: list[str] | None = None) -> None:
        """Send a gauge stamped by the agent on receipt."""

    def gauge_with_timestamp(
        self, metric: str, value: float, timestamp: int, tags: list[str] | None = None
    ) -> None:
        """Send a gauge carrying its own time (``|T``, agent >= 7.40)."""

    def increment(self, metric: str, value: float = 1, tags: list[str] | None = None) -> None:
        """Add to a counter."""

    def event(
        self,
        title: str,
        message: str,
        *,
        alert_type: str | None = None,
        aggregation_key: str | None = None,
        date_happened: int | None = None,
        tags: list[str] | None = None,
    ) -> None:
        """Send an event (raises ``ValueError`` over 8 KB)."""

    def flush(self) -> object:
        """Send whatever is buffered."""


class MetricSubmitter:
    """Hand gauges and events to the agent, and know whether they left the process."""

    def __init__(self, statsd: StatsdClient) -> None:
        self.statsd = statsd
        # One hand-off at a time, so a drop counted during it belongs to it.
        self._lock = threading.Lock()

    def submit(self, jobs: Sequence[JobMetrics], events: Sequence[Event] = ()) -> None:
        """Send every gauge and event of ``jobs`` plus ``events``; raise if any was dropped."""
        with self._lock:
            dropped_before = self.statsd.packets_dropped_writer
            try:
                for job in jobs:
                    for gauge in job.gauges:
                        self._send_gauge(gauge)
                    self._send_event(job.event)
                for event in events:
                    self._send_event(event)
                self.statsd.flush()
            except (OSError, ValueError) as exc:
                raise AgentUnavailableError(f"DogStatsD send failed: {exc}") from exc
            dropped = self.statsd.packets_dropped_writer - dropped_before
        if dropped:
            raise AgentUnavailableError(f"the DogStatsD client dropped {dropped} packet(s)")

    def record_health(self, health: Health) -> None:
        """Send the forwarder's own health: outcomes, failures per class, DLQ and delete counts, lag.

        Best effort: these never decide a message's fate, so a failure is only logged.
        """
        try:
            with self._lock:
                for outcome, count in health.outcomes.items():
                    if count:
                        self.statsd.increment(f"{SELF_PREFIX}.messages", count, tags=[f"outcome:{outcome}"])
                for (kind, reason), count in health.failures.items():
                    self.statsd.increment(
                        f"{SELF_PREFIX}.failures",
                        count,
                        tags=[f"class:{kind}", sanitize_tag(f"reason:{reason}")],
                    )
                if health.dead_lettered:
                    self.statsd.increment(f"{SELF_PREFIX}.dead_lettered", health.dead_lettered)
                if health.delete_failures:
                    self.statsd.increment(f"{SELF_PREFIX}.delete_failures", health.delete_failures)
                if health.lag_seconds is not None:
                    self.statsd.gauge(f"{SELF_PREFIX}.lag_seconds", round(health.lag_seconds, 3))
                self.statsd.flush()
        except (OSError, ValueError) as exc:
            log.debug("self_metrics.failed error=%s", exc)

    def _send_gauge(self, gauge: Gauge) -> None:
        tags = list(gauge.tags)
        if gauge.timestamp is None:
            self.statsd.gauge(gauge.name, gauge.value, tags=tags)
        else:
            self.statsd.gauge_with_timestamp(gauge.name, gauge.value, gauge.timestamp, tags=tags)

    def _send_event(self, event: Event) -> None:
        self.statsd.event(
            event.title,
            event.text,
            alert_type=event.alert_type,
            aggregation_key=event.aggregation_key,
            date_happened=event.date_happened,
            tags=list(event.tags),
        )


def probe_agent(target: StatsdTarget, *, timeout_seconds: float = 1.0) -> str | None:
    """Return None if the agent looks reachable, else why not.

    A Unix socket either accepts a datagram or fails. UDP is acknowledged by nobody, but on
    loopback a closed port answers with ICMP "port unreachable", which the next send reports.
    """
    try:
        if target.socket_path:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(timeout_seconds)
                sock.connect(target.socket_path)
                sock.send(b"")
            return None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout_seconds)
            sock.connect((target.host, target.port))
            sock.send(b"")
            sock.settimeout(0.05)
            with contextlib.suppress(TimeoutError):
                sock.recv(1)
            sock.send(b"")
        return None
    except OSError as exc:
        return f"{target.describe()}: {exc.strerror or exc}"


def statsd_client(settings: Settings) -> DogStatsd:
    """A buffering DogStatsD client for the configured target.

    Buffering packs a batch's lines into a few datagrams instead of one send per line (less CPU
    per message, see the README's performance section). :class:`MetricSubmitter`
    flushes after every hand-off, so nothing waits in the buffer while its message is deleted.
    Telemetry stays on: the client counts dropped packets only with it, and the submitter reads
    that count to know whether a hand-off reached the agent.
    """
    target = settings.statsd
    if target.socket_path:
        return DogStatsd(socket_path=target.socket_path, disable_buffering=False, disable_telemetry=False)
    return DogStatsd(host=target.host, port=target.port, disable_buffering=False, disable_telemetry=False)
