"""botocore event hooks: count HTTP requests per service/operation and add a fixed delay per call.

Both hooks hang off ``before-send``, which botocore fires once per HTTP attempt (retries included)
just before the request goes on the wire, so the counts are what the emulator actually served and
the delay stands for one network round trip per request.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any


class RequestCounter:
    """Thread-safe count of HTTP requests, keyed by ``service.Operation``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def hook(self, event_name: str, **_: Any) -> None:
        # event_name is "before-send.<service>.<Operation>"
        key = event_name.partition(".")[2]
        with self._lock:
            self._counts[key] += 1

    def by_operation(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    def service_total(self, service: str) -> int:
        prefix = service + "."
        with self._lock:
            return sum(n for key, n in self._counts.items() if key.startswith(prefix))


def make_delay_hook(delay_seconds: float) -> Any:
    """Return a ``before-send`` handler that sleeps ``delay_seconds`` and lets the request go on."""

    def delay(**_: Any) -> None:
        time.sleep(delay_seconds)
        # returning None tells botocore to send the request as usual

    return delay


def instrument(client: Any, counter: RequestCounter, delay_ms: float) -> None:
    """Register the counting hook (and the delay hook when ``delay_ms`` > 0) on one boto3 client."""
    events = client.meta.events
    events.register("before-send", counter.hook, unique_id="bench-count")
    if delay_ms > 0:
        events.register("before-send", make_delay_hook(delay_ms / 1000.0), unique_id="bench-delay")
