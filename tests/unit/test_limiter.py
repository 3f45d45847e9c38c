"""The in-flight limiter: admission under the limit, and how the limit moves with latency."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from app.drain.limiter import BATCH, InFlightLimiter


@dataclass
class FakeClock:
    """A monotonic clock that moves only when told to."""

    now: float = 100.0

    def __call__(self) -> float:
        """The current time, in seconds."""
        return self.now


def limiter(**kwargs: object) -> InFlightLimiter:
    """A limiter on a hand-driven clock."""
    options: dict[str, object] = {"initial": 40, "maximum": 400, "clock": FakeClock()}
    options.update(kwargs)
    return InFlightLimiter(**options)  # type: ignore[arg-type]


def full_round(limit: InFlightLimiter, latency: float, *, waited: bool) -> None:
    """Settle one round of batches at ``latency``; a receiver waited for room first if ``waited``."""
    if waited:
        taken = 0
        while limit.acquire(BATCH, timeout=0):
            taken += BATCH
        assert not limit.acquire(BATCH, timeout=0)
        limit.release(taken)
    clock = limit.clock
    assert isinstance(clock, FakeClock)
    clock.now += latency
    for _ in range(max(1, limit.limit // BATCH)):
        limit.observe(latency, BATCH)


def test_admits_up_to_the_limit_and_no_more() -> None:
    """Batches are admitted while they fit; the next waits until messages are released."""
    limit = limiter(initial=30)

    assert [limit.acquire(BATCH, timeout=0) for _ in range(4)] == [True, True, True, False]
    limit.release(BATCH)
    assert limit.acquire(BATCH, timeout=0)
    assert limit.in_flight == 30


def test_release_wakes_a_waiting_receiver() -> None:
    """A receiver blocked on a full pipe goes on as soon as a batch settles."""
    limit = limiter(initial=10)
    assert limit.acquire(BATCH)
    admitted = threading.Event()

    waiter = threading.Thread(target=lambda: limit.acquire(BATCH, timeout=5) and admitted.set())
    waiter.start()
    assert not admitted.wait(0.1)
    limit.release(BATCH)
    waiter.join(5)

    assert admitted.is_set()


def test_slow_start_doubles_while_receivers_wait_and_latency_holds() -> None:
    """With steady latency and receivers waiting for room, the limit doubles each round."""
    limit = limiter(initial=20)

    for _ in range(3):
        full_round(limit, 0.1, waited=True)

    assert limit.limit == 160


def test_limit_stays_when_receivers_never_wait() -> None:
    """If the limit did not hold anything back, it does not grow."""
    limit = limiter(initial=40)

    for _ in range(5):
        full_round(limit, 0.1, waited=False)

    assert limit.limit == 40


def test_rising_latency_shrinks_the_limit_then_growth_is_additive() -> None:
    """Latency beyond twice the best round cuts the limit by a quarter; afterwards it grows one batch a round."""
    limit = limiter(initial=80)
    full_round(limit, 0.1, waited=True)
    assert limit.limit == 160

    full_round(limit, 0.25, waited=True)
    assert limit.limit == 120

    full_round(limit, 0.1, waited=True)
    full_round(limit, 0.1, waited=True)
    assert limit.limit == 140


def test_congestion_halves_the_limit_within_bounds() -> None:
    """A throttled call halves the limit, never below the minimum."""
    limit = limiter(initial=80, minimum=20)

    limit.congested()
    assert limit.limit == 40
    limit.congested()
    limit.congested()
    assert limit.limit == 20


def test_limit_never_exceeds_the_maximum() -> None:
    """However long growth goes on, the memory bound holds."""
    limit = limiter(initial=40, maximum=100)

    for _ in range(10):
        full_round(limit, 0.1, waited=True)

    assert limit.limit == 100


def test_visibility_timeout_bounds_what_is_held() -> None:
    """The limit is at most what the measured rate settles in half a visibility timeout."""
    clock = FakeClock()
    limit = limiter(initial=20, visibility_timeout_seconds=4, clock=clock)
    assert limit.acquire(20, timeout=0)
    assert not limit.acquire(BATCH, timeout=0)  # a receiver waited: the round would grow the limit
    limit.release(20)
    clock.now += 2.0  # 20 messages settled in 2 s: 10 a second, 20 in half the visibility timeout

    limit.observe(0.5, BATCH)
    limit.observe(0.5, BATCH)

    assert limit.limit == 20


@pytest.mark.parametrize(("minimum", "maximum"), [(5, 100), (50, 40)])
def test_bounds_must_make_sense(minimum: int, maximum: int) -> None:
    """A minimum under one batch or above the maximum is refused."""
    with pytest.raises(ValueError, match="minimum"):
        InFlightLimiter(minimum=minimum, maximum=maximum)
