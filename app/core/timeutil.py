"""Time parsing shared by the envelope and the metadata model (pure). All times are epoch seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_to_epoch(text: str) -> float:
    """Parse an ISO 8601 time (``Z`` or an offset; none means UTC); raise ``ValueError`` if not one."""
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
