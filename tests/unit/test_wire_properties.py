"""Property tests at the edges: untrusted bodies in, DogStatsD datagrams out.

1. Envelope parsing of any text or JSON yields records or an EnvelopeError, nothing else.
2. Metadata parsing of any bytes or JSON object yields a JobReport or an InvalidObjectError.
3. Whatever names, tags and job names a file holds, the datagrams a real ``datadog.DogStatsd``
   client sends for ``job_metrics`` parse with the strict wire parser and round-trip exactly.
"""

from __future__ import annotations

import json
import math
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from datadog.dogstatsd.base import DogStatsd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.core.envelope import ObjectRef, Skipped, parse_body
from app.core.metadata import MAX_FIELDS, JobReport, parse_job_metadata
from app.core.metrics import JobMetrics, MetricOptions, job_metrics
from app.errors import EnvelopeError, InvalidObjectError
from app.local.dogstatsd import EventLine, Line, Metric, parse_datagram
from app.sinks.dogstatsd import MetricSubmitter

NOW = 1_795_572_930.0
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies ----------------------------------------------------------------------------------

SYNTAX = st.sampled_from([":", "|", "#", ",", "\n", "\r", "@", " ", "\t", ".", "_", "\\n", "é", "数"])
# Pieces, not single characters: the escape sequence "\\n" is two characters long.
HOSTILE_TEXT = st.lists(st.one_of(SYNTAX, st.characters()), max_size=30).map("".join)

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)


