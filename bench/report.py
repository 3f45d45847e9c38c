"""Machine description, per-variant rows and the printed table."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def machine_description() -> dict[str, Any]:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": round(memory_gib, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.release()}",
        "load_average": load_average(),
    }


def load_average() -> str:
    """The 1/5/15-minute load averages: other work on the machine skews every number."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


@dataclass
class Row:
    variant: str
    delay_ms: float
    messages: int  # seeded
    handled: int
    seconds: float  # what the rate is over: see bench/README.md
    cpu_seconds: float
    emulator_cpu_seconds: float
    peak_rss_kib: int
    requests: dict[str, int]  # per operation, counted by the delay proxy
    gauges_expected: int
    gauges_missing: int
    gauges_extra: int
    events: int
    queue_left: int
    malformed: int = 0  # datagrams the strict DogStatsD parser rejected
    threads: int = 0  # the ceiling's thread count
    exit_code: int = 0  # the forwarder process's
    steady_rate: float | None = None  # forwarder: deletes after the first batch / their span
    first_delete_seconds: float | None = None  # forwarder: process start to the first delete
    empty_seconds: float | None = None  # forwarder: last delete to exit
    active_rate: float | None = None  # forwarder: messages / (first AWS request to last delete)
    summary: dict[str, Any] = field(default_factory=dict)
    repeats: list[float] = field(default_factory=list)  # msg/s of every run when repeated
    sweep: list[tuple[int, float]] = field(default_factory=list)  # ceiling: (threads, msg/s) tried

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def service_requests(self, service: str) -> int:
        return sum(n for key, n in self.requests.items() if key.startswith(service + ":"))

    @property
    def label(self) -> str:
        return f"ceiling ({self.threads} thr)" if self.variant == "ceiling" else self.variant

    @property
    def ok(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        problems = []
        if self.queue_left:
            problems.append(f"{self.queue_left} left on queue")
        if self.variant == "ceiling":
            return problems
        if self.gauges_missing:
            problems.append(f"{self.gauges_missing} gauges missing")
        if self.events < self.messages:
            problems.append(f"{self.messages - self.events} events missing")
        if self.malformed:
            problems.append(f"{self.malformed} malformed datagrams")
        if self.exit_code:
            problems.append(f"exit code {self.exit_code}")
        return problems

    def check(self) -> str:
        problems = self.problems()
        if problems:
            return "FAIL: " + ", ".join(problems)
        if self.variant == "ceiling":
            return "ok (no metrics)"
        dup = f", {self.gauges_extra} extra" if self.gauges_extra else ""
        return f"ok {self.gauges_expected - self.gauges_missing}/{self.gauges_expected}{dup}"

    def as_json(self) -> dict[str, Any]:
        data = dict(vars(self))
        data["messages_per_second"] = round(self.rate, 1)
        data["sqs_requests_per_message"] = self.service_requests("sqs") / self.messages
        data["s3_requests_per_message"] = self.service_requests("s3") / self.messages
        data["cpu_ms_per_message"] = 1000 * self.cpu_seconds / self.messages
        data["ok"] = self.ok
        return data


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "-"


def _optional(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


HEADER = (
    "variant",
    "delay",
    "msgs",
    "seconds",
    "msg/s",
    "vs ceiling",
    "vs baseline",
    "steady msg/s",
    "1st delete s",
    "empty s",
    "SQS req/msg",
    "S3 req/msg",
    "CPU ms/msg",
    "peak RSS MiB",
    "emu CPU ms/msg",
    "check",
)


def format_table(rows: list[Row]) -> str:
    lines: list[tuple[str, ...]] = [HEADER]
    for row in rows:
        same_delay = {r.variant: r for r in rows if r.delay_ms == row.delay_ms}
        base, ceil = same_delay.get("baseline"), same_delay.get("ceiling")
        lines.append(
            (
                row.label,
                f"{row.delay_ms:g} ms",
                str(row.messages),
                f"{row.seconds:.2f}",
                f"{row.rate:,.0f}",
                _ratio(row.rate, ceil.rate) if ceil and row.variant != "ceiling" else "",
                _ratio(row.rate, base.rate) if base and row.variant != "baseline" else "",
                _optional(row.steady_rate, ",.0f"),
                _optional(row.first_delete_seconds, ".2f"),
                _optional(row.empty_seconds, ".2f"),
                f"{row.service_requests('sqs') / row.messages:.3f}",
                f"{row.service_requests('s3') / row.messages:.2f}",
                f"{1000 * row.cpu_seconds / row.messages:.2f}",
                f"{row.peak_rss_kib / 1024:.1f}",
                f"{1000 * row.emulator_cpu_seconds / row.messages:.2f}",
                row.check(),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    last = len(HEADER) - 1
    out = []
    for n, line in enumerate(lines):
        cells = [
            cell.ljust(w) if i in (0, last) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
