"""A job's time, ISO 8601 or epoch seconds, file or notification: one range, out of it invalid at once.

Also JSON Lines split on line feeds only, so a string holding U+2028 or U+0085 stays one line.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.envelope import parse_body
from app.core.metadata import parse_job_file, parse_job_metadata
from app.core.metrics import MetricOptions, job_metrics
from app.core.timeutil import LATEST_EPOCH_SECONDS, TimeOutOfRangeError, job_time
from app.errors import EnvelopeError, InvalidObjectError
from app.local.notifications import s3_event_record, s3_notification

OUT_OF_RANGE = [
    "0001-01-01T00:00:00+14:00",  # year 0 once the offset is applied
    "0001-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "2100-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-14:00",  # beyond year 9999 in UTC
    -1,
    -0.5,
    LATEST_EPOCH_SECONDS,
    1.7e12,  # milliseconds, a unit mistake
    10**300,
    float("nan"),
]
IN_RANGE = [
    ("1970-01-01T00:00:00Z", 0.0),
    ("1970-01-01T00:00:00-01:00", 3600.0),
    ("2099-12-31T23:59:59Z", LATEST_EPOCH_SECONDS - 1.0),
    (0, 0.0),
    (1_700_000_000, 1_700_000_000.0),
    (LATEST_EPOCH_SECONDS - 1, LATEST_EPOCH_SECONDS - 1.0),
]


def job_file(timestamp: object) -> bytes:
    """A job file with ``timestamp`` (ISO text or epoch seconds)."""
    return json.dumps({"job_success": True, "timestamp": timestamp}).encode()


@pytest.mark.parametrize("value", OUT_OF_RANGE, ids=str)
def test_job_time_refuses_out_of_range_values(value: str | float) -> None:
    """Out of 1970..2100 is TimeOutOfRangeError, whether ISO 8601 or epoch seconds."""
    with pytest.raises(TimeOutOfRangeError, match="outside the accepted range"):
        job_time(value)


@pytest.mark.parametrize(("value", "expected"), IN_RANGE, ids=str)
def test_job_time_accepts_the_range_edges(value: str | float, expected: float) -> None:
    """The first second of 1970 and the last before 2100 are accepted, as text or as numbers."""
    assert job_time(value) == expected


@pytest.mark.parametrize(
    "value", [v for v in OUT_OF_RANGE if not (isinstance(v, float) and math.isnan(v))], ids=str
)
def test_an_out_of_range_file_timestamp_is_an_invalid_field(value: str | float) -> None:
    """The file's timestamp out of range rejects the object as invalid-field, never a later crash."""
    with pytest.raises(InvalidObjectError, match="outside the accepted range") as raised:
        parse_job_metadata(job_file(value), max_bytes=4096)
    assert raised.value.reason == "invalid-field"


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.just(UTC)))
def test_every_accepted_time_can_be_formatted_and_mapped(when: datetime) -> None:
    """Any time in range, ISO or numeric, becomes metrics without an error (the year-0 crash is gone)."""
    for written in (when.isoformat(), when.timestamp()):
        report = parse_job_metadata(job_file(written), max_bytes=4096)
        ref = parse_body(s3_notification(s3_event_record("b", "k.json")))[0]
        assert report.finished_at == pytest.approx(when.timestamp())
        job_metrics(report, ref, MetricOptions(), now=when.timestamp() + 30 * 86400)  # type: ignore[arg-type]


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59Z"])
def test_an_out_of_range_event_time_rejects_the_record_as_invalid_field(when: str) -> None:
    """An eventTime out of range (S3 never writes one) is an invalid-field envelope error, not a crash."""
    record = s3_event_record("b", "k.json")
    record["eventTime"] = when

    with pytest.raises(EnvelopeError, match=r"eventTime.*outside the accepted range") as raised:
        parse_body(s3_notification(record))
    assert raised.value.reason == "invalid-field"


def test_an_out_of_range_eventbridge_time_rejects_the_event() -> None:
    """The EventBridge ``time`` takes the same check."""
    body = {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "time": "9999-12-31T23:59:59Z",
        "detail": {"bucket": {"name": "b"}, "object": {"key": "k.json"}},
    }
    with pytest.raises(EnvelopeError, match=r"time.*outside the accepted range"):
        parse_body(json.dumps(body))


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c"])
def test_json_lines_keep_a_string_holding_a_unicode_line_separator_whole(separator: str) -> None:
    """A JSON string may hold U+2028, U+0085 and the like raw: the line is one job, not invalid-json."""
    first = json.dumps({"job_success": True, "job_name": f"a{separator}b", "n": 1}, ensure_ascii=False)
    second = json.dumps({"job_success": False, "n": 2})
    text = f"{first}\n{second}\r\n\n"

    reports = parse_job_file(text.encode(), max_bytes=4096, name="jobs.jsonl")

    assert [r.job_name for r in reports] == [f"a{separator}b", None]
    assert [r.fields for r in reports] == [(("n", 1.0),), (("n", 2.0),)]


def test_json_lines_detected_without_the_suffix_keep_a_separator_inside_a_string() -> None:
    """The same without a .jsonl name: detected as JSON Lines, two jobs."""
    first = json.dumps({"job_success": True, "job_name": "x\u2028y"}, ensure_ascii=False)
    text = f"{first}\n{json.dumps({'job_success': True})}\n"

    assert len(parse_job_file(text.encode(), max_bytes=4096, name="jobs.json")) == 2


def test_a_line_of_only_a_unicode_separator_is_not_blank() -> None:
    """Only JSON whitespace makes a line blank: a lone U+2028 is a line, and not JSON."""
    text = '{"job_success": true}\n\u2028\n'

    with pytest.raises(InvalidObjectError, match="line 2") as raised:
        parse_job_file(text.encode(), max_bytes=4096, name="jobs.jsonl")
    assert raised.value.reason == "invalid-json"
