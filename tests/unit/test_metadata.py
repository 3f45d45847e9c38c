"""The job-metadata object (DESIGN "Input 2"): strict parsing, flattening and rejection reasons."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from app.core.metadata import MAX_DEPTH, MAX_FIELDS, MAX_TAGS, JobReport, parse_job_metadata
from app.errors import InvalidObjectError, PermanentError

CAP = 1024 * 1024


def encode(document: object) -> bytes:
    """``document`` as the UTF-8 JSON bytes a producer would upload."""
    return json.dumps(document).encode("utf-8")


def parse(document: dict[str, Any], **extra: Any) -> JobReport:
    """Parse a job document (``job_success`` defaults to true) with the default cap."""
    return parse_job_metadata(encode({"job_success": True, **document, **extra}), max_bytes=CAP)


def reject(raw: bytes, *, max_bytes: int = CAP) -> InvalidObjectError:
    """Parse ``raw`` expecting an InvalidObjectError, and return it."""
    with pytest.raises(InvalidObjectError) as caught:
        parse_job_metadata(raw, max_bytes=max_bytes)
    return caught.value


def nested(depth: int) -> dict[str, Any]:
    """A job document whose containers nest ``depth`` levels (the top level counts as one)."""
    inner: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 2):
        inner = {"n": inner}
    return {"job_success": True, "n": inner}


def test_original_format_is_accepted() -> None:
    """The original {"job_success": true, "job_result": 123} gives a success with one gauge."""
    report = parse_job_metadata(b'{"job_success": true, "job_result": 123}', max_bytes=CAP)

    assert report == JobReport(
        success=True, job_name=None, finished_at=None, tags=(), fields=(("job_result", 123.0),)
    )


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False), (1, True), (0, False)])
def test_job_success_accepts_booleans_and_zero_or_one(value: object, expected: bool) -> None:
    """job_success may be a boolean or the integers 0 and 1."""
    assert parse_job_metadata(encode({"job_success": value}), max_bytes=CAP).success is expected


@pytest.mark.parametrize(
    "document",
    [
        {"job_success": "true"},
        {"job_success": 2},
        {"job_success": -1},
        {"job_success": 1.0},
        {"job_success": None},
        {"job_result": 1},
    ],
    ids=["string", "two", "minus-one", "float-one", "null", "missing"],
)
def test_job_success_other_values_are_rejected(document: dict[str, Any]) -> None:
    """A job_success that is not a boolean, 0 or 1 (or is missing) makes the object invalid."""
    error = reject(encode(document))

    assert error.reason == "invalid-field"
    assert "job_success" in str(error)


def test_nested_objects_are_flattened_with_dots() -> None:
    """{"images": {"train": 10}} becomes images.train, at every depth."""
    report = parse({"images": {"train": 10, "test": {"clean": 2.5}}, "loss": 0.25})

    assert dict(report.fields) == {"images.train": 10.0, "images.test.clean": 2.5, "loss": 0.25}


def test_field_order_follows_the_document() -> None:
    """Fields keep the document's order, so the event text reads like the file."""
    report = parse({"zeta": 1, "alpha": 2, "mid": {"b": 3, "a": 4}})

    assert [name for name, _ in report.fields] == ["zeta", "alpha", "mid.b", "mid.a"]


def test_other_booleans_become_zero_or_one() -> None:
    """Booleans other than job_success are gauges of 1 and 0."""
    report = parse({"cache_hit": True, "nested": {"retried": False}})

    assert dict(report.fields) == {"cache_hit": 1.0, "nested.retried": 0.0}


def test_strings_nulls_and_lists_are_skipped_and_counted() -> None:
    """Non-numeric values are skipped (forward compatible), named in skipped_fields."""
    report = parse({"result": 7, "note": "ok", "owner": None, "shards": [1, 2], "sub": {"why": "x"}})

    assert report.fields == (("result", 7.0),)
    assert report.skipped_fields == ("note", "owner", "shards", "sub.why")


