"""The job-metadata object: strict parsing and validation into a :class:`JobReport` (pure).

The format stays compatible with the original ``{"job_success": true, "job_result": 123}``:

- ``job_success`` is required: a boolean, or 0/1;
- every other top-level number is a gauge; objects of numbers are flattened with ``.``;
  booleans other than ``job_success`` become 0/1;
- ``job_name`` (string), ``timestamp`` (epoch seconds or ISO 8601) and ``tags`` (string to string)
  are well-known fields, not gauges;
- other strings, nulls and lists are skipped and counted (forward compatible).

``NaN``/``Infinity`` (also numbers that overflow to infinity), nesting deeper than
:data:`MAX_DEPTH`, a non-object top level, invalid UTF-8 and a body over the size cap make the
object invalid.

One file may also hold many jobs (:func:`parse_job_file`): a top-level JSON array of job objects,
or JSON Lines (one job object per line; by a ``.jsonl``/``.ndjson`` name, or detected when the
text is several JSON values one after another). Each job is validated as above; one invalid job
rejects the whole file, naming the job's position and reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.core.timeutil import TimeOutOfRangeError, job_time
from app.errors import InvalidObjectError

MAX_DEPTH = 8
MAX_FIELDS = 1000
MAX_TAGS = 32
# File tags share the 8 KB DogStatsD datagram with the event text; keep them to a quarter of it.
MAX_TAGS_CHARS = 2000
DEFAULT_MAX_JOBS = 1000
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")
# What JSON itself counts as whitespace (RFC 8259, section 2): a line of only these is blank.
JSON_WHITESPACE = " \t\r\n"
WELL_KNOWN = frozenset({"job_success", "job_name", "timestamp", "tags"})
# A flattened name keeps this many characters (a metric name keeps 200): every leaf repeats its
# path, so a path of long keys over many small leaves would otherwise multiply a file's size in
# memory. Names of skipped fields are only counted, and keep fewer.
MAX_FIELD_NAME_CHARS = 512
SKIPPED_NAME_CHARS = 64


@dataclass(frozen=True, slots=True)
class JobReport:
    """A validated job-metadata object. ``fields`` are flattened names with their numbers."""

    success: bool
    job_name: str | None
    finished_at: float | None
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, float], ...]
    skipped_fields: tuple[str, ...] = ()


class _WellKnownFields(BaseModel):
    """The typed part of the document; the numeric rest is flattened by hand."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    job_success: bool
    job_name: str | None = Field(default=None, min_length=1, max_length=200)
    timestamp: float | None = None
    tags: dict[str, str] = Field(default_factory=dict, max_length=MAX_TAGS)

    @field_validator("job_success", mode="before")
    @classmethod
    def _zero_or_one(cls, value: object) -> object:
        if type(value) is int and value in (0, 1):
            return bool(value)
        return value

    @field_validator("tags")
    @classmethod
    def _bounded_tags(cls, value: dict[str, str]) -> dict[str, str]:
        total = sum(len(key) + len(text) + 1 for key, text in value.items())
        if total > MAX_TAGS_CHARS:
            raise ValueError(f"tags take {total} characters, over the limit of {MAX_TAGS_CHARS}")
        return value

    @field_validator("timestamp", mode="before")
    @classmethod
    def _epoch_or_iso(cls, value: object) -> object:
        # ISO 8601 and epoch seconds share one range check (app.core.timeutil): a time outside it
        # is an invalid field at once, never an error later when the time is formatted or compared.
        if isinstance(value, bool):
            raise ValueError("timestamp must be epoch seconds or ISO 8601, not a boolean")
        if isinstance(value, int | float | str):
            try:
                return job_time(value)
            except TimeOutOfRangeError as exc:
                raise ValueError(f"timestamp: {exc}") from None
            except ValueError:
                raise ValueError(f"timestamp {str(value)[:40]!r} is not ISO 8601") from None
        return value


def parse_job_metadata(raw: bytes, *, max_bytes: int) -> JobReport:
    """Validate the bytes of one job-metadata object; raise :class:`InvalidObjectError` if invalid."""
    document = _load_strict_json(_decode(raw, max_bytes=max_bytes))
    if not isinstance(document, dict):
        raise InvalidObjectError(
            f"top level is a JSON {type(document).__name__}, expected an object",
            reason="not-an-object",
        )
    return _job_report(document)


def parse_job_file(
    raw: bytes, *, max_bytes: int, name: str = "", max_jobs: int = DEFAULT_MAX_JOBS
) -> tuple[JobReport, ...]:
    """Validate a file of one or more jobs (see the module docstring); ``name`` is its key.

    Raises :class:`InvalidObjectError` for the whole file if any job is invalid, the file holds
    no job, or more than ``max_jobs``.
    """
    text = _decode(raw, max_bytes=max_bytes)
    base = name.removesuffix(".gz")
    if base.endswith(JSON_LINES_SUFFIXES):
        return _json_lines(text, max_jobs=max_jobs)
    try:
        document = _load_strict_json(text)
    except InvalidObjectError as exc:
        # Several JSON values one after another: JSON Lines without the file name saying so.
        if exc.reason == "invalid-json" and "Extra data" in str(exc) and _starts_with_a_line_object(text):
            return _json_lines(text, max_jobs=max_jobs)
        raise
    if isinstance(document, dict):
        return (_job_report(document),)
    if not isinstance(document, list):
        raise InvalidObjectError(
            f"top level is a JSON {type(document).__name__}, expected an object or an array of objects",
            reason="not-an-object",
        )
    _check_job_count(len(document), max_jobs=max_jobs)
    return tuple(_job_at(index, f"job {index}", document[index]) for index in range(len(document)))


