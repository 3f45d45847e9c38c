"""Time parsing shared by the envelope and the metadata model (pure). All times are epoch seconds.

A job's time (the file's ``timestamp``, or the notification's ``eventTime``) must lie in
:data:`EARLIEST_EPOCH_SECONDS` .. :data:`LATEST_EPOCH_SECONDS` (1970-01-01 inclusive to 2100-01-01
exclusive, UTC), whether it was written as ISO 8601 or as epoch seconds. The bounds are fixed, not
relative to the clock, so a message gets the same verdict on every delivery; the lower one is where
epoch seconds start (a negative one is no job's time), the upper one is beyond any clock this
product will run on and still below the first millisecond timestamp (a unit mistake). Everything
in range can be formatted as a date and compared with the clock: nothing downstream can fail on it.
"""

from __future__ import annotations

from datetime import UTC, datetime

EARLIEST_EPOCH_SECONDS = 0  # 1970-01-01T00:00:00Z
LATEST_EPOCH_SECONDS = 4_102_444_800  # 2100-01-01T00:00:00Z, excluded
ACCEPTED_RANGE = "1970-01-01T00:00:00Z (epoch 0) to before 2100-01-01T00:00:00Z (epoch 4102444800)"


class TimeOutOfRangeError(ValueError):
    """A well-formed time outside the accepted range."""


def iso_to_epoch(text: str) -> float:
    """Parse an ISO 8601 time (``Z`` or an offset; none means UTC); raise ``ValueError`` if not one.

    The result is not range-checked (``--since`` takes any date); a job's time goes through
    :func:`job_time` instead.
    """
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def in_range(seconds: float) -> bool:
    """Whether epoch ``seconds`` (an int of any size, or a float) lies in the accepted range."""
    # Comparing an int with these bounds is exact, so a huge integer never meets float().
    return EARLIEST_EPOCH_SECONDS <= seconds < LATEST_EPOCH_SECONDS


def job_time(value: str | float) -> float:
    """A job's time from ISO 8601 text or epoch seconds, range-checked.

    Raises :class:`TimeOutOfRangeError` for a time outside the accepted range and ``ValueError``
    for text that is not ISO 8601.
    """
    seconds = iso_to_epoch(value) if isinstance(value, str) else value
    if not in_range(seconds):
        raise TimeOutOfRangeError(f"time {_shown(value)} is outside the accepted range, {ACCEPTED_RANGE}")
    return float(seconds)


def _shown(value: str | float) -> str:
    if isinstance(value, str):
        return repr(value[:40])
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}…({len(text)} digits)"