def test_well_known_fields_are_not_gauges() -> None:
    """job_success, job_name, timestamp and tags never show up as fields."""
    report = parse({"job_name": "train", "timestamp": 1_700_000_000, "tags": {"team": "ml"}, "n": 1})

    assert report.fields == (("n", 1.0),)
    assert report.skipped_fields == ()


def test_well_known_names_nested_below_top_level_are_ordinary_fields() -> None:
    """Only the top-level timestamp is special; stats.timestamp is a gauge like any other."""
    report = parse({"stats": {"timestamp": 5, "job_success": 1}})

    assert dict(report.fields) == {"stats.timestamp": 5.0, "stats.job_success": 1.0}


def test_job_name_and_tags_are_kept() -> None:
    """job_name is kept as given and tags are sorted key/value pairs."""
    report = parse({"job_name": "nightly-etl", "tags": {"team": "data", "env": "prod"}})

    assert report.job_name == "nightly-etl"
    assert report.tags == (("env", "prod"), ("team", "data"))


def test_large_integers_that_fit_a_float_are_accepted() -> None:
    """A 300-digit integer is a (large) finite gauge, not an error."""
    assert parse({"big": 10**300}).fields == (("big", 1e300),)


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (1_795_572_930, 1_795_572_930.0),
        (1_795_572_930.5, 1_795_572_930.5),
        ("2026-11-25T10:15:30Z", datetime(2026, 11, 25, 10, 15, 30, tzinfo=UTC).timestamp()),
        ("2026-11-25T12:15:30+02:00", datetime(2026, 11, 25, 10, 15, 30, tzinfo=UTC).timestamp()),
        ("2026-11-25T10:15:30", datetime(2026, 11, 25, 10, 15, 30, tzinfo=UTC).timestamp()),
        ("2026-11-25T10:15:30.250Z", datetime(2026, 11, 25, 10, 15, 30, 250000, tzinfo=UTC).timestamp()),
    ],
    ids=["epoch-int", "epoch-float", "iso-z", "iso-offset", "iso-naive-is-utc", "iso-fraction"],
)
def test_timestamp_forms_become_epoch_seconds(timestamp: object, expected: float) -> None:
    """Epoch seconds and ISO 8601 (Z, offset, naive as UTC) all become epoch seconds."""
    assert parse({"timestamp": timestamp}).finished_at == pytest.approx(expected)


def invalid_cases() -> dict[str, tuple[bytes, str]]:
    """Invalid objects by name: their bytes and the reason code each must be rejected with."""
    base = '{"job_success": true, '
    return {
        "nan": (f'{base}"x": NaN}}'.encode(), "non-finite-number"),
        "infinity": (f'{base}"x": Infinity}}'.encode(), "non-finite-number"),
        "minus-infinity": (f'{base}"x": -Infinity}}'.encode(), "non-finite-number"),
        "overflowing-float": (f'{base}"x": 1e999}}'.encode(), "non-finite-number"),
        "overflowing-negative-float": (f'{base}"x": -1e999}}'.encode(), "non-finite-number"),
        "overflowing-nested-float": (f'{base}"x": {{"y": 1e999}}}}'.encode(), "non-finite-number"),
        "overflowing-int-literal": (f'{base}"x": {10**400}}}'.encode(), "non-finite-number"),
        "too-deep": (encode(nested(MAX_DEPTH + 1)), "too-deep"),
        "too-deep-through-lists": (encode({"job_success": True, "x": [[[[[[[[[1]]]]]]]]]}), "too-deep"),
        "very-deep-arrays": (b"[" * 100_000 + b"]" * 100_000, "too-deep"),
        "very-deep-objects": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "too-deep"),
        "very-deep-unclosed": (b"[" * 100_000, "too-deep"),
        "top-level-array": (b'[{"job_success": true}]', "not-an-object"),
        "top-level-string": (b'"job_success"', "not-an-object"),
        "top-level-number": (b"123", "not-an-object"),
        "top-level-null": (b"null", "not-an-object"),
        "invalid-utf8": (b'{"job_success": true, "x": "\xff\xfe"}', "invalid-utf8"),
        "latin1-text": ('{"job_success": true, "n": "café"}'.encode("latin-1"), "invalid-utf8"),
        "not-json": (b"job_success=true", "invalid-json"),
        "empty": (b"", "invalid-json"),
        "trailing-garbage": (b'{"job_success": true} x', "invalid-json"),
        "bad-timestamp-string": (encode({"job_success": True, "timestamp": "last tuesday"}), "invalid-field"),
        "boolean-timestamp": (encode({"job_success": True, "timestamp": True}), "invalid-field"),
        "list-timestamp": (encode({"job_success": True, "timestamp": [1]}), "invalid-field"),
        "tags-not-an-object": (encode({"job_success": True, "tags": ["team:ml"]}), "invalid-field"),
        "tag-value-number": (encode({"job_success": True, "tags": {"shard": 3}}), "invalid-field"),
        "tag-value-null": (encode({"job_success": True, "tags": {"team": None}}), "invalid-field"),
        "tag-value-object": (encode({"job_success": True, "tags": {"team": {"a": "b"}}}), "invalid-field"),
        "too-many-tags": (
            encode({"job_success": True, "tags": {f"k{i}": "v" for i in range(MAX_TAGS + 1)}}),
            "invalid-field",
        ),
        "job-name-number": (encode({"job_success": True, "job_name": 5}), "invalid-field"),
        "job-name-empty": (encode({"job_success": True, "job_name": ""}), "invalid-field"),
        "too-many-fields": (
            encode({"job_success": True, **{f"f{i}": i for i in range(MAX_FIELDS + 1)}}),
            "too-many-fields",
        ),
    }


