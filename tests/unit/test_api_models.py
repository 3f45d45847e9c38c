"""The API sink's bodies read back through the models of Datadog's official client, strictly.

``datadog-api-client`` deserialises with type checking on; a value of the wrong type or an unknown
enum member does not raise there but leaves the model marked unparsed, and unknown attributes are
kept aside. :func:`strictly` fails on all three, so a drift of our payloads from Datadog's
published models (a renamed field, a number sent as text, an alert type Datadog does not know)
fails here.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.model_utils import ModelNormal, ModelSimple, UnparsedObject
from datadog_api_client.v1.model.distribution_points_payload import DistributionPointsPayload
from datadog_api_client.v1.model.event_create_request import EventCreateRequest
from datadog_api_client.v2.model.metric_payload import MetricPayload

from app.core.envelope import ObjectRef
from app.core.metadata import parse_job_file
from app.core.metrics import job_metrics, rejection_event
from app.drain.handler import metric_options
from app.settings import resolve
from app.sinks.api.payload import distribution_body, event_body, pieces, series_body
from app.sinks.base import Parcel

NOW = int(time.time())
HOST = "forwarder-1"


def strictly(model: type[ModelNormal], body: bytes) -> Any:
    """``body`` deserialised into ``model`` with type checking; fail on anything it did not understand."""
    client = ApiClient(Configuration())
    parsed = client.deserialize(body.decode(), (model,), True)
    problems = list(_unparsed(parsed, model.__name__))
    assert not problems, problems
    return parsed


def _unparsed(value: Any, where: str) -> Any:
    """Yield a description of every part of ``value`` the client could not map onto its model."""
    if isinstance(value, UnparsedObject):
        yield f"{where}: not a valid {where.rsplit('.', 1)[-1]}: {value.to_dict()}"
    elif isinstance(value, ModelSimple):
        if getattr(value, "_unparsed", False):
            yield f"{where}: unknown value {value.value!r}"
    elif isinstance(value, ModelNormal):
        if getattr(value, "_unparsed", False):
            yield f"{where}: {type(value).__name__} holds a value of the wrong type"
        extra = set(value._data_store) - set(value.attribute_map)
        if extra:
            yield f"{where}: attributes {sorted(extra)} are not in {type(value).__name__}"
        for name, item in value._data_store.items():
            yield from _unparsed(item, f"{where}.{name}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _unparsed(item, f"{where}[{index}]")


def parcels() -> list[Parcel]:
    """Parcels built the way the drain builds them: a success, a failure and a rejection."""
    options = metric_options(resolve({}, {"CONSTANT_TAGS": "env:test"}), distributions_by_default=True)
    ref = ObjectRef("job-results", "jobs/etl/run-1.json", size=300, etag="0" * 32, event_time=NOW - 5)
    document = {
        "job_success": True,
        "job_name": "nightly-etl",
        "timestamp": NOW - 60,
        "rows": 1200,
        "seconds": 12.5,
        "images": {"train": 10, "test": 3},
        "cached": False,
        "tags": {"team": "data"},
    }
    failure = {"job_success": 0, "job_name": "nightly-etl", "job_result": 7}
    raw = json.dumps([document, failure]).encode()
    reports = parse_job_file(raw, max_bytes=1 << 20, name=ref.key)
    jobs = tuple(job_metrics(report, ref, options, now=NOW) for report in reports)
    rejected = rejection_event(ref, "invalid-json", "line 1: expected a value", options, message_id="m-2")
    return [Parcel("m-1", jobs), Parcel("m-2", (), (rejected,))]


def test_series_bodies_are_valid_v2_metric_payloads() -> None:
    """The gauges' v2 series body maps onto MetricPayload with every point and resource understood."""
    work = pieces(parcels(), now=NOW)
    assert work.series, "the jobs produced no gauge"
    payload = strictly(MetricPayload, series_body(work.series, host=HOST))
    names = {series.metric for series in payload.series}
    assert {"cloud_job.rows", "cloud_job.images.train", "cloud_job.success"} <= names
    assert all(point.timestamp == NOW - 60 for series in payload.series[:1] for point in series.points)


def test_distribution_bodies_are_valid_v1_distribution_points_payloads() -> None:
    """Every distribution value, the job counter's included, maps onto DistributionPointsPayload."""
    work = pieces(parcels(), now=NOW)
    assert work.distributions, "the jobs produced no distribution value"
    payload = strictly(DistributionPointsPayload, distribution_body(work.distributions, host=HOST))
    values = [value for series in payload.series for point in series.points for value in point.value[1]]
    assert len(values) == len(work.distributions)


def test_event_bodies_are_valid_v1_event_create_requests() -> None:
    """The success, failure and rejection events each map onto EventCreateRequest with a known alert type."""
    work = pieces(parcels(), now=NOW)
    requests = [
        strictly(EventCreateRequest, event_body(item.event, host=HOST, now=NOW)) for item in work.events
    ]
    assert sorted(str(request.alert_type) for request in requests) == ["error", "error", "success"]
    assert all(len(request.title) <= 100 and request.aggregation_key for request in requests)


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (
            MetricPayload,
            {"series": [{"metric": "m", "type": "gauge", "points": [{"timestamp": 1, "value": 1}]}]},
        ),
        (MetricPayload, {"series": [{"metric": "m", "points": [{"timestamp": "1", "value": 1}]}]}),
        (MetricPayload, {"series": [{"metric": "m", "points": [], "host": "h"}]}),
        (EventCreateRequest, {"title": "t", "text": "x", "alert_type": "fatal"}),
        (DistributionPointsPayload, {"series": [{"metric": "m", "points": [[1, "2"]]}]}),
    ],
    ids=["type-as-text", "timestamp-as-text", "unknown-attribute", "unknown-alert-type", "values-not-a-list"],
)
def test_the_check_fails_on_a_drifted_body(model: type[ModelNormal], body: dict[str, Any]) -> None:
    """A body off the model (wrong type, unknown field or enum value) fails the strict check."""
    with pytest.raises(AssertionError):
        strictly(model, json.dumps(body).encode())
