"""``python -m bench``: seed the emulator, drain with each variant, print the comparison table.

Variants: ``baseline`` (the original one-at-a-time loop), ``ceiling`` (bare AWS calls, what the
emulator allows) and ``forwarder`` (this product via ``app.drain.service.drain_queue``), each without and
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

from app.local.dogstatsd import DogStatsdReceiver, EventLine, Line
from bench.aws import make_client
from bench.localstack import Emulator, EmulatorError, make_emulator
from bench.measure import VariantFailedError, VariantSpec, run_in_child
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
    """What the receiver stores: events and the checked gauges (every line is still parsed)."""
    return isinstance(line, EventLine) or (line.type == "g" and line.name in CHECKED_GAUGES)


def make_receiver() -> DogStatsdReceiver:
    """The product's strict DogStatsD receiver on UDP 127.0.0.1, keeping only what is checked."""
    return DogStatsdReceiver(port=0, keep=checked_line)


def wait_quiet(receiver: DogStatsdReceiver, *, quiet: float, timeout: float) -> None:
    """Return once no datagram has arrived for ``quiet`` seconds (or after ``timeout``)."""
    receiver.wait_for(lambda r: time.monotonic() - r.last_datagram_at >= quiet, timeout_seconds=timeout)


def _forwarder_defaults() -> dict[str, int] | None:
    try:
        from bench.forwarder import default_settings

        return default_settings()
    except ImportError:
        return None


def forwarder_available() -> bool:
    try:
        import app.drain.service  # noqa: F401
    except ImportError:
        return False
    return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = _forwarder_defaults() or {"concurrency": 4, "fetch_workers": 16, "wait_seconds": 2}
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-n", "--messages", type=int, default=2000, help="messages for ceiling and forwarder (default 2000)"
    )
    parser.add_argument(
        "--baseline-messages", type=int, default=300, help="messages for the slow baseline (default 300)"
    )
    parser.add_argument(
        "--delay-ms",
        type=float,
        default=20.0,
        help="modelled round trip per AWS call; 0 runs only without (default 20)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=defaults["concurrency"],
        help="receive loops, as Settings.concurrency (default: the forwarder's, %(default)s)",
    )
    parser.add_argument(
        "--fetch-workers",
        type=int,
        default=defaults["fetch_workers"],
        help="S3 GETs in flight, as Settings.fetch_workers (default %(default)s)",
    )
    parser.add_argument(
        "--wait-seconds",
        type=int,
        default=defaults["wait_seconds"],
        help="long-poll wait of ceiling and forwarder (default %(default)s, the drain default)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each variant and delay this many times and report the median by msg/s (default 1)",
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
    for name in (
        "messages",
        "baseline_messages",
        "repeat",
        "concurrency",
        "fetch_workers",
        "rss_small",
        "rss_large",
    ):
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
                drain_ceiling(queue_url, sqs=self.sqs, s3=self.s3, loops=2, fetch_workers=4, wait_seconds=0)
        wait_quiet(self.receiver, quiet=0.2, timeout=5)
        self.receiver.clear()
        log(f"warm-up drained {2 * messages} messages in {time.perf_counter() - started:.1f} s")

    def run(self, variant: str, messages: int, delay_ms: float, *, profile_path: str | None = None) -> Row:
        assert self.dataset is not None
        queue_url = create_queue(self.sqs, f"bench-{variant}-{int(delay_ms)}ms-{next(self._queue_ids)}")
        send_notifications(self.sqs, queue_url, self.dataset, messages)
        wait_quiet(self.receiver, quiet=0.2, timeout=5)
        self.receiver.clear()
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
        wait_quiet(self.receiver, quiet=0.5, timeout=10)
        malformed = list(self.receiver.errors)
        if malformed:
            log(f"  {len(malformed)} malformed datagrams, the first: {malformed[0]}")

        expected = self.dataset.expected(messages)
        missing = extra = total = 0
        if variant != "ceiling":
            for name in CHECKED_FIELDS:
                got = Counter(metric.value for metric in self.receiver.metrics(f"{NAMESPACE}.{name}"))
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
            events=len(self.receiver.events()),
            queue_left=queue_depth(self.sqs, queue_url),
            malformed=len(malformed),
            summary=dict(result.get("summary") or {}),
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
    if "forwarder" in variants and not forwarder_available():
        log("app.drain.service is not there yet: the forwarder variant is skipped")
        variants.remove("forwarder")
    delays = [0.0] + ([args.delay_ms] if args.delay_ms > 0 else [])
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
            for delay in delays:
                for variant in variants:
                    runs = []
                    for _ in range(args.repeat):
                        log(f"{variant}, {delay:g} ms per AWS call, {counts[variant]} messages ...")
                        runs.append(bench.run(variant, counts[variant], delay))
                        log(f"  {runs[-1].rate:,.0f} msg/s, {runs[-1].check()}")
                    rows.append(median_run(runs))
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
    except (EmulatorError, VariantFailedError) as exc:
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
        f"emulator: {args.emulator} (separate process); concurrency {args.concurrency} receive loops, "
        f"{args.fetch_workers} fetch workers; long poll {args.wait_seconds} s"
        + (f"; median of {args.repeat} runs each" if args.repeat > 1 else "")
    )
    print()
    print(format_table(rows))
    print()
    for row in rows:
        if len(row.repeats) > 1:
            runs = ", ".join(f"{rate:,.0f}" for rate in row.repeats)
            print(f"{row.variant} at {row.delay_ms:g} ms, msg/s of each run: {runs}")
    if any(len(row.repeats) > 1 for row in rows):
        print()
    print(
        "seconds: drain start to the last delete (the final empty long poll is excluded; wall time\n"
        "in --json). CPU and peak RSS: the draining child process only (spawned per variant, peak\n"
        "reset before the drain). emu CPU: the emulator process over the same run. check: every\n"
        "seeded job's job_result and files_processed gauges reached the DogStatsD receiver, one\n"
        "event per job, no malformed datagram (parsed by app.local.dogstatsd), queue empty."
    )
    if rss_rows:
        small, large = rss_rows
        growth = (large.peak_rss_kib - small.peak_rss_kib) / 1024
        print()
        print(
            f"RSS check (forwarder, 0 ms): peak {small.peak_rss_kib / 1024:.1f} MiB "
            f"at {small.messages} messages, "
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