INVALID = invalid_cases()


@pytest.mark.parametrize(("raw", "reason"), INVALID.values(), ids=INVALID.keys())
def test_invalid_objects_are_rejected_with_their_reason(raw: bytes, reason: str) -> None:
    """Each invalid object raises InvalidObjectError (permanent) with its specific reason code."""
    error = reject(raw)

    assert isinstance(error, PermanentError)
    assert error.reason == reason


@pytest.mark.parametrize("timestamp", [10**400, -(10**400)], ids=["huge-positive-int", "huge-negative-int"])
def test_timestamp_that_overflows_a_float_is_invalid_not_a_crash(timestamp: int) -> None:
    """A 400-digit integer timestamp is an invalid object, not an OverflowError escaping the parser."""
    raw = f'{{"job_success": true, "timestamp": {timestamp}}}'.encode()

    error = reject(raw)

    assert error.reason in {"invalid-field", "non-finite-number"}


def test_nesting_at_the_limit_is_accepted() -> None:
    """Exactly MAX_DEPTH levels of nesting is still valid."""
    report = parse_job_metadata(encode(nested(MAX_DEPTH)), max_bytes=CAP)

    assert len(report.fields) == 1
    assert report.fields[0][0].endswith(".leaf")


def test_oversize_object_is_rejected_before_parsing() -> None:
    """A body one byte over the cap is object-too-large even if it is not JSON at all."""
    error = reject(b"x" * 101, max_bytes=100)

    assert error.reason == "object-too-large"
    assert "100" in str(error)


def test_object_exactly_at_the_cap_is_accepted() -> None:
    """A body of exactly max_bytes is within the cap."""
    raw = b'{"job_success": true}'

    assert parse_job_metadata(raw, max_bytes=len(raw)).success is True


def test_field_limit_is_inclusive() -> None:
    """Exactly MAX_FIELDS numeric fields are accepted."""
    report = parse({f"f{i}": i for i in range(MAX_FIELDS)})

    assert len(report.fields) == MAX_FIELDS


def test_tag_limit_is_inclusive() -> None:
    """Exactly MAX_TAGS tags are accepted."""
    report = parse({"tags": {f"k{i:02d}": "v" for i in range(MAX_TAGS)}})

    assert len(report.tags) == MAX_TAGS


def test_unicode_names_and_values_are_fine() -> None:
    """Unicode field names and values in valid UTF-8 parse normally."""
    report = parse({"job_name": "entraînement", "précision": 0.9})

    assert report.job_name == "entraînement"
    assert report.fields == (("précision", 0.9),)
