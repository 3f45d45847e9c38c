"""What Datadog would store from the DogStatsD lines an agent received (pure).

The rules, from the agent's code and Datadog's docs (see docs/output.md, "Which metric to graph"):

- a gauge with ``|T``: one point per series and second; a later write to the same second wins;
- a gauge without it: the agent keeps the last value per 10 s flush, stamped with the bucket start;
- a count without ``|T``: summed per 10 s flush; with ``|T``: one point per series and second, last
  write wins (so equal seconds undercount);
- a distribution without ``|T``: every value kept (aggregated server side); with ``|T``: discarded
  by the agent's no-aggregation pipeline.

A series is the metric name plus its set of tags (tag order does not matter). Every line here came
through one agent, so the host is the same for all and plays no part.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from app.local.dogstatsd import Line, Metric

FLUSH_SECONDS = 10

SeriesKey = tuple[str, frozenset[str]]


@dataclass(frozen=True, slots=True)
class Sample:
    """One received metric line and when it arrived (epoch seconds)."""

    arrived_at: float
    metric: Metric


@dataclass(slots=True)
class DatadogView:
    """Stored points per series, built from samples in arrival order."""

    gauges: dict[SeriesKey, dict[int, float]] = field(default_factory=lambda: defaultdict(dict))
    counts: dict[SeriesKey, dict[int, float]] = field(default_factory=lambda: defaultdict(dict))
    distributions: dict[SeriesKey, list[float]] = field(default_factory=lambda: defaultdict(list))
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    discarded: list[Metric] = field(default_factory=list)

    @classmethod
    def of(cls, samples: Iterable[Sample]) -> DatadogView:
        """The view after every sample in ``samples`` (in arrival order) was stored."""
        view = cls()
        for sample in samples:
            view.store(sample)
        return view

    def store(self, sample: Sample) -> None:
        """Apply one sample under the storage rules above."""
        metric = sample.metric
        self.sent[metric.name] += 1
        key: SeriesKey = (metric.name, frozenset(metric.tags))
        bucket = int(sample.arrived_at) - int(sample.arrived_at) % FLUSH_SECONDS
        if metric.type == "g":
            second = metric.timestamp if metric.timestamp is not None else bucket
            self.gauges[key][second] = metric.value
        elif metric.type == "c":
            value = metric.value / metric.sample_rate
            points = self.counts[key]
            if metric.timestamp is not None:
                points[metric.timestamp] = value
            else:
                points[bucket] = points.get(bucket, 0.0) + value
        elif metric.type == "d" and metric.timestamp is None:
            self.distributions[key].append(metric.value)
        else:
            self.discarded.append(metric)

    def gauge_points(self, name: str) -> int:
        """Points Datadog keeps for the gauge ``name`` across its series."""
        return sum(len(points) for (metric, _), points in self.gauges.items() if metric == name)

    def count_total(self, name: str, *tags: str) -> float:
        """``sum:<name>{tags}.as_count()`` over all time: the stored count points carrying every tag."""
        return sum(
            sum(points.values())
            for (metric, series_tags), points in self.counts.items()
            if metric == name and set(tags) <= series_tags
        )

    def count_by(self, name: str, tag_key: str, *other_keys: str) -> dict[tuple[str, ...], float]:
        """``sum:<name>{*} by {tag_key,…}.as_count()``: totals per combination of those tag values."""
        keys = (tag_key, *other_keys)
        totals: dict[tuple[str, ...], float] = defaultdict(float)
        for (metric, series_tags), points in self.counts.items():
            if metric != name:
                continue
            values = {t.split(":", 1)[0]: t.split(":", 1)[1] for t in series_tags if ":" in t}
            totals[tuple(values.get(k, "n/a") for k in keys)] += sum(points.values())
        return dict(totals)

    def distribution_values(self, name: str, *tags: str) -> list[float]:
        """Every value of the distribution ``name`` in the series carrying every tag in ``tags``."""
        return [
            value
            for (metric, series_tags), values in self.distributions.items()
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


def samples_of(received: Iterable[tuple[float, Line]]) -> list[Sample]:
    """The metric lines among ``received`` (arrival time, line) as samples."""
    return [Sample(at, line) for at, line in received if isinstance(line, Metric)]
