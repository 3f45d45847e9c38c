"""What Datadog would store from what the forwarder sent, by the agent or the HTTP API (pure).

The rules, from the agent's code and Datadog's docs (see docs/output.md, "What Datadog keeps"):

- a series is the metric name, its set of tags (order does not matter) and its host;
- a gauge with a timestamp: one point per series and second; a later write to the same second
  wins, whoever wrote it;
- a gauge without one (DogStatsD only): the agent keeps the last value per 10 s flush, stamped
  with the bucket start;
- a count without ``|T``: the agent sums it per 10 s flush; with ``|T``, or over the API: one
  point per series and second, last write wins (so equal seconds undercount across writers);
- a distribution: every value kept, added up server side whoever sent it; DogStatsD cannot
  timestamp one (the agent's no-aggregation pipeline discards ``|d|T``), the API can;
- a point stamped more than an hour back or ten minutes ahead of its arrival is dropped.

Samples that went through an agent carry the agent's host; several processes on one host share
it, so the agent sums their counts. An agent that stops without
``dogstatsd_flush_incomplete_buckets`` drops the 10 s bucket still open (datadog-agent#3940):
:meth:`DatadogView.of` models that with ``agent_stopped_at``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from app.local.dogstatsd import Line, Metric

FLUSH_SECONDS = 10
POINT_MAX_AGE_SECONDS = 3600
POINT_MAX_AHEAD_SECONDS = 600

SeriesKey = tuple[str, frozenset[str], str]
"""(metric, tags, host): one series, and one billed custom metric (five for a distribution)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One metric as it reached Datadog's side: when it arrived (epoch seconds), from which host.

    ``via_agent`` is true for DogStatsD (the agent aggregates untimed samples per 10 s flush and
    discards timestamped distributions) and false for the HTTP API.
    """

    arrived_at: float
    metric: Metric
    host: str = ""
    via_agent: bool = True


@dataclass(slots=True)
class DatadogView:
    """Stored points per series, built from samples in arrival order."""

    gauges: dict[SeriesKey, dict[int, float]] = field(default_factory=lambda: defaultdict(dict))
    counts: dict[SeriesKey, dict[int, float]] = field(default_factory=lambda: defaultdict(dict))
    distributions: dict[SeriesKey, list[float]] = field(default_factory=lambda: defaultdict(list))
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    discarded: list[Metric] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        samples: Iterable[Sample],
        *,
        agent_stopped_at: float | None = None,
        flush_incomplete_buckets: bool = True,
    ) -> DatadogView:
        """The view after every sample in ``samples`` (in arrival order) was stored.

        With ``agent_stopped_at`` and ``flush_incomplete_buckets`` false, untimed samples that an
        agent had in its open 10 s bucket when it stopped are lost, as the agent loses them.
        """
        view = cls()
        lost_from = None
        if agent_stopped_at is not None and not flush_incomplete_buckets:
            lost_from = _bucket(agent_stopped_at)
        for sample in samples:
            untimed = sample.metric.timestamp is None
            if lost_from is not None and sample.via_agent and untimed and sample.arrived_at >= lost_from:
                view.sent[sample.metric.name] += 1
                view.discarded.append(sample.metric)
                continue
            view.store(sample)
        return view

    def store(self, sample: Sample) -> None:
        """Apply one sample under the storage rules above."""
        metric = sample.metric
        self.sent[metric.name] += 1
        key: SeriesKey = (metric.name, frozenset(metric.tags), sample.host)
        stamp = metric.timestamp
        if stamp is not None and not (
            sample.arrived_at - POINT_MAX_AGE_SECONDS <= stamp <= sample.arrived_at + POINT_MAX_AHEAD_SECONDS
        ):
            self.discarded.append(metric)
            return
        bucket = _bucket(sample.arrived_at)
        if metric.type == "g":
            self.gauges[key][bucket if stamp is None else stamp] = metric.value
        elif metric.type == "c":
            value = metric.value / metric.sample_rate
            points = self.counts[key]
            if stamp is None and sample.via_agent:
                points[bucket] = points.get(bucket, 0.0) + value
            else:
                points[int(sample.arrived_at) if stamp is None else stamp] = value
        elif metric.type == "d" and not (stamp is not None and sample.via_agent):
            self.distributions[key].append(metric.value)
        else:
            self.discarded.append(metric)

    def gauge_points(self, name: str) -> int:
        """Points Datadog keeps for the gauge ``name`` across its series."""
        return sum(len(points) for (metric, _, _), points in self.gauges.items() if metric == name)

    def count_total(self, name: str, *tags: str) -> float:
        """``sum:<name>{tags}.as_count()`` over all time: the stored count points carrying every tag."""
        return sum(
            sum(points.values())
            for (metric, series_tags, _), points in self.counts.items()
            if metric == name and set(tags) <= series_tags
        )

    def count_by(self, name: str, tag_key: str, *other_keys: str) -> dict[tuple[str, ...], float]:
        """``sum:<name>{*} by {tag_key,…}.as_count()``: totals per combination of those tag values."""
        return _by(
            (tag_key, *other_keys), ((k, sum(p.values())) for k, p in self.counts.items() if k[0] == name)
        )

    def runs(self, name: str, *tags: str) -> int:
        """``count:<name>{tags}.as_count()`` of a distribution: how many values Datadog kept."""
        return len(self.distribution_values(name, *tags))

    def runs_by(self, name: str, tag_key: str, *other_keys: str) -> dict[tuple[str, ...], float]:
        """``count:<name>{*} by {tag_key,…}.as_count()`` of a distribution."""
        return _by(
            (tag_key, *other_keys),
            ((k, float(len(v))) for k, v in self.distributions.items() if k[0] == name),
        )

    def series(self, name: str) -> int:
        """The number of series Datadog holds for ``name`` (each one billed as a custom metric)."""
        keys = [*self.gauges, *self.counts, *self.distributions]
        return len({key for key in keys if key[0] == name})

    def distribution_values(self, name: str, *tags: str) -> list[float]:
        """Every value of the distribution ``name`` in the series carrying every tag in ``tags``."""
        return [
            value
            for (metric, series_tags, _), values in self.distributions.items()
            if metric == name and set(tags) <= series_tags
            for value in values
        ]

    def percentile(self, name: str, quantile: float, *tags: str) -> float | None:
        """The ``quantile`` (0..1) of a distribution's values, nearest-rank; None when empty."""
        values = sorted(self.distribution_values(name, *tags))
        if not values:
            return None
        rank = max(1, math.ceil(quantile * len(values)))
        return values[rank - 1]


def _bucket(at: float) -> int:
    return int(at) - int(at) % FLUSH_SECONDS


def _by(keys: tuple[str, ...], totals: Iterable[tuple[SeriesKey, float]]) -> dict[tuple[str, ...], float]:
    grouped: dict[tuple[str, ...], float] = defaultdict(float)
    for (_, series_tags, _), total in totals:
        values = {t.split(":", 1)[0]: t.split(":", 1)[1] for t in series_tags if ":" in t}
        grouped[tuple(values.get(k, "n/a") for k in keys)] += total
    return dict(grouped)


def samples_of(received: Iterable[tuple[float, Line]], *, host: str = "") -> list[Sample]:
    """The metric lines among ``received`` (arrival time, line) as samples from one agent's host."""
    return [Sample(at, line, host) for at, line in received if isinstance(line, Metric)]
