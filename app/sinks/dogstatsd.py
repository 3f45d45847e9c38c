"""MetricSubmitter: the DogStatsD sink, with the ``datadog`` package's client injected.

Per job: the job counter and the distributions (``|d``, untimed: the agent discards ``|d|T``;
Datadog keeps every value, so concurrent writers add up), the gauges at the job's time (``|T``,
agent >= 7.40) and the event.

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
from collections.abc import Mapping, Sequence
from typing import Protocol

from datadog.dogstatsd.base import DogStatsd

from app.core.catalog import health_metric
from app.core.metrics import Event, Health, JobMetrics, health_metrics
from app.errors import AgentUnavailableError
from app.settings import Settings, StatsdTarget
from app.sinks.base import Parcel

log = logging.getLogger(__name__)


class StatsdClient(Protocol):
    """The part of ``datadog.DogStatsd`` the forwarder uses (see its docs for each method)."""

    packets_dropped_writer: int

    def gauge(self, metric: str, value: float, tags: list[str] | None = None) -> None:
        """Send a gauge stamped by the agent on receipt."""

    def distribution(self, metric: str, value: float, tags: list[str] | None = None) -> None:
        """Send one value of a distribution."""

    def gauge_with_timestamp(
        self, metric: str, value: float, timestamp: int, tags: list[str] | None = None
    ) -> None:
        """Send a gauge carrying its own time (``|T``, agent >= 7.40)."""

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
    """The DogStatsD sink: hand metrics and events to the agent, and know whether they left the process."""

    def __init__(self, statsd: StatsdClient, *, target: StatsdTarget | None = None) -> None:
        self.statsd = statsd
        self.target = target
        # One hand-off at a time, so a drop counted during it belongs to it.
        self._lock = threading.Lock()

    def submit(self, parcels: Sequence[Parcel]) -> Mapping[str, str]:
        """Send every parcel; raise :class:`AgentUnavailableError` if any datagram was dropped.

        DogStatsD has no way to refuse one message's data, so nothing is ever returned as refused.
        """
        self.send([job for parcel in parcels for job in parcel.jobs], [e for p in parcels for e in p.events])
        return {}

    def send(self, jobs: Sequence[JobMetrics], events: Sequence[Event] = ()) -> None:
        """Send every metric and event of ``jobs`` plus ``events``; raise if any was dropped."""
        with self._lock:
            dropped_before = self.statsd.packets_dropped_writer
            try:
                for job in jobs:
                    self._send_job(job)
                for event in events:
                    self._send_event(event)
                self.statsd.flush()
            except (OSError, ValueError) as exc:
                raise AgentUnavailableError(f"DogStatsD send failed: {exc}") from exc
            dropped = self.statsd.packets_dropped_writer - dropped_before
        if dropped:
            raise AgentUnavailableError(f"the DogStatsD client dropped {dropped} packet(s)")

    def record_health(self, health: Health) -> None:
        """Send the forwarder's own health (see :func:`~app.core.metrics.health_metrics`).

        Best effort: these never decide a message's fate, so a failure is only logged.
        """
        metrics = health_metrics(health)
        try:
            with self._lock:
                for point in metrics.distributions:
                    self.statsd.distribution(point.name, point.value, tags=list(point.tags))
                if metrics.lag_seconds is not None:
                    self.statsd.gauge(health_metric("lag_seconds"), metrics.lag_seconds)
                self.statsd.flush()
        except (OSError, ValueError) as exc:
            log.debug("self_metrics.failed error=%s", exc)

    def probe(self) -> str | None:
        """None when the agent looks reachable (see :func:`probe_agent`) or no target is known."""
        problem = None if self.target is None else probe_agent(self.target)
        return None if problem is None else f"the DogStatsD agent is not reachable at {problem}"

    def close(self) -> None:
        """Close the client's socket."""
        close = getattr(self.statsd, "close_socket", None)
        if callable(close):
            close()

    def _send_job(self, job: JobMetrics) -> None:
        run = job.run
        self.statsd.distribution(run.name, run.value, tags=list(run.tags))
        for gauge in job.gauges:
            self.statsd.gauge_with_timestamp(gauge.name, gauge.value, gauge.timestamp, tags=list(gauge.tags))
        for point in job.distributions:
            self.statsd.distribution(point.name, point.value, tags=list(point.tags))
        self._send_event(job.event)

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
    per message, see docs/performance.md). :class:`MetricSubmitter`
    flushes after every hand-off, so nothing waits in the buffer while its message is deleted.
    Telemetry stays on: the client counts dropped packets only with it, and the submitter reads
    that count to know whether a hand-off reached the agent.
    """
    target = settings.statsd
    if target.socket_path:
        return DogStatsd(socket_path=target.socket_path, disable_buffering=False, disable_telemetry=False)
    return DogStatsd(host=target.host, port=target.port, disable_buffering=False, disable_telemetry=False)
