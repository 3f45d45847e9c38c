"""``python -m bench``: seed the emulator, drain with each variant, print the comparison table.

Variants: ``baseline`` (the original one-at-a-time loop), ``ceiling`` (the fastest bare concurrent
boto3 drain, its thread count swept) and ``forwarder`` (this product's console script with default
settings, as a process of its own), each at every modelled round trip per AWS call (a delay proxy
in front of the emulator). See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from app.local.dogstatsd import Line, Metric
from bench.aws import make_client
from bench.capture import DatagramCapture
from bench.forwarder import run_forwarder_process
from bench.localstack import Emulator, EmulatorError, make_emulator
from bench.measure import VariantFailedError, VariantSpec, run_in_child
from bench.proxy import DelayProxy
from bench.report import Row, format_table, load_average, machine_description
from bench.seed import (
    CHECKED_FIELDS,
    Dataset,
    create_queue,
    make_dataset,
    put_objects,
    queue_depth,
    send_notifications,
)

VARIANTS = ("baseline", "ceiling", "forwarder")
BUCKET = "bench-job-results"
NAMESPACE = "cloud_job"
CHECKED_GAUGES = frozenset(f"{NAMESPACE}.{name}" for name in CHECKED_FIELDS)


def checked_line(line: Line) -> bool:
    """The metric lines the check looks at: the checked gauges (every line is still parsed)."""
    return isinstance(line, Metric) and line.type == "g" and line.name in CHECKED_GAUGES


def make_receiver() -> DatagramCapture:
    """A DogStatsD capture on UDP 127.0.0.1, parsed strictly after each run."""
    return DatagramCapture()


def wait_quiet(receiver: DatagramCapture, *, quiet: float, timeout: float) -> None:
    """Return once no datagram has arrived for ``quiet`` seconds (or after ``timeout``)."""
    receiver.wait_quiet(quiet=quiet, timeout=timeout)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-n", "--messages", type=int, default=4000, help="messages for ceiling and forwarder (default 4000)"
    )
    parser.add_argument(
        "--baseline-messages", type=int, default=200, help="messages for the slow baseline (default 200)"
    )
    parser.add_argument(
        "--delays",
        default="0,20,60",
        help="modelled round trips per AWS call, in ms, comma-separated (default 0,20,60)",
    )
    parser.add_argument(
        "--ceiling-threads",
        default="8,16,32,64",
        help="thread counts the ceiling sweep may try, in order; it stops at the first that is not "
        "5%% faster than the best so far (default %(default)s)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of the forwarder, and of the ceiling at the thread count its sweep chose, per delay, "
        "alternating; the median of each is reported (default %(default)s). The baseline runs once.",
    )
    parser.add_argument("--emulator", choices=("localstack", "moto"), default="localstack")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS)
    )
    parser.add_argument(
        "--rss-check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also compare the forwarder's peak RSS at --rss-small vs --rss-large messages (default on)",
    )
    parser.add_argument("--rss-small", type=int, default=1000)
    parser.add_argument("--rss-large", type=int, default=10000)
    parser.add_argument(
        "--rss-delay",
        type=float,
        default=20.0,
        help="ms per AWS call in the RSS runs (default 20, so the large run is also a long drain "
        "at the issue's reference latency)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="also run the forwarder under py-spy (one run per delay) and print its hot spots; "
        "raw profiles go to DIR",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write the results as JSON to PATH ('-' for stdout)"
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="give up on one variant after this many seconds"
    )
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    try:
        args.delays = [float(d) for d in args.delays.split(",") if d.strip()]
        args.ceiling_threads = [int(t) for t in args.ceiling_threads.split(",") if t.strip()]
    except ValueError:
        parser.error("--delays and --ceiling-threads take comma-separated numbers")
    if not args.delays or min(args.delays) < 0:
        parser.error("--delays needs at least one delay, none negative")
    if not args.ceiling_threads or min(args.ceiling_threads) < 1:
        parser.error("--ceiling-threads needs at least one count, each at least 1")
    for name in ("messages", "baseline_messages", "repeat", "rss_small", "rss_large"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


class Bench:
    def __init__(self, args: argparse.Namespace, emulator: Emulator, receiver: DatagramCapture) -> None:
        self.args = args
        self.emulator = emulator
        self.receiver = receiver
        self.sqs = make_client("sqs", emulator.endpoint_url)
        self.s3 = make_client("s3", emulator.endpoint_url)
        self.dataset: Dataset | None = None
        self._queue_ids = itertools.count(1)

    def seed_objects(self, count: int) -> float:
        started = time.perf_counter()
        self.dataset = make_dataset(BUCKET, count)
        put_objects(self.s3, self.dataset)
        return time.perf_counter() - started

    def warm_up(self, messages: int = 100) -> None:
        """Drain a small queue with the baseline and the ceiling loops, unmeasured.

        The emulator loads each operation's handlers on first use; without this the first
        variant to call DeleteMessageBatch or a batched ReceiveMessage would pay for it.
        """
        from datadog.dogstatsd.base import DogStatsd

        from bench.baseline import drain_baseline
        from bench.ceiling import drain_ceiling

        assert self.dataset is not None
        started = time.perf_counter()
        statsd = DogStatsd(host="127.0.0.1", port=self.receiver.port, disable_telemetry=True)
        for name in ("baseline", "ceiling"):
            queue_url = create_queue(self.sqs, f"bench-warm-up-{name}-{next(self._queue_ids)}")
            send_notifications(self.sqs, queue_url, self.dataset, min(messages, len(self.dataset.jobs)))
            if name == "baseline":
                drain_baseline(queue_url, sqs=self.sqs, s3=self.s3, statsd=statsd)
            else:
                drain_ceiling(queue_url, sqs=self.sqs, s3=self.s3, threads=2, wait_seconds=0)
        wait_quiet(self.receiver, quiet=0.2, timeout=5)
        self.receiver.clear()
        log(f"warm-up drained {2 * messages} messages in {time.perf_counter() - started:.1f} s")

    def run(
        self,
        variant: str,
        messages: int,
        proxy: DelayProxy,
        *,
        threads: int = 1,
        profile_path: str | None = None,
    ) -> Row:
        assert self.dataset is not None
        name = f"bench-{variant}-{int(proxy.delay_ms)}ms-{next(self._queue_ids)}"
        queue_url = create_queue(self.sqs, name)
        send_notifications(self.sqs, queue_url, self.dataset, messages)
        wait_quiet(self.receiver, quiet=0.2, timeout=5)
        self.receiver.clear()
        spec = VariantSpec(
            variant=variant,
            endpoint_url=proxy.endpoint_url,
            queue_url=queue_url,
            delay_ms=proxy.delay_ms,
            statsd_port=self.receiver.port,
            threads=threads,
            profile_path=profile_path,
        )
        proxy.reset()
        emulator_cpu = self.emulator.cpu_seconds()
        timing: dict[str, Any] = {}
        if variant == "forwarder":
            process, started = run_forwarder_process(spec, timeout=self.args.timeout)
            if process.exit_code not in (0, 1):
                raise VariantFailedError(f"forwarder exited {process.exit_code}:\n{process.stderr_tail}")
            seconds, cpu, peak = process.wall_seconds, process.cpu_seconds, process.peak_rss_kib
            handled, exit_code, summary = (
                int(process.summary.get("forwarded", 0)),
                process.exit_code,
                process.summary,
            )
        else:
            result = run_in_child(spec, timeout=self.args.timeout)
            seconds, cpu, peak = (
                float(result["active_seconds"]),
                float(result["cpu_seconds"]),
                int(result["peak_rss_kib"]),
            )
            handled, exit_code, summary = int(result["handled"]), 0, {}
        emulator_cpu = self.emulator.cpu_seconds() - emulator_cpu
        stats = proxy.stats()
        if variant == "forwarder":
            timing = delete_timing(
                stats["deletes"],
                started=started,
                ended=started + seconds,
                first_request_at=stats["first_request_at"],
                messages=messages,
            )
        wait_quiet(self.receiver, quiet=0.5, timeout=10)
        parsed = self.receiver.parse(checked_line)
        malformed = parsed.errors
        if malformed:
            log(f"  {len(malformed)} malformed datagrams, the first: {malformed[0]}")

        expected = self.dataset.expected(messages)
        missing = extra = total = 0
        if variant != "ceiling":
            for field in CHECKED_FIELDS:
                got = Counter(parsed.values(f"{NAMESPACE}.{field}"))
                missing += sum((expected[field] - got).values())
                extra += sum((got - expected[field]).values())
                total += sum(expected[field].values())
        return Row(
            variant=variant,
            delay_ms=proxy.delay_ms,
            messages=messages,
            handled=handled,
            seconds=seconds,
            cpu_seconds=cpu,
            emulator_cpu_seconds=emulator_cpu,
            peak_rss_kib=peak,
            requests=dict(stats["requests"]),
            gauges_expected=total,
            gauges_missing=missing,
            gauges_extra=extra,
            events=len(parsed.events),
            queue_left=queue_depth(self.sqs, queue_url),
            malformed=len(malformed),
            threads=threads if variant == "ceiling" else 0,
            exit_code=exit_code,
            summary=summary,
            **timing,
        )

    def compare(self, variants: list[str], counts: dict[str, int], proxy: DelayProxy) -> list[Row]:
        """Every variant at this proxy's delay: the baseline once, the ceiling's sweep, then the
        forwarder and the ceiling (at the chosen thread count) in turn, ``--repeat`` times each.

        Alternating spreads any drift of the emulator or the machine over both, and reporting the
        median of each keeps one lucky run (the sweep keeps the fastest of several) from deciding.
        """
        rows: dict[str, Row] = {}
        if "baseline" in variants:
            rows["baseline"] = self.logged_run("baseline", counts["baseline"], proxy)
        ceiling_runs: list[Row] = []
        if "ceiling" in variants:
            best = self.sweep_ceiling(counts["ceiling"], proxy)
            ceiling_runs.append(best)
        forwarder_runs: list[Row] = []
        for round_ in range(self.args.repeat):
            if "forwarder" in variants:
                forwarder_runs.append(self.logged_run("forwarder", counts["forwarder"], proxy))
            if ceiling_runs and round_ < self.args.repeat - 1:
                threads = ceiling_runs[0].threads
                ceiling_runs.append(self.logged_run("ceiling", counts["ceiling"], proxy, threads=threads))
        if ceiling_runs:
            sweep = ceiling_runs[0].sweep
            rows["ceiling"] = median_run(ceiling_runs)
            rows["ceiling"].sweep = sweep
        if forwarder_runs:
            rows["forwarder"] = median_run(forwarder_runs)
        return [rows[variant] for variant in VARIANTS if variant in rows]

    def logged_run(self, variant: str, messages: int, proxy: DelayProxy, *, threads: int = 1) -> Row:
        """One run, announced and summarised on stderr."""
        detail = f", {threads} threads" if variant == "ceiling" else ""
        log(f"{variant}, {proxy.delay_ms:g} ms per AWS call{detail}, {messages} messages ...")
        row = self.run(variant, messages, proxy, threads=threads)
        log(f"  {row.rate:,.0f} msg/s, {row.check()}")
        return row

    def sweep_ceiling(self, messages: int, proxy: DelayProxy) -> Row:
        """Run the ceiling at each thread count in turn while it gets faster; keep the fastest."""
        best: Row | None = None
        sweep: list[tuple[int, float]] = []
        for threads in self.args.ceiling_threads:
            row = self.logged_run("ceiling", messages, proxy, threads=threads)
            sweep.append((threads, round(row.rate, 1)))
            if best is not None and row.rate < best.rate * 1.05:
                if row.rate > best.rate:
                    best = row
                break
            best = row
        assert best is not None
        best.sweep = sweep
        return best


def delete_timing(
    deletes: list[list[float]],
    *,
    started: float,
    ended: float,
    first_request_at: float | None = None,
    messages: int = 0,
) -> dict[str, float | None]:
    """First delete, steady and active rates, and the time to exit after the last delete (proxy clock).

    active: from the first AWS request to the last delete, so the forwarder is timed the way the
    bare variants are (their clients are built before their clock starts).
    """
    if not deletes:
        return {}
    first_at = deletes[0][0]
    last_at = deletes[-1][0]
    after_first = sum(entries for _, entries in deletes[1:])
    span = last_at - first_at
    active = last_at - first_request_at if first_request_at is not None else 0.0
    return {
        "first_delete_seconds": first_at - started,
        "empty_seconds": ended - last_at,
        "steady_rate": after_first / span if span > 0 else None,
        "active_rate": messages / active if messages and active > 0 else None,
    }


def _vs_bare(rate: float, delay_ms: float, rows: list[Row]) -> str:
    """`` = 1.02x the ceiling, 24.5x the baseline`` for ``rate`` against the bare rows at ``delay_ms``."""
    same_delay = {row.variant: row for row in rows if row.delay_ms == delay_ms}
    ratios = [
        f"{rate / same_delay[name].rate:.2f}x the {name}"
        for name in ("ceiling", "baseline")
        if name in same_delay and same_delay[name].rate > 0
    ]
    return f" = {', '.join(ratios)}" if ratios else ""


def active_line(row: Row, rows: list[Row]) -> str:
    """The forwarder timed like the bare variants, from its first AWS request to its last delete."""
    assert row.active_rate
    return (
        f"forwarder at {row.delay_ms:g} ms, first request to last delete (as the bare variants are "
        f"timed): {row.active_rate:,.0f} msg/s" + _vs_bare(row.active_rate, row.delay_ms, rows)
    )


def long_drain_line(large: Row, rows: list[Row]) -> str:
    """The large RSS run as a throughput figure: the same whole-process timing over more messages."""
    return (
        f"long drain (the same run) at {large.delay_ms:g} ms: {large.messages} messages in "
        f"{large.seconds:.2f} s, whole process, {large.rate:,.0f} msg/s"
        + _vs_bare(large.rate, large.delay_ms, rows)
    )


def median_run(runs: list[Row]) -> Row:
    """The run with the median rate (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda row: row.rate)
    chosen = ordered[(len(ordered) - 1) // 2]
    chosen.repeats = [round(row.rate, 1) for row in runs]
    return chosen


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    machine = machine_description()
    variants = list(args.variants)
    counts = {v: (args.baseline_messages if v == "baseline" else args.messages) for v in variants}
    rss_check = args.rss_check and "forwarder" in variants
    needed = max([*counts.values(), *([args.rss_small, args.rss_large] if rss_check else [])])

    rows: list[Row] = []
    rss_rows: list[Row] = []
    profiles: dict[str, str] = {}
    try:
        with make_emulator(args.emulator) as emulator, make_receiver() as receiver:
            log(f"{emulator.name} up on {emulator.endpoint_url} in {emulator.startup_seconds:.1f} s")
            bench = Bench(args, emulator, receiver)
            seconds = bench.seed_objects(needed)
            log(f"put {needed} job files in {seconds:.1f} s")
            bench.warm_up()
            for delay in args.delays:
                with DelayProxy(emulator.endpoint_url, delay) as proxy:
                    rows.extend(bench.compare(variants, counts, proxy))
            if rss_check:
                with DelayProxy(emulator.endpoint_url, args.rss_delay) as proxy:
                    for n in (args.rss_small, args.rss_large):
                        log(f"RSS check: forwarder, {args.rss_delay:g} ms, {n} messages ...")
                        row = bench.run("forwarder", n, proxy)
                        log(f"  peak RSS {row.peak_rss_kib / 1024:.1f} MiB, {row.check()}")
                        rss_rows.append(row)
            if args.profile and "forwarder" in variants:
                from bench.profile import summarize

                Path(args.profile).mkdir(parents=True, exist_ok=True)
                for delay in args.delays:
                    path = str(Path(args.profile).absolute() / f"forwarder-{int(delay)}ms.pyspy.txt")
                    log(f"profiling the forwarder, {delay:g} ms ...")
                    with DelayProxy(emulator.endpoint_url, delay) as proxy:
                        bench.run("forwarder", args.messages, proxy, profile_path=path)
                    if Path(path).exists():
                        profiles[f"{delay:g} ms"] = summarize(path)
    except (EmulatorError, VariantFailedError, TimeoutError) as exc:
        log(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        log("interrupted; emulator stopped")
        return 130

    print_report(args, machine, rows, rss_rows, profiles, time.perf_counter() - started)
    ok = all(row.ok for row in rows + rss_rows)
    return 0 if ok else 1


def print_report(
    args: argparse.Namespace,
    machine: dict[str, Any],
    rows: list[Row],
    rss_rows: list[Row],
    profiles: dict[str, str],
    elapsed: float,
) -> None:
    print(
        f"machine: {machine['cpu']}, {machine['usable_cores']} cores, {machine['memory_gib']} GiB, "
        f"{machine['implementation']} {machine['python']}, {machine['system']}; "
        f"load average {machine['load_average']} at start, {load_average()} at end"
    )
    print(
        f"emulator: {args.emulator} (separate process), reached through the delay proxy; "
        "forwarder: `cloud-job-metrics drain` with default settings"
        + (
            f"; forwarder and ceiling: median of {args.repeat} runs each, alternating (the baseline once)"
            if args.repeat > 1
            else ""
        )
    )
    print()
    print(format_table(rows))
    print()
    for row in rows:
        if row.active_rate:
            print(active_line(row, rows))
    for row in rows:
        if row.sweep:
            tried = ", ".join(f"{threads} threads {rate:,.0f}" for threads, rate in row.sweep)
            print(f"ceiling sweep at {row.delay_ms:g} ms (msg/s): {tried}")
        if len(row.repeats) > 1:
            runs = ", ".join(f"{rate:,.0f}" for rate in row.repeats)
            print(f"{row.variant} at {row.delay_ms:g} ms, msg/s of each run: {runs}")
    print()
    print(
        "seconds: forwarder, the whole process (start to exit); baseline and ceiling, drain start\n"
        "to the last delete in a warm child process. steady: forwarder deletes after the first batch\n"
        "over their span. 1st delete: process start to the first delete. empty: last delete to exit.\n"
        "Requests: counted by the delay proxy. CPU and peak RSS: the draining process only. emu CPU:\n"
        "the emulator over the same run. check: every seeded job's job_result and files_processed\n"
        "gauges reached the DogStatsD receiver, one event per job, no malformed datagram (parsed\n"
        "strictly once the run is over, so the check takes no CPU from it), queue empty."
    )
    if rss_rows:
        small, large = rss_rows
        growth = (large.peak_rss_kib - small.peak_rss_kib) / 1024
        print()
        print(
            f"RSS check (forwarder, {large.delay_ms:g} ms): peak {small.peak_rss_kib / 1024:.1f} MiB "
            f"at {small.messages} messages, "
            f"{large.peak_rss_kib / 1024:.1f} MiB at {large.messages} ({growth:+.1f} MiB, "
            f"{large.peak_rss_kib / small.peak_rss_kib:.2f}x); {small.check()} / {large.check()}"
        )
        print(long_drain_line(large, rows))
    for delay, text in profiles.items():
        print()
        print(f"profile, forwarder at {delay}:")
        print(text)
    print()
    print(f"total run time {elapsed:.0f} s")
    if args.json:
        document = {
            "machine": machine,
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "results": [row.as_json() for row in rows],
            "rss_check": [row.as_json() for row in rss_rows],
            "seconds": round(elapsed, 1),
        }
        text = json.dumps(document, indent=2, default=str)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
