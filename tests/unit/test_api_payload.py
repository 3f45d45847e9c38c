"""The API sink's payloads: shapes, the job counter as distribution values, limits and splitting (pure)."""

from __future__ import annotations

import json
import zlib

from app.core.metrics import Distribution, Event, Gauge, JobMetrics
from app.local.intake import DistributionPointsPayload, EventCreateRequest, MetricPayload
from app.sinks.api.payload import (
    GAUGE_TYPE,
    MAX_COMPRESSED_BYTES,
    MAX_UNCOMPRESSED_BYTES,
    SeriesPoint,
    distribution_body,
    estimate_series,
    event_body,
    pack,
    pieces,
    series_body,
)
from app.sinks.base import Parcel

NOW = 1_800_000_000
TAGS = ("cloud_job_metric", "status:success", "job:etl")


def job(
    value: float, *, time: int | None = NOW - 30, tags: tuple[str, ...] = TAGS, distributions: bool = True
) -> JobMetrics:
    """One job's metrics as the model builds them."""
    gauges = () if time is None else (Gauge("cloud_job.job_result", value, tags, time),)
    return JobMetrics(
        gauges=gauges,
        run=Distribution("cloud_job.runs", 1.0, tags),
        distributions=(Distribution("cloud_job.distribution.job_result", value, tags),)
        if distributions
        else (),
        event=Event("Job etl succeeded", "s3://b/k", "success", "a" * 32, tags, time),
        time=time,
    )


def test_gauges_become_v2_series_at_the_job_time_with_a_host_only_when_configured():
    """Gauges are type 3 at the job's time; the host resource appears only when one is configured."""
    work = pieces([Parcel("m1", (job(5.0),))], now=NOW)
    document = json.loads(series_body(work.series, host="forwarder-1"))
    MetricPayload.model_validate(document)
    (entry,) = document["series"]
    assert (entry["metric"], entry["type"]) == ("cloud_job.job_result", GAUGE_TYPE)
    assert entry["points"] == [{"timestamp": NOW - 30, "value": 5.0}]
    assert entry["resources"] == [{"type": "host", "name": "forwarder-1"}]
    hostless = json.loads(series_body(work.series, host=None))
    assert "resources" not in hostless["series"][0]


def test_the_job_counter_is_one_distribution_value_per_job_never_a_count():
    """Three jobs of one series and second are three values of cloud_job.runs, not one summed point."""
    parcels = [Parcel("m1", (job(1), job(2))), Parcel("m2", (job(3), job(4, time=NOW - 31)))]
    work = pieces(parcels, now=NOW)
    document = json.loads(distribution_body(work.distributions, host=None))
    runs = next(e for e in document["series"] if e["metric"] == "cloud_job.runs")
    assert runs["points"] == [[NOW - 31, [1.0]], [NOW - 30, [1.0, 1.0, 1.0]]]
    assert "host" not in runs
    assert all(
        entry["type"] == GAUGE_TYPE for entry in json.loads(series_body(work.series, host=None))["series"]
    )


def test_an_untimed_job_counts_at_the_hand_off_second_and_sends_no_gauge():
    """A job outside Datadog's window keeps its counter value (at the hand-off second) and sends no gauge."""
    work = pieces([Parcel("m1", (job(1, time=None, distributions=False),))], now=NOW)
    assert work.series == ()
    assert [(v.metric, v.timestamp) for v in work.distributions] == [("cloud_job.runs", NOW)]


def test_distributions_carry_the_job_time_and_every_value():
    """Values of one series and second share one ``[timestamp, [values]]`` point."""
    work = pieces([Parcel("m1", (job(1), job(2))), Parcel("m2", (job(3, time=None),))], now=NOW)
    document = json.loads(distribution_body(work.distributions, host="h"))
    DistributionPointsPayload.model_validate(document)
    series = next(e for e in document["series"] if e["metric"] == "cloud_job.distribution.job_result")
    assert series["points"] == [[NOW - 30, [1.0, 2.0]], [NOW, [3.0]]]
    assert series["host"] == "h"
    assert series["type"] == "distribution"


def test_event_keeps_the_documented_limits_and_drops_a_date_older_than_18_hours():
    """Text over 4,000 characters is cut, and a date older than 18 h is left to the intake."""
    long = Event("t", "x" * 5000, "error", "k" * 150, ("a:b",), NOW - 19 * 3600)
    document = json.loads(event_body(long, host="h", now=NOW))
    EventCreateRequest.model_validate(document)
    assert len(document["text"]) == 4000
    assert document["text"].endswith("(truncated)")
    assert len(document["aggregation_key"]) == 100
    assert "date_happened" not in document
    recent = json.loads(event_body(long.__class__("t", "x", "success", "k", (), NOW - 60), host="h", now=NOW))
    assert recent["date_happened"] == NOW - 60


def test_events_of_rejections_ride_with_their_parcel():
    """A parcel's extra events (rejections) become event items labelled with its key."""
    rejection = Event("job metadata rejected", "why", "error", "r" * 32, ("status:rejected",))
    work = pieces([Parcel("m9", (), (rejection,))], now=NOW)
    assert [(item.key, item.event.title) for item in work.events] == [("m9", "job metadata rejected")]
    assert work.series == ()


def test_pack_keeps_every_request_under_both_size_limits():
    """Enough points for several requests are cut so each body fits 5,242,880 / 512,000 bytes."""
    tags = tuple(f"tag{i}:{'v' * 40}{i}" for i in range(20))
    points = [
        SeriesPoint(f"m{i}", f"cloud_job.field_{i % 997}", float(i), tags, NOW - i % 3000)
        for i in range(60_000)
    ]
    chunks = pack(points, lambda chunk: series_body(chunk, host="h"), estimate=estimate_series)
    assert len(chunks) > 1
    assert sum(len(items) for items, _, _ in chunks) == len(points)
    for _items, body, compressed in chunks:
        assert len(body) <= MAX_UNCOMPRESSED_BYTES
        assert len(compressed) <= MAX_COMPRESSED_BYTES
        assert zlib.decompress(compressed) == body


def test_pack_halves_a_chunk_whose_compressed_body_is_too_large():
    """Incompressible names push the compressed size over the limit first; the chunk is halved."""
    import random

    rng = random.Random(3)
    points = [
        SeriesPoint(
            "m",
            "n" + "".join(rng.choice("abcdefghij0123456789") for _ in range(190)),
            1.0,
            (),
            NOW,
        )
        for _ in range(8000)
    ]
    chunks = pack(points, lambda chunk: series_body(chunk, host="h"), estimate=estimate_series)
    assert len(chunks) >= 2
    assert all(len(compressed) <= MAX_COMPRESSED_BYTES for _, _, compressed in chunks)
