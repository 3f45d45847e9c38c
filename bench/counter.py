"""How each way of counting jobs fares in what Datadog keeps: ``python -m bench.counter``.

The job counter must add up under any number of writers. This script sends the same jobs through
each candidate, as the HTTP API would carry them, into the local model of Datadog's storage
(``app/local/datadog_view.py``: one point per series and second for counts and gauges, last write
winning; every distribution value kept) and prints, per scenario, what Datadog keeps and how many
series it bills; then the payload bytes and the CPU time per 1,000 jobs of each candidate.

Candidates:
- ``count, running total per process``: a count point per series and second carrying the total
  this process had sent for it (what the API sink did before);
- ``count, a host per process``: the same, each writer under its own ``host`` so nothing collides;
- ``distribution (chosen)``: ``cloud_job.runs``, one value of 1 per job (``count:`` in queries).
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.core.catalog import SELF_PREFIX
from app.local.datadog_view import DatadogView, Sample
from app.local.dogstatsd import Metric
from app.sinks.api.payload import DistributionValue, distribution_body

NOW = 1_800_000_000
NAME = "cloud_job.runs"
TAGS = ("cloud_job_metric", "status:success", "bucket:cloud-job-results")


@dataclass(frozen=True, slots=True)
class Job:
    """One job as a writer hands it over: which writer, which job name, which second."""

    writer: int
    job: str
    second: int


Candidate = Callable[[Sequence[Job]], list[Sample]]


def running_total_counts(jobs: Sequence[Job]) -> list[Sample]:
    """Each writer sends, per hand-off, its own running total for the series and second."""
    totals: dict[tuple[int, str, int], int] = {}
    samples = []
    for job in jobs:
        key = (job.writer, job.job, job.second)
        totals[key] = totals.get(key, 0) + 1
        metric = Metric(NAME, float(totals[key]), "c", (*TAGS, f"job:{job.job}"), job.second)
        samples.append(Sample(NOW, metric, "", via_agent=False))
    return samples


def counts_per_host(jobs: Sequence[Job]) -> list[Sample]:
    """As above, each writer under a host of its own."""
    return [
        Sample(sample.arrived_at, sample.metric, f"writer-{job.writer}", via_agent=False)
        for job, sample in zip(jobs, running_total_counts(jobs), strict=True)
    ]


def distribution_values(jobs: Sequence[Job]) -> list[Sample]:
    """One distribution value of 1 per job, stamped with its second."""
    return [
        Sample(NOW, Metric(NAME, 1.0, "d", (*TAGS, f"job:{job.job}"), job.second), "", via_agent=False)
        for job in jobs
    ]


CANDIDATES: dict[str, Candidate] = {
    "count, running total per process": running_total_counts,
    "count, a host per process": counts_per_host,
    "distribution (chosen)": distribution_values,
}


def scenarios() -> dict[str, list[Job]]:
    """The seams of the issue, as job lists in hand-off order."""
    second = NOW - 30
    three_processes = [Job(index % 3, "etl", second) for index in range(240)]
    two_runs = [Job(0, "etl", second) for _ in range(5)] + [Job(1, "etl", second) for _ in range(3)]
    one_drain = [Job(0, "etl", second - index % 20) for index in range(20)]
    return {
        "3 processes, 240 runs in one second": three_processes,
        "2 runs one after the other, 5 + 3 in one second": two_runs,
        "1 drain, 20 jobs": one_drain,
    }


HAND_OFF = 10  # jobs per request: the sink posts once per hand-off of a receive batch


def body_bytes(name: str, jobs: Sequence[Job]) -> tuple[int, int]:
    """(JSON bytes, deflated bytes) of the requests a candidate sends for ``jobs``, a hand-off each."""
    sizes = [_request_bytes(name, jobs[start : start + HAND_OFF]) for start in range(0, len(jobs), HAND_OFF)]
    return sum(raw for raw, _ in sizes), sum(deflated for _, deflated in sizes)


def _request_bytes(name: str, jobs: Sequence[Job]) -> tuple[int, int]:
    if name.startswith("distribution"):
        values = [DistributionValue("", NAME, 1.0, (*TAGS, f"job:{j.job}"), j.second) for j in jobs]
        body = distribution_body(values, host=None)
    else:
        totals: dict[tuple[str, int], int] = {}
        for job in jobs:
            totals[(job.job, job.second)] = totals.get((job.job, job.second), 0) + 1
        series = [
            {
                "metric": NAME,
                "type": 1,
                "interval": 10,
                "points": [{"timestamp": second, "value": float(total)}],
                "tags": [*TAGS, f"job:{job}"],
                "resources": [{"type": "host", "name": "writer-0"}],
            }
            for (job, second), total in sorted(totals.items())
        ]
        body = json.dumps({"series": series}, separators=(",", ":")).encode()
    return len(body), len(zlib.compress(body, 6))


def cpu_seconds_per_1000(name: str, jobs: Sequence[Job], repeat: int) -> float:
    """Process CPU to build, keep and compress a candidate's payload for ``jobs``, per 1,000 jobs."""
    started = time.process_time()
    for _ in range(repeat):
        body_bytes(name, jobs)
    return (time.process_time() - started) / repeat / len(jobs) * 1000


def main(argv: list[str] | None = None) -> int:
    """Print the table of kept values and series, then bytes and CPU per 1,000 jobs."""
    parser = argparse.ArgumentParser(prog="python -m bench.counter", description=__doc__)
    parser.add_argument("--repeat", type=int, default=50, help="payload builds timed per candidate")
    args = parser.parse_args(argv)
    print(f"{'scenario':<50} {'jobs':>5}  " + "  ".join(f"{name:>34}" for name in CANDIDATES))
    for title, jobs in scenarios().items():
        cells = []
        for candidate in CANDIDATES.values():
            view = DatadogView.of(candidate(jobs))
            kept = view.count_total(NAME) + view.runs(NAME)
            cells.append(f"kept {kept:>4g}, {view.series(NAME)} series")
        print(f"{title:<50} {len(jobs):>5}  " + "  ".join(f"{cell:>34}" for cell in cells))
    # 1,000 jobs of 10 job names, three finishing per second, handed off ten at a time.
    workload = [Job(0, f"job-{index * 7 % 10}", NOW - index // 3) for index in range(1000)]
    print(f"\n{'candidate':<36} {'JSON B/job':>10} {'deflated B/job':>14} {'CPU ms/1,000 jobs':>18}")
    for name in CANDIDATES:
        raw, deflated = body_bytes(name, workload)
        cpu = cpu_seconds_per_1000(name, workload, args.repeat) * 1000
        print(f"{name:<36} {raw / 1000:>10.1f} {deflated / 1000:>14.2f} {cpu:>18.2f}")
    print(
        f"\nbilled custom metrics per series: count 1, distribution 5 (10 with percentiles); "
        f"the health counters ({SELF_PREFIX}.batch.*) follow the job counter"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
