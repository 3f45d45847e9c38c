"""The API sink's delivery rules against a scripted in-memory transport (pure: no network)."""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Callable

import pytest

from app.core.metrics import Distribution, Event, Gauge, Health, JobMetrics
from app.errors import ConfigurationError, IntakeUnavailableError
from app.settings import Secret
from app.sinks.api import ApiSink, Request, Response, RetryPolicy
from app.sinks.api.retry import requested_wait_seconds
from app.sinks.base import Parcel

NOW = 1_800_000_000
KEY = "0123456789abcdef0123456789abcdef"


class ScriptedTransport:
    """Answers each request with ``answer(request)``; records what was sent."""

    def __init__(self, answer: Callable[[Request], Response | Exception]) -> None:
        self.answer = answer
        self.sent: list[Request] = []
        self.accepted: list[Request] = []

    def send(self, request: Request) -> Response:
        """Record ``request`` and play the script."""
        self.sent.append(request)
        outcome = self.answer(request)
        if isinstance(outcome, Exception):
            raise outcome
        if 200 <= outcome.status < 300:
            self.accepted.append(request)
        return outcome

    def close(self) -> None:
        """Nothing to release."""

    def documents(self, path: str, *, accepted_only: bool = False) -> list[dict]:
        """The decoded bodies sent to ``path``."""
        requests = self.accepted if accepted_only else self.sent
        return [json.loads(zlib.decompress(r.body)) for r in requests if r.path == path]


def accept(request: Request) -> Response:
    """The intake's 202."""
    return Response(202, {}, b'{"errors":[]}')


def make_sink(transport: ScriptedTransport, sleeps: list[float] | None = None, attempts: int = 3) -> ApiSink:
    """A sink whose backoff sleeps are recorded in ``sleeps`` instead of slept."""
    waits = sleeps if sleeps is not None else []
    policy = RetryPolicy(
        attempts=attempts, base_seconds=0.5, max_delay_seconds=5, sleep=waits.append, rng=random.Random(1)
    )
    return ApiSink(
        transport=transport,
        api_key=Secret(KEY),
        host="h",
        base_url="https://api.example",
        policy=policy,
        clock=lambda: NOW,
    )


def parcel(key: str, value: float, job_name: str = "etl") -> Parcel:
    """One message's parcel: one job with one gauge, its count and its event."""
    tags = ("cloud_job_metric", f"job:{job_name}")
    return Parcel(
        key,
        (
            JobMetrics(
                gauges=(Gauge("cloud_job.job_result", value, tags, NOW - 5),),
                run=Distribution("cloud_job.runs", 1.0, tags),
                distributions=(),
                event=Event(f"Job {job_name}", "text", "success", "agg", tags, NOW - 5),
                time=NOW - 5,
            ),
        ),
    )


def test_every_request_carries_the_key_header_and_a_deflated_body():
    """Series, distribution points and events go out with DD-API-KEY and Content-Encoding: deflate."""
    transport = ScriptedTransport(accept)
    assert make_sink(transport).submit([parcel("m1", 1.0)]) == {}
    assert {r.path for r in transport.sent} == {
        "/api/v2/series",
        "/api/v1/distribution_points",
        "/api/v1/events",
    }
    for request in transport.sent:
        assert request.headers["DD-API-KEY"] == KEY
        assert request.headers["Content-Encoding"] == "deflate"


def test_transient_answers_are_retried_with_backoff_then_accepted():
    """503, 429 (Retry-After honoured) and a dropped connection are absorbed within the call."""
    script = iter([Response(503), Response(429, {"retry-after": "2"}), IntakeUnavailableError("refused")])
    transport = ScriptedTransport(lambda r: next(script, None) or accept(r))
    waits: list[float] = []
    sink = make_sink(transport, waits, attempts=4)
    assert sink.submit([parcel("m1", 1.0)]) == {}
    assert waits[1] == 2.0  # the intake's Retry-After, not the backoff
    assert 0 < waits[0] <= 0.5 and 0 < waits[2] <= 2.0
    assert len(transport.documents("/api/v2/series")) == 4


def test_exhausted_retries_raise_intake_unavailable_without_the_key():
    """After the attempts run out the whole hand-off fails transiently; the key is not in the error."""
    transport = ScriptedTransport(lambda r: Response(500, {}, f"echo {KEY}".encode()))
    with pytest.raises(IntakeUnavailableError) as caught:
        make_sink(transport).submit([parcel("m1", 1.0)])
    assert len(transport.sent) == 3
    assert KEY not in str(caught.value)
    assert "HTTP 500" in str(caught.value)


def test_a_retry_after_longer_than_the_cap_gives_up_at_once():
    """A rate limit resetting in 60 s is better waited out on the queue than inside the call."""
    transport = ScriptedTransport(lambda r: Response(429, {"x-ratelimit-reset": "60"}))
    with pytest.raises(IntakeUnavailableError):
        make_sink(transport).submit([parcel("m1", 1.0)])
    assert len(transport.sent) == 1


