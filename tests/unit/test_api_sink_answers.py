"""What the intake's answers mean to the API sink, key rotation, and events bounded per object (pure)."""

from __future__ import annotations

import json
import random
import threading
import time
import zlib
from collections.abc import Callable

import pytest

from app.core.metrics import Distribution, Event, Gauge, JobMetrics
from app.errors import ConfigurationError
from app.lambda_handler import SinkGate
from app.settings import Secret
from app.sinks.api import ApiSink, Request, Response, RetryPolicy
from app.sinks.api.events import MAX_EVENTS_PER_OBJECT, bounded_events
from app.sinks.api.payload import EVENTS_PATH, SERIES_PATH, EventItem
from app.sinks.api.sink import EVENT_WORKERS
from app.sinks.base import Parcel

NOW = 1_800_000_000
KEY = "5a9c3e7b1d0f8a2c4e6b9d1f3a5c7e0b"
ROTATED = "e1c7a3f9b5d2e8c4a0f6b2d9e5c1a7f3"


class Transport:
    """Answers with ``answer(request)``; records what was sent and how many were in flight at once."""

    def __init__(self, answer: Callable[[Request], Response], *, seconds: float = 0.0) -> None:
        self.answer = answer
        self.seconds = seconds
        self.sent: list[Request] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()

    def send(self, request: Request) -> Response:
        """Record, wait ``seconds``, answer."""
        with self.lock:
            self.sent.append(request)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.seconds)
            return self.answer(request)
        finally:
            with self.lock:
                self.in_flight -= 1

    def close(self) -> None:
        """Nothing to release."""


def sink(transport: Transport, **options: object) -> ApiSink:
    """A sink with instant retries."""
    policy = RetryPolicy(attempts=2, base_seconds=0.01, sleep=lambda _s: None, rng=random.Random(0))
    return ApiSink(
        transport=transport,
        api_key=Secret(KEY),
        host="h",
        base_url="https://api.example",
        policy=policy,
        clock=lambda: NOW,
        **options,  # type: ignore[arg-type]
    )


def job(name: str, *, ok: bool = True, aggregation: str = "object-1") -> JobMetrics:
    """One job's metrics: a gauge, the run counter, its event."""
    tags = ("cloud_job_metric", f"job:{name}", f"status:{'success' if ok else 'failure'}")
    return JobMetrics(
        gauges=(Gauge("cloud_job.job_result", 1.0, tags, NOW - 5),),
        run=Distribution("cloud_job.runs", 1.0, tags),
        distributions=(),
        event=Event(f"Job {name}", "text", "success" if ok else "error", aggregation, tags, NOW - 5),
        time=NOW - 5,
    )


def answering(status: int, *, on: str | None = None) -> Callable[[Request], Response]:
    """``status`` to requests to ``on`` (or all), 202 otherwise; the validate check says valid."""

    def answer(request: Request) -> Response:
        if request.method == "GET":
            return Response(200, {}, b'{"valid":true}')
        if on in (None, request.path):
            return Response(status, {"location": f"https://elsewhere/{KEY}"}, f"echo {KEY}".encode())
        return Response(202, {}, b"{}")

    return answer


@pytest.mark.parametrize("status", [301, 302, 307, 308, 404, 405, 409, 410, 418, 451])
@pytest.mark.parametrize("path", [SERIES_PATH, EVENTS_PATH])
def test_an_answer_not_about_the_data_is_a_configuration_error_never_a_refusal(
    status: int, path: str
) -> None:
    """3xx, 404, 405, 410 and other 4xx stop the hand-off as a configuration error; nothing is refused."""
    transport = Transport(answering(status, on=path))
    with pytest.raises(ConfigurationError) as caught:
        sink(transport).submit([Parcel("m1", (job("a"),)), Parcel("m2", (job("b"),))])
    assert f"HTTP {status}" in str(caught.value) or "(404)" in str(caught.value)
    assert KEY not in str(caught.value)


@pytest.mark.parametrize("status", [400, 422])
def test_a_400_or_422_refuses_only_the_parcel_at_fault(status: int) -> None:
    """400 and 422 are about the data: each parcel alone, the one still refused is returned."""

    def answer(request: Request) -> Response:
        body = zlib.decompress(request.body).decode()
        return Response(status if "job:bad" in body else 202, {}, f"bad {KEY}".encode())

    refused = sink(Transport(answer)).submit([Parcel("m1", (job("good"),)), Parcel("m2", (job("bad"),))])
    assert list(refused) == ["m2"]
    assert f"HTTP {status}" in refused["m2"] and KEY not in refused["m2"]


def test_a_single_item_413_refuses_its_parcel() -> None:
    """An event too large even alone (413) is refused data, dead-lettered with its message."""
    refused = sink(Transport(answering(413, on=EVENTS_PATH))).submit([Parcel("m1", (job("a"),))])
    assert list(refused) == ["m1"] and "HTTP 413" in refused["m1"]


