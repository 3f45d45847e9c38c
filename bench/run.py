"""``python -m bench``: seed the emulator, drain with each variant, print the comparison table.

Variants: ``baseline`` (the original one-at-a-time loop), ``ceiling`` (bare AWS calls, what the
emulator allows) and ``forwarder`` (this product via ``app.service.drain_queue``), each without and
with a modelled network round trip per AWS call. See bench/README.md for what each number means.
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

from bench.aws import make_client
from bench.localstack import Emulator, EmulatorError, make_emulator
from bench.measure import VariantFailed, VariantSpec, run_in_child
from bench.receiver import DogStatsdReceiver
from bench.report import Row, format_table, machine_description
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


def _forwarder_defaults() -> dict[str, int] | None:
    try:
        from bench.forwarder import default_settings

        return default_settings()
    except ImportError:
        return None


def forwarder_available() -> bool:
    try:
        import app.service  # noqa: F401
    except ImportError:
        return False
    return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = _forwarder_defaults() or {"concurrency": 4, "fetch_workers": 16, "wait_seconds": 2}
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--messages", type=int, default=2000, help="messages for ceiling and forwarder (default 2000)")
    parser.add_argument("--baseline-messages", type=int, default=300, help="messages for the slow baseline (default 300)")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="modelled round trip per AWS call; 0 runs only without (default 20)")
    parser.add_argument("--concurrency", type=int, default=defaults["concurrency"], help="receive loops, as Settings.concurrency (default: the forwarder's, %(default)s)")
    parser.add_argument("--fetch-workers", type=int, default=defaults["fetch_workers"], help="S3 GETs in flight, as Settings.fetch_workers (default %(default)s)")
    parser.add_argument("--wait-seconds", type=int, default=defaults["wait_seconds"], help="long-poll wait of ceiling and forwarder (default %(default)s, the drain default)")
    parser.add_argument("--emulator", choices=("localstack", "moto"), default="localstack")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    parser.add_argument("--rss-check", action=argparse.BooleanOptionalAction, default=True, help="also compare the forwarder's peak RSS at --rss-small vs --rss-large messages (default on)")
    parser.add_argument("--rss-small", type=int, default=1000)
    parser.add_argument("--rss-large", type=int, default=10000)
    parser.add_argument("--profile", metavar="DIR", help="also run the forwarder under py-spy (one run per delay) and print its hot spots; raw profiles go to DIR")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH ('-' for stdout)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up on one variant after this many seconds")
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    for name in ("messages", "baseline_messages", "concurrency", "fetch_workers", "rss_small", "rss_large"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


class Bench:
    def __init__(self, args: argparse.Namespace, emulator: Emulator, receiver: DogStatsdReceiver) -> None:
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

    def run(self, variant: str, messages: int, delay_ms: float, *, profile_path: str | None = None) -> Row:
        assert self.dataset is not None
        queue_url = create_queue(self.sqs, f"bench-{variant}-{int(delay_ms)}ms-{next(self._queue_ids)}")
        send_notifications(self.sqs, queue_url, self.dataset, messages)
        self.receiver.wait_quiet(quiet=0.2, timeout=5)
        self.receiver.reset()
        spec = VariantSpec(
            variant=variant,
            endpoint_url=self.emulator.endpoint_url,
            queue_url=queue_url,
            delay_ms=delay_ms,
            concurrency=self.args.concurrency,
            fetch_workers=self.args.fetch_workers,
            statsd_port=self.receiver.port,
            wait_seconds=self.args.wait_seconds,
            profile_path=profile_path,
        )
        emulator_cpu = self.emulator.cpu_seconds()
        result = run_in_child(spec, timeout=self.args.timeout)
        emulator_cpu = self.emulator.cpu_seconds() - emulator_cpu
        self.receiver.wait_quiet(quiet=0.5, timeout=10)
        received = self.receiver.snapshot()

        expected = self.dataset.expected(messages)
        missing = extra = total = 0
        if variant != "ceiling":
            for name in CHECKED_FIELDS:
                got = Counter(received.gauges.get(f"cloud_job.{name}", []))
                missing += sum((expected[name] - got).values())
                extra += sum((got - expected[name]).values())
                total += sum(expected[name].values())
        return Row(
            variant=variant,
            delay_ms=delay_ms,
            messages=messages,
            handled=int(result["handled"]),
            wall_seconds=float(result["wall_seconds"]),
            active_seconds=float(result["active_seconds"]),
            cpu_seconds=float(result["cpu_seconds"]),
            emulator_cpu_seconds=emulator_cpu,
            peak_rss_kib=int(result["peak_rss_kib"]),
            rss_before_kib=int(result["rss_before_kib"]),
            sqs_requests=int(result["sqs_requests"]),
            s3_requests=int(result["s3_requests"]),
            requests=dict(result["requests"]),
            gauges_expected=total,
            gauges_missing=missing,
            gauges_extra=extra,
            events=len(received.events),
            queue_left=queue_depth(self.sqs, queue_url),
            summary=dict(result.get("summary") or {}),
        )


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    machine = machine_description()
    variants = list(args.variants)
    if "forwarder" in variants and not forwarder_available():
        log("app.service is not there yet: the forwarder variant is skipped")
        variants.remove("forwarder")
    delays = [0.0] + ([args.delay_ms] if args.delay_ms > 0 else [])
    counts = {v: (args.baseline_messages if v == "baseline" else args.messages) for v in variants}
    rss_check = args.rss_check and "forwarder" in variants
    needed = max([*counts.values(), *([args.rss_small, args.rss_large] if rss_check else [])])

    rows: list[Row] = []
    rss_rows: list[Row] = []
    profiles: dict[str, str] = {}
    try:
        with make_emulator(args.emulator) as emulator, DogStatsdReceiver() as receiver:
            log(f"{emulator.name} up on {emulator.endpoint_url} in {emulator.startup_seconds:.1f} s")
            bench = Bench(args, emulator, receiver)
            seconds = bench.seed_objects(needed)
            log(f"put {needed} job files in {seconds:.1f} s")
            for delay in delays:
                for variant in variants:
                    log(f"{variant}, {delay:g} ms per AWS call, {counts[variant]} messages ...")
                    row = bench.run(variant, counts[variant], delay)
                    log(f"  {row.rate:,.0f} msg/s, {row.check()}")
                    rows.append(row)
            if rss_check:
                for n in (args.rss_small, args.rss_large):
                    log(f"RSS check: forwarder, 0 ms, {n} messages ...")
                    row = bench.run("forwarder", n, 0.0)
                    log(f"  peak RSS {row.peak_rss_kib / 1024:.1f} MiB, {row.check()}")
                    rss_rows.append(row)
            if args.profile and "forwarder" in variants:
                from bench.profile import summarize

                Path(args.profile).mkdir(parents=True, exist_ok=True)
                for delay in delays:
                    path = str(Path(args.profile).absolute() / f"forwarder-{int(delay)}ms.pyspy.txt")
                    log(f"profiling the forwarder, {delay:g} ms ...")
                    bench.run("forwarder", args.messages, delay, profile_path=path)
                    if Path(path).exists():
                        profiles[f"{delay:g} ms"] = summarize(path)
    except (EmulatorError, VariantFailed) as exc:
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
        f"{machine['implementation']} {machine['python']}, {machine['system']}"
    )
    print(
        f"emulator: {args.emulator} (separate process); concurrency {args.concurrency} receive loops, "
        f"{args.fetch_workers} fetch workers; long poll {args.wait_seconds} s"
    )
    print()
    print(format_table(rows))
    print()
    print(
        "seconds: drain start to the last delete (the final empty long poll is excluded; wall time in --json).\n"
        "CPU and peak RSS: the draining child process only (spawned per variant, peak reset before the drain);\n"
        "emu CPU: the emulator process over the same run. check: every seeded job's job_result and\n"
        "files_processed gauges received by the DogStatsD receiver, one event per job, queue empty."
    )
    if rss_rows:
        small, large = rss_rows
        growth = (large.peak_rss_kib - small.peak_rss_kib) / 1024
        print()
        print(
            f"RSS check (forwarder, 0 ms): peak {small.peak_rss_kib / 1024:.1f} MiB at {small.messages} messages, "
            f"{large.peak_rss_kib / 1024:.1f} MiB at {large.messages} ({growth:+.1f} MiB, "
            f"{large.peak_rss_kib / small.peak_rss_kib:.2f}x); {large.rate:,.0f} msg/s; "
            f"{small.check()} / {large.check()}"
        )
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
