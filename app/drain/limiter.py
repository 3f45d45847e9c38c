"""How many messages the drain may hold at once: an adaptive bound (AIMD on measured latency).

A message is *in flight* from the moment a receive is about to ask for it until its batch is
settled (deleted, dead-lettered or backed off). Enough must be in flight to hide the round trips
(Little's law: rate = in flight / time per message), but more than the far side can serve only
adds waiting: latency grows while the rate stays put, and memory and the heartbeat's work grow
with it. So the bound moves:

- every *round* (one turnover of the pipeline: as many settled batches as the bound holds),
  the round's mean latency (receive → settled) is compared with the best recent round;
- if it is more than ``tolerance`` times worse, the far side is queueing: the bound shrinks by a
  quarter (multiplicative decrease);
- otherwise, if receivers had to wait for room during the round, the bound was what held the
  drain back: it doubles while starting (slow start, until the first decrease) and then grows by
  one batch per round (additive increase);
- a throttled or failed AWS call halves it at once;
- it never exceeds ``maximum`` (memory: every message in flight may hold its objects), nor what
  the measured rate settles in half a visibility timeout, so messages are not received only to
  wait in line until the heartbeat must extend them.

All durations are seconds. Thread-safe; the clock is injected.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

BATCH = 10
DECREASE_FACTOR = 0.75
BASELINE_ROUNDS = 20


class InFlightLimiter:
    """Admits receives while messages in flight stay under an adaptive limit."""

    def __init__(
        self,
        *,
        initial: int = 4 * BATCH,
        minimum: int = BATCH,
        maximum: int = 400,
        tolerance: float = 2.0,
        visibility_timeout_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not BATCH <= minimum <= maximum:
            raise ValueError(f"need {BATCH} <= minimum <= maximum, got {minimum} and {maximum}")
        self.minimum = minimum
        self.maximum = maximum
        self.tolerance = tolerance
        self.visibility_timeout_seconds = visibility_timeout_seconds
        self.clock = clock
        self._limit = max(minimum, min(initial, maximum))
        self._in_flight = 0
        self._slow_start = True
        self._waited = False
        self._round_latencies: list[float] = []
        self._round_messages = 0
        self._round_started = clock()
        self._baselines: deque[float] = deque(maxlen=BASELINE_ROUNDS)
        self._condition = threading.Condition()

    @property
    def limit(self) -> int:
        """The current bound on messages in flight."""
        with self._condition:
            return self._limit

    @property
    def in_flight(self) -> int:
        """Messages admitted and not yet released."""
        with self._condition:
            return self._in_flight

    def acquire(self, count: int = BATCH, *, timeout: float | None = None) -> bool:
        """Wait until ``count`` more messages fit under the limit and take them; False on timeout."""
        with self._condition:
            if self._in_flight + count > self._limit:
                self._waited = True
                fits = self._condition.wait_for(lambda: self._in_flight + count <= self._limit, timeout)
                if not fits:
                    return False
            self._in_flight += count
            return True

    def release(self, count: int) -> None:
        """Give back ``count`` admitted messages (settled, or never received)."""
        if count <= 0:
            return
        with self._condition:
            self._in_flight = max(0, self._in_flight - count)
            # Wake only as many waiting receivers as batches now fit, not all of them.
            self._condition.notify(max(1, count // BATCH))

    def observe(self, latency_seconds: float, messages: int) -> None:
        """Record one settled batch: ``messages`` that took ``latency_seconds`` from receive to settled."""
        with self._condition:
            self._round_latencies.append(latency_seconds)
            self._round_messages += messages
            if len(self._round_latencies) * BATCH >= self._limit:
                self._end_round()

    def congested(self) -> None:
        """An AWS call was throttled or failed: halve the limit now."""
        with self._condition:
            self._slow_start = False
            self._set_limit(self._limit // 2)

    def _end_round(self) -> None:
        now = self.clock()
        mean = sum(self._round_latencies) / len(self._round_latencies)
        elapsed = now - self._round_started
        rate = self._round_messages / elapsed if elapsed > 0 else 0.0
        self._baselines.append(mean)
        best = min(self._baselines)
        if mean > self.tolerance * best:
            self._slow_start = False
            self._set_limit(int(self._limit * DECREASE_FACTOR))
        elif self._waited:
            self._set_limit(self._limit * 2 if self._slow_start else self._limit + BATCH)
        if self.visibility_timeout_seconds and rate > 0:
            # What this rate settles in half a visibility timeout: more would wait for the heartbeat.
            self._set_limit(min(self._limit, int(rate * self.visibility_timeout_seconds / 2)))
        log.debug(
            "in_flight.round limit=%d mean_latency=%.3f best=%.3f rate=%.0f waited=%s",
            self._limit,
            mean,
            best,
            rate,
            self._waited,
        )
        self._round_latencies = []
        self._round_messages = 0
        self._round_started = now
        self._waited = False

    def _set_limit(self, value: int) -> None:
        self._limit = max(self.minimum, min(self.maximum, value))
        self._condition.notify_all()


class FairQuota:
    """A number of units held at once, handed out first come, first served.

    ``take`` waits its turn; ``try_take`` never overtakes a waiting ``take`` (it fails while anyone
    waits, even if its own units would fit), so a stream of small takes cannot keep a large one
    waiting forever. A cost above the whole quota is clamped to it, so one take alone always fits.
    Thread-safe.
    """

    def __init__(self, total: int) -> None:
        if total <= 0:
            raise ValueError(f"the quota must be positive, got {total}")
        self.total = total
        self._held = 0
        self._peak = 0
        self._condition = threading.Condition()
        self._queue: deque[object] = deque()  # one ticket per waiting take, oldest first

    @property
    def held(self) -> int:
        """Units taken and not yet given back."""
        with self._condition:
            return self._held

    @property
    def peak(self) -> int:
        """The most ever held at once."""
        with self._condition:
            return self._peak

    @property
    def waiting(self) -> int:
        """Takes waiting for their turn or for room."""
        with self._condition:
            return len(self._queue)

    def clamp(self, cost: int) -> int:
        """``cost`` as it is taken: at least 1, at most the whole quota."""
        return max(1, min(cost, self.total))

    def try_take(self, cost: int = 1) -> bool:
        """Take ``cost`` (clamped) if it fits now and nobody waits; False otherwise."""
        cost = self.clamp(cost)
        with self._condition:
            if self._queue or self._held + cost > self.total:
                return False
            self._take(cost)
            return True

    def take(self, cost: int = 1) -> None:
        """Wait for this take's turn and for ``cost`` (clamped) to fit, then take it."""
        cost = self.clamp(cost)
        ticket = object()
        with self._condition:
            self._queue.append(ticket)
            try:
                self._condition.wait_for(lambda: self._queue[0] is ticket and self._held + cost <= self.total)
                self._take(cost)
            finally:
                self._queue.remove(ticket)
                self._condition.notify_all()

    def give_back(self, cost: int = 1) -> None:
        """Return ``cost`` (as clamped when taken)."""
        if cost <= 0:
            return
        with self._condition:
            self._held = max(0, self._held - cost)
            self._condition.notify_all()

    def _take(self, cost: int) -> None:
        self._held += cost
        self._peak = max(self._peak, self._held)


class MemoryBudget(FairQuota):
    """Bytes the record handlers may hold at once: objects read and the metrics built from them.

    Every run mode shares one per process (the CLI drain's batch workers, Lambda's chunks). A
    handler takes an object's cost before parsing it and gives it back once the object's metrics
    were handed to the sink. A handler that finds the budget spent first hands off what it holds
    and only then waits, so waiting handlers hold nothing of it and those holding some are moving:
    no handler waits on another forever. Served first come, first served, so an object costing
    the whole budget is parsed as soon as what others hold drains, however busy the drain is.
    """

    @property
    def total_bytes(self) -> int:
        """The whole budget."""
        return self.total

    @property
    def held_bytes(self) -> int:
        """Bytes taken and not yet given back."""
        return self.held

    @property
    def peak_bytes(self) -> int:
        """The most ever held at once."""
        return self.peak