def or_anything(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the well-shaped value, sometimes (about one in eight) any JSON value in its place."""
    return st.sampled_from([*[strategy] * 7, JSON_VALUES]).flatmap(lambda chosen: chosen)


S3_RECORDS = st.fixed_dictionaries(
    {
        "eventSource": or_anything(st.just("aws:s3")),
        "eventName": or_anything(
            st.sampled_from(["ObjectCreated:Put", "ObjectRemoved:Delete", "ObjectCreated:"])
        ),
        "eventTime": or_anything(st.text(max_size=30) | st.just("2026-11-25T10:15:30.123Z")),
        "s3": or_anything(
            st.fixed_dictionaries(
                {
                    "bucket": or_anything(
                        st.fixed_dictionaries({"name": or_anything(st.text(min_size=1, max_size=10))})
                    ),
                    "object": or_anything(
                        st.fixed_dictionaries(
                            {
                                "key": or_anything(st.text(min_size=1, max_size=20)),
                                "size": or_anything(st.integers(min_value=-5, max_value=10**12)),
                                "eTag": or_anything(st.text(max_size=10)),
                                "versionId": or_anything(st.text(max_size=10)),
                            }
                        )
                    ),
                }
            )
        ),
    }
)
EVENTBRIDGE = st.fixed_dictionaries(
    {
        "source": or_anything(st.just("aws.s3")),
        "detail-type": or_anything(st.sampled_from(["Object Created", "Object Deleted"])),
        "time": or_anything(st.text(max_size=30)),
        "detail": or_anything(
            st.fixed_dictionaries(
                {
                    "bucket": or_anything(
                        st.fixed_dictionaries({"name": or_anything(st.text(min_size=1, max_size=10))})
                    ),
                    "object": or_anything(
                        st.fixed_dictionaries(
                            {
                                "key": or_anything(st.text(min_size=1, max_size=20)),
                                "size": or_anything(st.integers(min_value=-5, max_value=100)),
                                "etag": or_anything(st.text(max_size=10)),
                                "version-id": or_anything(st.text(max_size=10)),
                            }
                        )
                    ),
                }
            )
        ),
    }
)
S3_NOTIFICATIONS = st.fixed_dictionaries(
    {"Records": or_anything(st.lists(or_anything(S3_RECORDS), min_size=1, max_size=3))}
)
TEST_EVENTS = st.fixed_dictionaries({"Event": or_anything(st.just("s3:TestEvent")), "Bucket": JSON_VALUES})
INNER_DOCUMENTS = st.one_of(S3_NOTIFICATIONS, EVENTBRIDGE, TEST_EVENTS, JSON_VALUES)


def sns_of(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """SNS notifications whose Message is usually ``inner`` as a JSON string."""
    return st.fixed_dictionaries(
        {
            "Type": st.just("Notification"),
            "Message": or_anything(inner.map(json.dumps) | st.text(max_size=20)),
        }
    )


ENVELOPES = st.one_of(INNER_DOCUMENTS, sns_of(INNER_DOCUMENTS), sns_of(sns_of(S3_NOTIFICATIONS)))

METADATA_KEYS = st.one_of(
    st.sampled_from(["job_success", "job_name", "timestamp", "tags"]), st.text(max_size=8)
)
METADATA_OBJECTS = st.dictionaries(METADATA_KEYS, JSON_VALUES, max_size=6)
JOB_SUCCESS = st.sampled_from([True, False, 0, 1])


# --- (1) envelope --------------------------------------------------------------------------------


def assert_records(body: str) -> None:
    """``parse_body(body)`` returns well-formed records or raises EnvelopeError, nothing else."""
    try:
        records = parse_body(body)
    except EnvelopeError as exc:
        assert exc.reason == "invalid-envelope"
        return
    assert isinstance(records, tuple)
    assert records
    for record in records:
        assert isinstance(record, ObjectRef | Skipped)
        if isinstance(record, ObjectRef):
            assert isinstance(record.bucket, str)
            assert isinstance(record.key, str)
            assert record.bucket
            assert record.key
            assert record.size is None or (type(record.size) is int and record.size >= 0)
            assert record.event_time is None or math.isfinite(record.event_time)


@PROPERTY_SETTINGS
@given(st.text())
def test_any_text_body_is_records_or_envelope_error(body: str) -> None:
    """Any text as an SQS body parses into records or raises EnvelopeError."""
    assert_records(body)


@PROPERTY_SETTINGS
@given(JSON_VALUES)
def test_any_json_body_is_records_or_envelope_error(document: Any) -> None:
    """Any JSON value as an SQS body parses into records or raises EnvelopeError."""
    assert_records(json.dumps(document))


@PROPERTY_SETTINGS
@given(ENVELOPES)
@example({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": []}]})
@example({"Type": "Notification", "Message": json.dumps({"Type": "Notification", "Message": "{}"})})
def test_notification_shaped_bodies_are_records_or_envelope_error(document: Any) -> None:
    """S3, SNS and EventBridge shapes with any value in any slot never raise anything else."""
    assert_records(json.dumps(document))


# --- (2) metadata --------------------------------------------------------------------------------


def assert_report(raw: bytes, max_bytes: int = 1024 * 1024) -> None:
    """Parsing ``raw`` yields a consistent JobReport or raises InvalidObjectError, nothing else."""
    try:
        report = parse_job_metadata(raw, max_bytes=max_bytes)
    except InvalidObjectError as exc:
        assert exc.reason
        return
    assert isinstance(report, JobReport)
    assert isinstance(report.success, bool)
    assert len(report.fields) <= MAX_FIELDS
    assert all(isinstance(v, float) and math.isfinite(v) for _, v in report.fields)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in report.tags)
    assert report.finished_at is None or math.isfinite(report.finished_at)


@PROPERTY_SETTINGS
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=400))
def test_any_bytes_are_a_report_or_invalid(raw: bytes, max_bytes: int) -> None:
    """Arbitrary bytes under any cap are a JobReport or an InvalidObjectError."""
    assert_report(raw, max_bytes)


@PROPERTY_SETTINGS
@given(METADATA_OBJECTS, st.one_of(st.none(), JOB_SUCCESS))
@example({"timestamp": 10**400}, True)
def test_any_json_object_is_a_report_or_invalid(document: dict[str, Any], success: object) -> None:
    """Arbitrary JSON objects (with or without a valid job_success) are a JobReport or invalid."""
    if success is not None:
        document = {**document, "job_success": success}
    assert_report(json.dumps(document).encode("utf-8"))


# --- (3) the wire --------------------------------------------------------------------------------


@dataclass
class Wire:
    """A real DogStatsd client writing into one end of a socketpair, and what the other end read."""

    client: DogStatsd
    datagrams: list[bytes] = field(default_factory=list)

    def lines(self) -> list[Line]:
        """Every datagram, parsed strictly (raises on any malformed line)."""
        return [line for datagram in self.datagrams for line in parse_datagram(datagram)]


@contextmanager
def wire() -> Iterator[Wire]:
    """A DogStatsd client (as the forwarder builds it) whose socket is a Unix datagram socketpair.

    DogStatsd exposes a public ``socket`` setter; a connected socket assigned there is used for
    every send, so the real client serialises and writes. A reader thread drains the other end
    (a socketpair holds only a few datagrams) until an empty datagram marks the end.
    """
    writer, reader = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    writer.settimeout(5)
    client = DogStatsd(disable_buffering=True, disable_telemetry=False)
    client.socket = writer
    result = Wire(client)

    def drain() -> None:
        while datagram := reader.recv(65536):
            result.datagrams.append(datagram)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        writer.send(b"")
        thread.join(timeout=5)
        client.socket = None
        writer.close()
        reader.close()
    assert not thread.is_alive()


def send(job: JobMetrics) -> list[Line]:
    """Submit ``job`` through MetricSubmitter and the real client; return the parsed lines."""
    with wire() as captured:
        MetricSubmitter(captured.client).send([job])
        constant_tags = tuple(captured.client.constant_tags)
    lines = captured.lines()
    # The client appends its own constant tags (from DD_ENV and the like) after ours.
    assert all(line.tags[len(line.tags) - len(constant_tags) :] == constant_tags for line in lines)
    return [strip_tags(line, len(constant_tags)) for line in lines]


def strip_tags(line: Line, count: int) -> Line:
    """``line`` without its last ``count`` tags."""
    return replace(line, tags=line.tags[: len(line.tags) - count])


def expected_metrics(job: JobMetrics) -> list[Metric]:
    """The lines the strict parser must read back for ``job``: counter, gauges, distributions."""
    run = Metric(job.run.name, job.run.value, "d", job.run.tags)
    gauges = [Metric(g.name, g.value, "g", g.tags, g.timestamp) for g in job.gauges]
    return [run, *gauges, *(Metric(d.name, d.value, "d", d.tags) for d in job.distributions)]


REPORTS = st.builds(
    JobReport,
    success=st.booleans(),
    job_name=st.none() | HOSTILE_TEXT.filter(bool),
    finished_at=st.none() | st.floats(min_value=NOW - 7200, max_value=NOW + 7200),
    tags=st.lists(st.tuples(HOSTILE_TEXT, HOSTILE_TEXT), max_size=6).map(tuple),
    fields=st.lists(
        st.tuples(HOSTILE_TEXT, st.floats(allow_nan=False, allow_infinity=False)), max_size=8
    ).map(tuple),
    skipped_fields=st.lists(HOSTILE_TEXT, max_size=3).map(tuple),
)
REFS = st.builds(
    ObjectRef,
    bucket=HOSTILE_TEXT.filter(bool),
    key=HOSTILE_TEXT.filter(bool),
    size=st.none(),
    etag=st.none() | st.text(max_size=10),
    version_id=st.none() | HOSTILE_TEXT,
    event_time=st.none() | st.floats(min_value=NOW - 7200, max_value=NOW + 7200),
)
OPTIONS = st.builds(
    MetricOptions,
    namespace=st.sampled_from(["cloud_job", "", "batch.jobs", "9 bad|ns#"]),
    constant_tags=st.lists(HOSTILE_TEXT, max_size=3).map(tuple),
    distributions=st.booleans(),
)


@PROPERTY_SETTINGS
@given(REPORTS, REFS, OPTIONS)
@example(
    JobReport(
        success=False,
        job_name="evil|#,:\njob",
        finished_at=NOW,
        tags=(("team:x|y", "a,b#c\nd"),),
        fields=(("loss:1|c\n#x", 0.5), ("", 1.0)),
    ),
    ObjectRef("bucket|x", "key\nwith:syntax|#,.json", version_id="v\n1"),
    MetricOptions(constant_tags=("env:prod,x",)),
)
def test_real_client_datagrams_parse_and_round_trip(
    report: JobReport, ref: ObjectRef, options: MetricOptions
) -> None:
    """Every datagram for any job parses strictly; names, values, tags and the event round-trip."""
    job = job_metrics(report, ref, options, now=NOW)

    lines = send(job)

    metrics = [line for line in lines if isinstance(line, Metric)]
    events = [line for line in lines if isinstance(line, EventLine)]
    assert metrics == expected_metrics(job)
    assert len(events) == 1
    event, sent = events[0], job.event
    assert (event.title, event.alert_type, event.aggregation_key) == (
        sent.title,
        sent.alert_type,
        sent.aggregation_key,
    )
    assert event.tags == sent.tags
    assert event.date_happened == sent.date_happened
    # The wire escapes newlines as "\n"; the parser turns every "\n" sequence back into one.
    assert event.text == sent.text.replace("\\n", "\n")


def test_job_with_the_most_tags_allowed_is_delivered() -> None:
    """A valid job with 32 long tags and many fields is sent, not refused as an over-8 KB event."""
    # The client raises ValueError for events over 8 KB and MetricSubmitter turns that into
    # AgentUnavailableError, a transient error: such a valid file would be retried forever.
    report = JobReport(
        success=True,
        job_name="j" * 200,
        finished_at=NOW,
        tags=tuple((f"key{i:02d}", "v" * 300) for i in range(32)),
        fields=tuple((f"field_{i:04d}_" + "n" * 180, float(i)) for i in range(900)),
    )
    job = job_metrics(report, ObjectRef("bucket", "key.json"), MetricOptions(), now=NOW)

    lines = send(job)

    assert len([line for line in lines if isinstance(line, EventLine)]) == 1


@pytest.mark.parametrize("value", [0.0, -0.0, 1e-300, 1.7976931348623157e308, -123456789.125])
def test_extreme_gauge_values_round_trip(value: float) -> None:
    """Tiny, huge and negative gauge values survive the client's formatting."""
    report = JobReport(success=True, job_name=None, finished_at=NOW, tags=(), fields=(("x", value),))

    lines = send(job_metrics(report, ObjectRef("b", "k"), MetricOptions(distributions=True), now=NOW))

    sent = {(line.name, line.type): line for line in lines if isinstance(line, Metric)}
    for key in (("cloud_job.x", "g"), ("cloud_job.distribution.x", "d")):
        assert sent[key].value == value
        assert math.copysign(1.0, sent[key].value) == math.copysign(1.0, value)


# Four-byte letters (U+20000 onwards are CJK ideographs, word characters kept by the sanitiser).
WIDE_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20000, max_codepoint=0x2A6DF), max_size=200)
LONG_TEXT = st.one_of(WIDE_TEXT, HOSTILE_TEXT, st.text(max_size=200))