def _json_lines(text: str, *, max_jobs: int) -> tuple[JobReport, ...]:
    lines = _lines(text)
    _check_job_count(len(lines), max_jobs=max_jobs)
    reports = []
    for index, (number, line) in enumerate(lines):
        where = f"job {index} (line {number})"
        try:
            document = _load_strict_json(line)
        except InvalidObjectError as exc:
            raise InvalidObjectError(f"{where}: {exc}", reason=exc.reason) from None
        reports.append(_job_at(index, where, document))
    return tuple(reports)


def _starts_with_a_line_object(text: str) -> bool:
    """Whether the first non-blank line is a whole JSON object (and more lines follow)."""
    lines = _lines(text)
    if len(lines) < 2:
        return False
    try:
        return isinstance(json.loads(lines[0][1]), dict)
    except (ValueError, RecursionError):
        return False


def _lines(text: str) -> list[tuple[int, str]]:
    """The non-blank lines of ``text`` with their 1-based numbers.

    JSON Lines ends a line with a line feed only (CR LF works too: the carriage return is JSON
    whitespace). ``str.splitlines`` would also split on U+2028, U+0085 and other characters a JSON
    string may hold as they are, cutting a valid line in two.
    """
    return [
        (number, line) for number, line in enumerate(text.split("\n"), start=1) if line.strip(JSON_WHITESPACE)
    ]


def _check_job_count(count: int, *, max_jobs: int) -> None:
    if count == 0:
        raise InvalidObjectError("the file holds no job", reason="no-jobs")
    if count > max_jobs:
        raise InvalidObjectError(
            f"the file holds {count} jobs, over the limit of {max_jobs}", reason="too-many-jobs"
        )


def _job_at(index: int, where: str, document: object) -> JobReport:
    if not isinstance(document, dict):
        raise InvalidObjectError(
            f"{where} is a JSON {type(document).__name__}, expected an object", reason="not-an-object"
        )
    try:
        return _job_report(document)
    except InvalidObjectError as exc:
        raise InvalidObjectError(f"{where}: {exc}", reason=exc.reason) from None


def _decode(raw: bytes, *, max_bytes: int) -> str:
    if len(raw) > max_bytes:
        raise InvalidObjectError(
            f"object is {len(raw)} bytes, over the {max_bytes}-byte cap", reason="object-too-large"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidObjectError(f"object is not UTF-8: {exc}", reason="invalid-utf8") from None


def _job_report(document: Mapping[str, Any]) -> JobReport:
    depth = _depth(document)
    if depth > MAX_DEPTH:
        raise InvalidObjectError(f"nesting depth {depth} exceeds {MAX_DEPTH}", reason="too-deep")
    try:
        known = _WellKnownFields.model_validate(document)
    except ValidationError as exc:
        raise InvalidObjectError(_describe(exc), reason="invalid-field") from None
    fields: list[tuple[str, float]] = []
    skipped: list[str] = []
    for name, value in _flatten(document, prefix="", top=True):
        if value is None:
            skipped.append(name[:SKIPPED_NAME_CHARS])
            continue
        fields.append((name, value))
        if len(fields) > MAX_FIELDS:
            # Stop at once: the rest of the object is not flattened for nothing.
            raise InvalidObjectError(
                f"more than {MAX_FIELDS} numeric fields, over the limit of {MAX_FIELDS}",
                reason="too-many-fields",
            )
    return JobReport(
        success=known.job_success,
        job_name=known.job_name,
        finished_at=known.timestamp,
        tags=tuple(sorted(known.tags.items())),
        fields=tuple(fields),
        skipped_fields=tuple(skipped),
    )


def _reject_constant(name: str) -> Any:
    raise InvalidObjectError(f"{name} is not valid JSON", reason="non-finite-number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidObjectError(f"number {text[:40]} overflows", reason="non-finite-number")
    return value


def _bounded_int(text: str) -> int:
    # A float holds at most 309 integer digits; longer literals cannot become a gauge, and past
    # 4,300 digits Python refuses to convert them at all.
    if len(text.lstrip("-")) > 309:
        raise InvalidObjectError(f"integer of {len(text)} digits overflows", reason="non-finite-number")
    return int(text)


def _load_strict_json(text: str) -> Any:
    try:
        return json.loads(
            text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_bounded_int
        )
    except RecursionError:
        raise InvalidObjectError("JSON nesting is too deep to parse", reason="too-deep") from None
    except ValueError as exc:
        raise InvalidObjectError(f"object is not valid JSON: {exc}", reason="invalid-json") from None


def _depth(value: object) -> int:
    """Nesting depth of containers (an object of scalars is 1), computed without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Iterator[object] = iter(item.values())
        elif isinstance(item, list):
            children = iter(item)
        else:
            continue
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            return level
        stack.extend((child, level + 1) for child in children)
    return deepest


def _flatten(document: Mapping[str, Any], *, prefix: str, top: bool) -> Iterator[tuple[str, float | None]]:
    """Yield ``(name, number)`` for numeric leaves and ``(name, None)`` for skipped ones."""
    for key, value in document.items():
        if top and key in WELL_KNOWN:
            continue
        name = f"{prefix}{key}"[:MAX_FIELD_NAME_CHARS]
        if isinstance(value, bool):
            yield name, 1.0 if value else 0.0
        elif isinstance(value, int | float):
            yield name, _as_float(name, value)
        elif isinstance(value, dict):
            yield from _flatten(value, prefix=f"{name}.", top=False)
        else:
            yield name, None


def _as_float(name: str, value: int | float) -> float:
    try:
        number = float(value)
    except OverflowError:
        raise InvalidObjectError(
            f"field {name[:80]!r} is too large for a gauge", reason="non-finite-number"
        ) from None
    return number


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(part) for part in error["loc"]) or "object"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