def test_a_refused_key_is_read_again_once_and_the_request_resent() -> None:
    """403 with a reloadable key: one new read, the request resent with the new key, delivered."""
    reads: list[int] = []

    def reload() -> Secret:
        reads.append(1)
        return Secret(ROTATED)

    def answer(request: Request) -> Response:
        return Response(202 if request.headers["DD-API-KEY"] == ROTATED else 403, {}, b"{}")

    transport = Transport(answer)
    delivered = sink(transport, reload_key=reload)
    assert delivered.submit([Parcel("m1", (job("a"),))]) == {}
    assert len(reads) == 1
    assert [r.headers["DD-API-KEY"] for r in transport.sent][:2] == [KEY, ROTATED]


def test_a_key_still_refused_after_one_new_read_is_a_configuration_error() -> None:
    """The secret still holds the refused key: one read, then a configuration error; no further read."""
    reads: list[int] = []

    def reload() -> Secret:
        reads.append(1)
        return Secret(KEY)

    refusing = sink(Transport(answering(403)), reload_key=reload)
    for _ in range(2):
        with pytest.raises(ConfigurationError, match="refused the API key"):
            refusing.submit([Parcel("m1", (job("a"),))])
    assert len(reads) == 1


def test_without_a_secret_a_403_is_a_configuration_error_at_once() -> None:
    """A key from DD_API_KEY cannot be read anew: 403 stops the run after one request."""
    transport = Transport(answering(403))
    with pytest.raises(ConfigurationError):
        sink(transport).submit([Parcel("m1", (job("a"),))])
    assert len(transport.sent) == 1


def test_events_of_a_message_go_concurrently_on_a_bounded_pool() -> None:
    """40 events at 20 ms each: several in flight at once, never more than EVENT_WORKERS."""
    transport = Transport(answering(202), seconds=0.02)
    api = sink(transport)
    jobs = tuple(job(f"j{n}", aggregation=f"object-{n}") for n in range(40))
    started = time.monotonic()
    assert api.submit([Parcel("m1", jobs)]) == {}
    elapsed = time.monotonic() - started
    api.close()
    events = [r for r in transport.sent if r.path == EVENTS_PATH]
    assert len(events) == 40
    assert 2 <= transport.most_in_flight <= EVENT_WORKERS
    assert elapsed < 40 * 0.02


def test_a_configuration_error_on_one_event_stops_the_hand_off() -> None:
    """One event answered 405 among many: the hand-off raises, no parcel is reported refused."""
    hits = {"n": 0}
    lock = threading.Lock()

    def answer(request: Request) -> Response:
        if request.path != EVENTS_PATH:
            return Response(202, {}, b"{}")
        with lock:
            hits["n"] += 1
            status = 405 if hits["n"] == 5 else 202
        return Response(status, {}, b"{}")

    api = sink(Transport(answer))
    with pytest.raises(ConfigurationError, match="HTTP 405"):
        api.submit([Parcel("m1", tuple(job(f"j{n}", aggregation=f"o{n}") for n in range(20)))])
    api.close()


def item(key: str, aggregation: str, n: int, *, alert: str = "success") -> EventItem:
    """An event of message ``key`` and object ``aggregation``."""
    tags = ("cloud_job_metric", "bucket:b", f"status:{alert}", f"job:j{n}")
    return EventItem(key, Event(f"Job j{n}", "text", alert, aggregation, tags, NOW - n))


def test_events_within_the_limit_are_kept_as_they_are() -> None:
    """An object with at most MAX_EVENTS_PER_OBJECT events sends them all, unchanged."""
    items = [item("m1", "o1", n) for n in range(MAX_EVENTS_PER_OBJECT)]
    assert bounded_events(items) == items


def test_events_over_the_limit_become_the_first_ones_and_one_summary_per_object() -> None:
    """250 events of one object: 99 as they are and one summary counting the other 151 per alert type."""
    items = [item("m1", "o1", n, alert="error" if n % 50 == 0 else "success") for n in range(250)]
    items += [item("m1", "o2", n) for n in range(3)]
    bounded = bounded_events(items)
    first = [b for b in bounded if b.event.aggregation_key == "o1"]
    assert len(first) == MAX_EVENTS_PER_OBJECT
    assert first[:-1] == items[: MAX_EVENTS_PER_OBJECT - 1]
    summary = first[-1].event
    assert summary.title == "151 more jobs (3 error, 148 success)"
    assert summary.alert_type == "error"
    assert summary.aggregation_key == "o1"
    assert summary.tags == ("cloud_job_metric", "bucket:b")
    assert summary.date_happened == NOW - (MAX_EVENTS_PER_OBJECT - 1)
    assert "- Job j99" in summary.text and "… and 131 more" in summary.text
    assert [b for b in bounded if b.event.aggregation_key == "o2"] == items[250:]
    body = json.dumps({"title": summary.title, "text": summary.text})
    assert len(summary.title) <= 100 and len(summary.text) <= 4000, body


def test_the_sink_probe_gate_passes_once_and_closes_after_a_configuration_error() -> None:
    """The Lambda gate probes until a probe passes, then not again until it is closed."""
    answers = ["intake unreachable", None, "never asked"]
    calls: list[int] = []

    def probe() -> str | None:
        calls.append(1)
        return answers[len(calls) - 1]

    gate = SinkGate(probe)
    assert gate.problem() == "intake unreachable"
    assert gate.problem() is None
    assert gate.problem() is None
    assert len(calls) == 2
    gate.close()
    assert gate.problem() == "never asked" and len(calls) == 3