def test_forbidden_is_a_configuration_error_naming_the_variables():
    """403 stops the run with one line naming DD_API_KEY and DD_SITE, never the key."""
    transport = ScriptedTransport(lambda r: Response(403, {}, b'{"errors":["Forbidden"]}'))
    with pytest.raises(ConfigurationError) as caught:
        make_sink(transport).submit([parcel("m1", 1.0)])
    assert "DD_API_KEY" in str(caught.value) and KEY not in str(caught.value)


def test_a_400_is_traced_to_the_one_parcel_that_causes_it():
    """The intake refuses any series request holding job:poison: only that parcel is reported."""

    def answer(request: Request) -> Response:
        if b"job:poison" in zlib.decompress(request.body) and request.path == "/api/v2/series":
            return Response(400, {}, b'{"errors":["Invalid tag"]}')
        return accept(request)

    transport = ScriptedTransport(answer)
    refused = make_sink(transport).submit([parcel("m1", 1.0), parcel("m2", 2.0, "poison"), parcel("m3", 3.0)])
    assert list(refused) == ["m2"]
    assert "Invalid tag" in refused["m2"]
    events = transport.documents("/api/v1/events")
    assert sorted(e["tags"][1] for e in events) == [
        "job:etl",
        "job:etl",
    ]  # the refused parcel's event is held back


def test_a_413_splits_the_request_and_resends_both_halves():
    """A request the intake finds too large is halved until it passes; every point arrives once."""

    def answer(request: Request) -> Response:
        if request.path == "/api/v2/series" and len(json.loads(zlib.decompress(request.body))["series"]) > 2:
            return Response(413)
        return accept(request)

    transport = ScriptedTransport(answer)
    parcels = [parcel(f"m{i}", float(i), f"job{i}") for i in range(6)]
    assert make_sink(transport).submit(parcels) == {}
    accepted = transport.documents("/api/v2/series", accepted_only=True)
    gauges = sorted(p["value"] for d in accepted for s in d["series"] if s["type"] == 3 for p in s["points"])
    assert len(accepted) > 1
    assert gauges == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_hand_offs_in_one_second_each_send_their_own_counter_value():
    """Two hand-offs of the same series and second each send a value of 1: Datadog keeps both."""
    transport = ScriptedTransport(accept)
    sink = make_sink(transport)
    sink.submit([parcel("m1", 1.0)])
    sink.submit([parcel("m2", 2.0)])
    runs = [
        point
        for d in transport.documents("/api/v1/distribution_points")
        for s in d["series"]
        if s["metric"] == "cloud_job.runs"
        for point in s["points"]
    ]
    assert runs == [[NOW - 5, [1.0]], [NOW - 5, [1.0]]]
    assert all(s["type"] == 3 for d in transport.documents("/api/v2/series") for s in d["series"])


def test_health_is_best_effort_and_never_raises():
    """The forwarder's own counters go out as per-batch distribution values, the lag as a gauge; errors are swallowed."""
    transport = ScriptedTransport(lambda r: IntakeUnavailableError("down"))
    sink = make_sink(transport)
    sink.record_health(Health({"forwarded": 3}, {}, lag_seconds=1.5))
    assert len(transport.sent) == 2
    ok = ScriptedTransport(accept)
    make_sink(ok).record_health(Health({"forwarded": 3}, {("transient", "x"): 1}, lag_seconds=1.5))
    values = {s["metric"]: s["points"] for s in ok.documents("/api/v1/distribution_points")[0]["series"]}
    assert values == {
        "cloud_job_metrics.batch.messages": [[NOW, [3.0]]],
        "cloud_job_metrics.batch.failures": [[NOW, [1.0]]],
    }
    assert {s["metric"] for s in ok.documents("/api/v2/series")[0]["series"]} == {
        "cloud_job_metrics.lag_seconds"
    }


def test_probe_validates_the_key_and_reports_a_bad_one_in_one_line():
    """200 {"valid": true} passes; 403 names the variables; an unreachable intake raises (an outage)."""
    good = ScriptedTransport(lambda r: Response(200, {}, b'{"valid":true}'))
    assert make_sink(good).probe() is None
    assert good.sent[0].method == "GET" and good.sent[0].path == "/api/v1/validate"
    bad = make_sink(ScriptedTransport(lambda r: Response(403, {}, b'{"errors":["Forbidden"]}'))).probe()
    assert bad is not None and "DD_API_KEY" in bad and KEY not in bad
    with pytest.raises(IntakeUnavailableError):
        make_sink(ScriptedTransport(lambda r: IntakeUnavailableError("refused"))).probe()


def test_the_secret_and_the_sink_never_show_the_key():
    """repr/str of the key and of the sink are masked."""
    sink = make_sink(ScriptedTransport(accept))
    assert KEY not in repr(Secret(KEY)) + str(Secret(KEY)) + repr(sink)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"x-ratelimit-reset": "7"}, 7.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_requested_wait_reads_retry_after_then_rate_limit_reset(headers, expected):
    """Retry-After wins, X-RateLimit-Reset is the fallback, nonsense is ignored."""
    assert requested_wait_seconds(headers) == expected
