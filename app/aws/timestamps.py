"""Timestamps in AWS responses, parsed without dateutil in the two forms AWS actually sends.

botocore gives every response timestamp to dateutil's general-purpose parser, which takes about
0.1 ms a value on a small machine. S3 answers every GetObject with a ``Last-Modified`` header, so
that one parse was about 4 % of the drain's CPU. Headers carry IMF-fixdate
(``Fri, 27 Nov 2026 19:05:33 GMT``) and bodies ISO 8601 (``2026-11-27T19:05:33.000Z``); both have
exact parsers in the standard library. Anything else (epoch seconds, a naive or unusual form) goes
to botocore's own parser, so the result is always the instant botocore would have returned.
"""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime

from botocore.session import Session as BotocoreSession
from botocore.utils import parse_timestamp as botocore_parse_timestamp


def parse_timestamp(value: str | float) -> datetime:
    """``value`` as a datetime: the instant botocore's default parser reads in it."""
    if isinstance(value, str):
        parsed: datetime | None = None
        try:
            if value.endswith(" GMT"):
                parsed = parsedate_to_datetime(value)
            elif "T" in value:
                parsed = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    # Epoch seconds come as numbers from JSON bodies; their text reads back to the same float.
    result: datetime = botocore_parse_timestamp(value if isinstance(value, str) else str(value))
    return result


def use_fast_timestamps(session: BotocoreSession) -> None:
    """Make clients created from ``session`` from now on parse timestamps with :func:`parse_timestamp`."""
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
