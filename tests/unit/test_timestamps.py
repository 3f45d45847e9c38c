"""Response timestamps: the standard-library fast path reads the instant botocore's parser reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from botocore.utils import parse_timestamp as botocore_parse_timestamp
from hypothesis import given
from hypothesis import strategies as st

from app.aws.timestamps import parse_timestamp

instants = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@given(instants)
def test_http_dates_as_s3_sends_them(instant: datetime) -> None:
    """IMF-fixdate, as in S3's Last-Modified header: same instant, in UTC."""
    text = format_datetime(instant.replace(microsecond=0), usegmt=True)  # Fri, 27 Nov 2026 19:05:33 GMT
    assert parse_timestamp(text) == botocore_parse_timestamp(text)
    assert parse_timestamp(text).utcoffset() == timedelta(0)


@given(instants, offsets, st.sampled_from(["seconds", "milliseconds", "microseconds"]))
def test_iso_8601_in_any_offset(instant: datetime, offset: timezone, precision: str) -> None:
    """ISO 8601 as XML bodies carry it, with Z or any offset and any precision."""
    text = instant.astimezone(offset).isoformat(timespec=precision).replace("+00:00", "Z")
    assert parse_timestamp(text) == botocore_parse_timestamp(text)


@pytest.mark.parametrize(
    "value",
    [
        1_700_000_000,
        1_700_000_000.25,
        "1700000000",
        "2026-11-27T19:05:33",  # naive: botocore's own reading, whatever it is
        "Fri, 27 Nov 2026 19:05:33 +0000",
        "2026-11-27T19:05:33.1234567Z",  # more digits than fromisoformat takes on older Pythons
    ],
)
def test_other_forms_read_as_botocore_reads_them(value: str | float) -> None:
    """Epoch seconds, naive and numeric-offset forms take botocore's path and get its answer."""
    assert parse_timestamp(value) == botocore_parse_timestamp(value if isinstance(value, str) else str(value))


def test_garbage_fails_as_botocore_fails() -> None:
    """Text that is no time is an error, not a wrong date."""
    with pytest.raises(ValueError, match="Invalid timestamp"):
        parse_timestamp("not a time GMT")
