"""How many events one object may send through the HTTP API, and the summary of the rest (pure).

``POST /api/v1/events`` takes one event per request, so a file of 1,000 jobs is 1,000 requests:
at 50 ms a round trip, 50 s one after the other, most of a Lambda invocation. The sink sends a
message's events concurrently on a small pool, and each object sends at most
:data:`MAX_EVENTS_PER_OBJECT` events: the first ones as they are, then one summary event that
counts the rest per alert type and names a few of them. Metrics are never summarised: every
job's gauges, counter value and distributions still go out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from app.core.metrics import Event
from app.sinks.api.payload import MAX_EVENT_TEXT_CHARS, MAX_EVENT_TITLE_CHARS, EventItem

MAX_EVENTS_PER_OBJECT = 100
# The titles of the summarised events the summary lists.
SUMMARY_TITLES = 20


def bounded_events(items: Sequence[EventItem], *, limit: int = MAX_EVENTS_PER_OBJECT) -> list[EventItem]:
    """``items`` with at most ``limit`` events per message and object, the excess as one summary.

    Events of one object share their aggregation key (stable per object), so the key and the
    message identify the file. Order is kept; the summary takes the place of the first event it
    replaces.
    """
    groups: dict[tuple[str, str], list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault((item.key, item.event.aggregation_key), []).append(index)
    replaced: dict[int, EventItem] = {}
    dropped: set[int] = set()
    for indexes in groups.values():
        if len(indexes) <= limit:
            continue
        rest = indexes[limit - 1 :]
        first = items[rest[0]]
        replaced[rest[0]] = EventItem(first.key, summary_event([items[i].event for i in rest]))
        dropped.update(rest[1:])
    return [replaced.get(index, item) for index, item in enumerate(items) if index not in dropped]


def summary_event(events: Sequence[Event]) -> Event:
    """One event standing for ``events`` (all of one object): counts per alert type and some titles."""
    counts = Counter(event.alert_type for event in events)
    shown = ", ".join(f"{n} {alert}" for alert, n in sorted(counts.items()))
    lines = [f"{len(events)} more jobs of this file, summarised here: {shown}.", ""]
    lines.extend(f"- {event.title}" for event in events[:SUMMARY_TITLES])
    if len(events) > SUMMARY_TITLES:
        lines.append(f"- … and {len(events) - SUMMARY_TITLES} more")
    text = "\n".join(lines)[:MAX_EVENT_TEXT_CHARS]
    dates = [event.date_happened for event in events if event.date_happened is not None]
    first = events[0]
    return Event(
        title=f"{len(events)} more jobs ({shown})"[:MAX_EVENT_TITLE_CHARS],
        text=text,
        alert_type="error" if "error" in counts else first.alert_type,
        aggregation_key=first.aggregation_key,
        # The tags every summarised event carries (``status:`` only when they all share it).
        tags=tuple(tag for tag in first.tags if all(tag in event.tags for event in events[1:])),
        date_happened=max(dates) if dates else None,
    )
