"""Running totals of the counts the intake acknowledged, per series and second.

Datadog keeps the last value written for a series and second, so two hand-offs that each send
"1 job at 12:00:05" leave 1, not 2. Every count this process sends is therefore the total it has
already had acknowledged for that series and second plus the new share: the last write carries
the sum. Totals older than ``horizon_seconds`` are forgotten (Datadog takes no points older than
an hour). Callers serialise the series requests, so totals and writes stay in order.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.sinks.api.payload import SeriesKey

PRUNE_EVERY_SECONDS = 60


class CountLedger:
    """Acknowledged count totals per (type, metric, tags, timestamp); not thread-safe on its own."""

    def __init__(self, *, horizon_seconds: int = 2 * 3600) -> None:
        self.horizon_seconds = horizon_seconds
        self._totals: dict[SeriesKey, float] = {}
        self._pruned_at = 0

    def with_shares(self, shares: Mapping[SeriesKey, float]) -> dict[SeriesKey, float]:
        """What to send for each key: the acknowledged total plus this request's share."""
        return {key: self._totals.get(key, 0.0) + share for key, share in shares.items()}

    def acknowledge(self, shares: Mapping[SeriesKey, float], *, now: int) -> None:
        """Record that the intake accepted ``shares``."""
        for key, share in shares.items():
            self._totals[key] = self._totals.get(key, 0.0) + share
        if now - self._pruned_at >= PRUNE_EVERY_SECONDS:
            oldest = now - self.horizon_seconds
            self._totals = {key: total for key, total in self._totals.items() if key[3] >= oldest}
            self._pruned_at = now

    def __len__(self) -> int:
        return len(self._totals)