@PROPERTY_SETTINGS
@given(
    job_name=st.none() | LONG_TEXT.filter(bool),
    tags=st.lists(st.tuples(LONG_TEXT, LONG_TEXT), max_size=32).map(tuple),
    fields=st.lists(st.tuples(LONG_TEXT, st.floats(allow_nan=False)), max_size=4).map(tuple),
    finished_at=st.none() | st.floats(min_value=NOW - 7200, max_value=NOW + 7200),
    bucket=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=3, max_size=63),
    constant_tags=st.lists(st.text(max_size=40), max_size=4).map(tuple),
)
@example(
    job_name="\U00020000" * 200,
    tags=tuple((f"k{i}", "\U00020000" * 200) for i in range(32)),
    fields=(("f" * 200, 1.0),),
    finished_at=NOW,
    bucket="b" * 63,
    constant_tags=("env:" + "e" * 36,),
)
def test_every_datagram_fits_the_agents_8192_byte_buffer(
    job_name: str | None,
    tags: tuple[tuple[str, str], ...],
    fields: tuple[tuple[str, float], ...],
    finished_at: float | None,
    bucket: str,
    constant_tags: tuple[str, ...],
) -> None:
    """Whatever the tags, names and times, no datagram the real client sends passes 8,192 bytes."""
    report = JobReport(success=True, job_name=job_name, finished_at=finished_at, tags=tags, fields=fields)
    options = MetricOptions(constant_tags=constant_tags, distributions=True)
    job = job_metrics(report, ObjectRef(bucket, "k.json", event_time=NOW), options, now=NOW)

    with wire() as captured:
        MetricSubmitter(captured.client).send([job])

    assert captured.datagrams
    assert max(len(datagram) for datagram in captured.datagrams) <= 8192
    assert all(parse_datagram(datagram) for datagram in captured.datagrams)


def test_tags_past_the_byte_budget_are_left_out_and_named_in_the_event() -> None:
    """32 tags of 200 four-byte letters (the old 8,511-byte datagram) are trimmed by rule, and the event says so."""
    wide = "\U00020000" * 196
    report = JobReport(
        success=True,
        job_name="etl",
        finished_at=NOW,
        tags=tuple((f"k{i:02d}", wide) for i in range(32)),
        fields=(("x", 1.0),),
    )
    job = job_metrics(report, ObjectRef("bucket", "k.json"), MetricOptions(), now=NOW)

    with wire() as captured:
        MetricSubmitter(captured.client).send([job])

    assert max(len(datagram) for datagram in captured.datagrams) <= 8192
    kept = [tag for tag in job.run.tags if tag.startswith("k")]
    assert 0 < len(kept) < 32
    assert kept == [f"k{i:02d}:{wide}" for i in range(len(kept))]
    assert f"({32 - len(kept)} of the file's tags left out" in job.event.text
    assert {"cloud_job_metric", "status:success", "bucket:bucket", "job:etl"} <= set(job.run.tags)
