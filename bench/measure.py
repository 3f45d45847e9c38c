"""Run the bare variants (baseline, ceiling) in a fresh child process and measure them.

The forwarder runs as its own console script instead (bench/forwarder.py). Each bare variant drains
in its own process started with the 'spawn' method, so:
- CPU seconds are ``time.process_time()`` around the drain in that process alone (all its threads);
  the emulator and the DogStatsD receiver live in other processes and are not counted;
- peak RSS is that process's own high-water mark (VmHWM from /proc/self/status). It is reset with
  ``echo 5 > /proc/self/clear_refs`` just before the drain, so it is the peak *during* the drain
  (imports, clients and interpreter included, since they stay resident), not of some earlier phase.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class VariantSpec:
    variant: str  # "baseline" | "ceiling" | "forwarder"
    endpoint_url: str  # the delay proxy in front of the emulator
    queue_url: str
    delay_ms: float  # added by the proxy; recorded here for the report
    statsd_port: int
    threads: int = 1  # the ceiling's thread count
    wait_seconds: int = 1  # the ceiling's long poll
    profile_path: str | None = None  # forwarder only: write a py-spy profile of the process here


@dataclass
class VariantResult:
    variant: str
    delay_ms: float
    handled: int
    wall_seconds: float  # start of the drain until it returned (includes the final empty poll)
    active_seconds: float  # start of the drain until the last delete completed
    cpu_seconds: float
    peak_rss_kib: int
    rss_before_kib: int
    hwm_reset: bool
    summary: dict[str, Any] = field(default_factory=dict)


def _status_kib(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class _LastDelete:
    """Remembers when the last DeleteMessage(Batch) call returned."""

    def __init__(self) -> None:
        self.at = 0.0
        self._lock = threading.Lock()

    def hook(self, **_: Any) -> None:
        now = time.perf_counter()
        with self._lock:
            self.at = max(self.at, now)


def run_variant(spec: VariantSpec) -> dict[str, Any]:
    """Child-process entry: build clients, drain, measure. Returns a plain dict."""
    from datadog.dogstatsd.base import DogStatsd

    from bench.aws import make_client

    pool = 11 * spec.threads + 4
    sqs = make_client("sqs", spec.endpoint_url, pool_size=pool)
    s3 = make_client("s3", spec.endpoint_url, pool_size=pool)
    last_delete = _LastDelete()
    sqs.meta.events.register("after-call.sqs.DeleteMessage", last_delete.hook)
    sqs.meta.events.register("after-call.sqs.DeleteMessageBatch", last_delete.hook)
    statsd = DogStatsd(host="127.0.0.1", port=spec.statsd_port, disable_telemetry=True)
    drain = _drainer(spec, sqs=sqs, s3=s3, statsd=statsd)

    rss_before = _status_kib("VmRSS")
    hwm_reset = _reset_peak_rss()
    cpu0, t0 = time.process_time(), time.perf_counter()
    handled = drain()
    t1, cpu1 = time.perf_counter(), time.process_time()
    peak = _status_kib("VmHWM")
    result = VariantResult(
        variant=spec.variant,
        delay_ms=spec.delay_ms,
        handled=handled,
        wall_seconds=t1 - t0,
        active_seconds=(last_delete.at - t0) if last_delete.at else t1 - t0,
        cpu_seconds=cpu1 - cpu0,
        peak_rss_kib=peak,
        rss_before_kib=rss_before,
        hwm_reset=hwm_reset,
    )
    return asdict(result)


def _drainer(spec: VariantSpec, *, sqs: Any, s3: Any, statsd: Any) -> Callable[[], int]:
    """Return a no-argument callable running the variant's drain -> messages handled."""
    if spec.variant == "baseline":
        from bench.baseline import drain_baseline

        return lambda: drain_baseline(spec.queue_url, sqs=sqs, s3=s3, statsd=statsd)
    if spec.variant == "ceiling":
        from bench.ceiling import drain_ceiling

        return lambda: drain_ceiling(
            spec.queue_url, sqs=sqs, s3=s3, threads=spec.threads, wait_seconds=spec.wait_seconds
        )
    raise ValueError(f"{spec.variant!r} does not run in a child (the forwarder is its own process)")


def _child_main(spec: VariantSpec, conn: Any) -> None:
    import traceback

    try:
        conn.send(("ok", run_variant(spec)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


class VariantFailedError(RuntimeError):
    """The variant's child process raised, died or ran out of time."""


def run_in_child(spec: VariantSpec, *, timeout: float) -> dict[str, Any]:
    """Run :func:`run_variant` in a fresh 'spawn' child and return its result."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    parent_conn, child_conn = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(spec, child_conn), name=f"bench-{spec.variant}")
    process.start()
    child_conn.close()
    try:
        if not parent_conn.poll(timeout):
            raise VariantFailedError(f"{spec.variant} did not finish within {timeout:.0f} s")
        try:
            status, payload = parent_conn.recv()
        except EOFError:
            raise VariantFailedError(f"{spec.variant} child exited without a result") from None
        if status != "ok":
            raise VariantFailedError(f"{spec.variant} failed in the child process:\n{payload}")
        return dict(payload)
    finally:
        process.join(5)
        if process.is_alive():
            process.terminate()
            process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
        parent_conn.close()
