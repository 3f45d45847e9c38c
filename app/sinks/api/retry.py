"""Retries within one hand-off: which answers are worth another attempt, and how long to wait.

408, 429, 5xx, timeouts and refused connections are transient. The wait doubles from
``base_seconds`` with full jitter, capped by ``max_delay_seconds``; a ``Retry-After`` or
``X-RateLimit-Reset`` header (seconds, as Datadog sends them: docs.datadoghq.com/api/latest/rate-limits)
is waited out instead, unless it is longer than ``max_delay_seconds``, in which case the message is
better off back on the queue with its visibility backoff. All durations are seconds.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from app.errors import IntakeUnavailableError
from app.sinks.api.transport import Request, Response, Transport, masked, secret_values

log = logging.getLogger(__name__)

TRANSIENT_STATUSES = frozenset({408, 429})


def is_transient(status: int) -> bool:
    """True for answers that may succeed on another attempt."""
    return status in TRANSIENT_STATUSES or status >= 500


def requested_wait_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait the intake asked for (``Retry-After``, then ``X-RateLimit-Reset``), if any."""
    for name in ("retry-after", "x-ratelimit-reset"):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return max(0.0, float(raw.strip()))
        except ValueError:
            continue
    return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry one request (``attempts`` counts the first one)."""

    attempts: int = 4
    base_seconds: float = 0.25
    max_delay_seconds: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def delay(self, attempt: int, answer: Response | None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up now."""
        if attempt >= self.attempts:
            return None
        asked = requested_wait_seconds(answer.headers) if answer is not None else None
        if asked is not None:
            return asked if asked <= self.max_delay_seconds else None
        ceiling = min(self.max_delay_seconds, self.base_seconds * 2 ** (attempt - 1))
        return self.rng.uniform(ceiling / 2, ceiling)


def send_with_retries(transport: Transport, request: Request, policy: RetryPolicy) -> Response:
    """Send until an answer that is not transient; raise ``IntakeUnavailableError`` when out of tries."""
    attempt = 0
    while True:
        attempt += 1
        answer: Response | None = None
        problem: str
        try:
            answer = transport.send(request)
        except IntakeUnavailableError as exc:
            problem = masked(str(exc), request.headers)
        else:
            if not is_transient(answer.status):
                return answer
            # Masked before any log line: a proxy may echo the request's headers in its answer.
            body = answer.text(120, hide=secret_values(request.headers))
            problem = f"{request.method} {request.path}: HTTP {answer.status} {body}"
        wait = policy.delay(attempt, answer)
        if wait is None:
            raise IntakeUnavailableError(f"{problem} (after {attempt} attempt(s))")
        log.info(
            "intake.retry path=%s attempt=%d wait=%.2fs problem=%s", request.path, attempt, wait, problem
        )
        policy.sleep(wait)
