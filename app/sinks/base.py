"""The seam between the drain and wherever metrics go: one small interface every sink implements.

A sink receives one :class:`Parcel` per SQS message and either takes them all (returns), refuses
some as malformed (returns their keys: those messages are dead-lettered), or takes none it can
vouch for (raises a :class:`~app.errors.TransientError`: the whole batch is kept and retried, or a
:class:`~app.errors.ConfigurationError`: the run stops). Nothing here knows about SQS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from app.core.metrics import Event, Health, JobMetrics


@dataclass(frozen=True, slots=True)
class Parcel:
    """What one message hands to a sink: its jobs' metrics and its extra events (rejections)."""

    key: str
    jobs: tuple[JobMetrics, ...] = ()
    events: tuple[Event, ...] = ()


class Sink(Protocol):
    """Where metrics go: DogStatsD to an agent, or Datadog's HTTP API."""

    def submit(self, parcels: Sequence[Parcel]) -> Mapping[str, str]:
        """Hand every parcel over; return ``{parcel key: reason}`` for parcels refused as malformed.

        Raises :class:`~app.errors.TransientError` when the hand-off cannot be vouched for (keep
        every message) and :class:`~app.errors.ConfigurationError` when it can never work.
        """

    def record_health(self, health: Health) -> None:
        """Send the forwarder's own health metrics; best effort, never raises."""

    def probe(self) -> str | None:
        """None when the destination looks reachable, else one line saying why not."""

    def close(self) -> None:
        """Release sockets and connections."""
