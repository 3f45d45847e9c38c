"""The local model of what Datadog stores from what the agent or the API received (app/local/datadog_view.py)."""

from __future__ import annotations

from app.local.datadog_view import FLUSH_SECONDS, DatadogView, Sample
from app.local.dogstatsd import Metric, parse_line

T0 = 1_795_572_930.0  # a flush-bucket start


def sample(line: str, at: float = T0, *, host: str = "", via_agent: bool = True) -> Sample:
    """A received line, parsed strictly, arriving at ``at`` from ``host``."""
    parsed = parse_line(line)
    assert isinstance(parsed, Metric)
    return Sample(at, parsed, host, via_agent)


def test_timestamped_gauges_keep_one_point_per_series_and_second_last_write_wins():
    """Three |T gauges in one second and series keep the last; another second is its own point."""
    view = DatadogView.of(
        [
            sample("j.result:1|g|#job:a|T1795572900"),
            sample("j.result:2|g|#job:a|T1795572900"),
            sample("j.result:3|g|#job:a|T1795572900"),
            sample("j.result:4|g|#job:a|T1795572901"),
        ]
    )

    assert view.gauges[("j.result", frozenset({"job:a"}), "")] == {1795572900: 3.0, 1795572901: 4.0}
    assert view.gauge_points("j.result") == 2
    assert view.sent["j.result"] == 4


def test_untimed_gauges_keep_the_last_value_per_flush_bucket():
    """Without |T the agent keeps the last gauge of each 10 s bucket, whatever the seconds inside."""
    view = DatadogView.of(
        [
            sample("g:1|g", T0 + 1),
            sample("g:2|g", T0 + 9),
            sample("g:3|g", T0 + FLUSH_SECONDS),
        ]
    )

    assert view.gauges[("g", frozenset(), "")] == {int(T0): 2.0, int(T0) + FLUSH_SECONDS: 3.0}


def test_untimed_counts_are_summed_and_timestamped_counts_overwrite():
    """Counts without |T add up per flush; with |T equal seconds overwrite (and undercount)."""
    untimed = DatadogView.of([sample("jobs:1|c|#status:success", T0 + i) for i in range(5)])
    timed = DatadogView.of([sample("jobs:1|c|#status:success|T1795572900") for _ in range(5)])

    assert untimed.count_total("jobs", "status:success") == 5.0
    assert timed.count_total("jobs", "status:success") == 1.0


def test_count_sample_rate_scales_the_sum():
    """A count sent at @0.5 stands for two."""
    view = DatadogView.of([sample("jobs:1|c|@0.5")])

    assert view.count_total("jobs") == 2.0


def test_distributions_keep_every_value_and_timestamped_ones_are_discarded():
    """Every |d value is kept, same second or not; |d|T lines are dropped as the agent drops them."""
    view = DatadogView.of(
        [*(sample(f"d.x:{v}|d|#job:a") for v in (5, 1, 3, 2, 4)), sample("d.x:99|d|#job:a|T1795572900")]
    )

    assert sorted(view.distribution_values("d.x", "job:a")) == [1, 2, 3, 4, 5]
    assert view.percentile("d.x", 0.5) == 3
    assert view.percentile("d.x", 0.95) == 5
    assert [m.value for m in view.discarded] == [99.0]


def test_series_ignore_tag_order_and_queries_filter_by_tag_subsets():
    """Tag order does not make a new series; count_by groups totals by tag values."""
    view = DatadogView.of(
        [
            sample("jobs:1|c|#job:a,status:success"),
            sample("jobs:1|c|#status:success,job:a"),
            sample("jobs:1|c|#job:a,status:failure"),
            sample("jobs:1|c|#job:b,status:failure"),
        ]
    )

    assert len(view.counts) == 3
    assert view.count_by("jobs", "job", "status") == {
        ("a", "success"): 2.0,
        ("a", "failure"): 1.0,
        ("b", "failure"): 1.0,
    }
    assert view.count_total("jobs", "status:failure") == 2.0
    assert view.percentile("nothing", 0.5) is None


def test_api_counts_from_two_writers_in_one_second_overwrite_and_distributions_add_up():
    """Over the API a count point per series and second is last-write-wins across writers; distribution values all stay."""
    writers = [sample(f"jobs:{total}|c|#job:a|T1795572900", via_agent=False) for total in (80, 80, 80)]
    runs = [sample("runs:1|d|#job:a|T1795572900", via_agent=False) for _ in range(240)]

    view = DatadogView.of([*writers, *runs])

    assert view.count_total("jobs") == 80.0
    assert view.runs("runs", "job:a") == 240
    assert view.runs_by("runs", "job") == {("a",): 240.0}


def test_the_host_is_part_of_the_series():
    """The same name and tags from two hosts are two series (two billed custom metrics)."""
    view = DatadogView.of(
        [
            sample("runs:1|d|#job:a", host="h1"),
            sample("runs:1|d|#job:a", host="h2"),
            sample("runs:1|d|#job:a", host="h1"),
        ]
    )

    assert view.series("runs") == 2
    assert view.runs("runs") == 3


def test_points_outside_datadogs_window_are_dropped():
    """A point stamped over an hour before, or ten minutes after, its arrival is not kept."""
    view = DatadogView.of(
        [
            sample(f"g:1|g|T{int(T0) - 3 * 3600}"),
            sample(f"g:2|g|T{int(T0) + 900}"),
            sample(f"runs:1|d|T{int(T0) - 3 * 3600}", via_agent=False),
            sample(f"g:3|g|T{int(T0) - 60}"),
        ]
    )

    assert view.gauge_points("g") == 1
    assert view.runs("runs") == 0
    assert len(view.discarded) == 3


def test_an_agent_stopping_without_the_flush_option_loses_its_open_bucket():
    """Untimed samples in the bucket open at the stop are lost unless the agent flushes incomplete buckets."""
    stop = T0 + 5
    samples = [sample("runs:1|d", T0 - 12), sample("runs:1|d", T0 + 1), sample("runs:1|d", T0 + 4)]
    samples.append(sample(f"g:1|g|T{int(T0)}", T0 + 4))

    lossy = DatadogView.of(samples, agent_stopped_at=stop, flush_incomplete_buckets=False)
    flushed = DatadogView.of(samples, agent_stopped_at=stop, flush_incomplete_buckets=True)

    assert lossy.runs("runs") == 1
    assert lossy.gauge_points("g") == 1
    assert flushed.runs("runs") == 3
