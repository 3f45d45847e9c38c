"""``cloud-job-metrics drain``: forward every message until the queue is empty (or ``--follow``)."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from types import FrameType

from app.commands.exits import EXIT_INCOMPLETE, EXIT_OK
from app.commands.flags import add_forwarder_flags, settings_from
from app.errors import CloudJobMetricsError
from app.settings import Settings

log = logging.getLogger("app")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``drain`` subcommand."""
    parser = commands.add_parser("drain", help="forward every message, then exit (or --follow)")
    parser.add_argument("--follow", action="store_true", help="keep polling after the queue is empty")
    parser.add_argument(
        "--max-runtime",
        dest="max_runtime_seconds",
        type=int,
        metavar="SECONDS",
        help="stop receiving after SECONDS, settle what is in hand, exit 0; the rest is the next run's "
        "work [MAX_RUNTIME_SECONDS]; default 240, which leaves a 5-minute schedule a minute for "
        "settling and the next start; 0: no limit; ignored with --follow",
    )
    add_forwarder_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Resolve the settings and drain."""
    settings = settings_from(args, env)
    if not settings.queue_url:
        raise CloudJobMetricsError("no queue URL: pass --queue-url or set SQS_QUEUE_URL")
    if args.follow and (args.max_runtime_seconds is not None or env.get("MAX_RUNTIME_SECONDS")):
        log.warning(
            "drain.max_runtime_ignored: --follow keeps polling; MAX_RUNTIME_SECONDS applies to a drain"
        )
    return run_drain(settings, follow=args.follow, log_format=getattr(args, "log_format", None) or "text")


def _install_signal_handlers(stop: threading.Event) -> None:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            # Second signal: leave now. Undeleted messages reappear after their visibility.
            os._exit(128 + signum)
        log.warning(
            "shutdown.requested signal=%s: finishing the messages in hand", signal.Signals(signum).name
        )
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def run_drain(settings: Settings, *, follow: bool, log_format: str = "text") -> int:
    """Wire the real clients, drain, print the summary line; return the exit code."""
    from app.aws.clients import aws_clients
    from app.commands.progress import Progress
    from app.drain.service import drain_queue
    from app.sinks.factory import build_sink

    sink = build_sink(settings)
    try:
        # The probe mostly waits (DogStatsD: up to 50 ms for an ICMP answer; the API: a round
        # trip) while building the AWS clients is CPU work: both at once, so a run starts sooner.
        with ThreadPoolExecutor(1, thread_name_prefix="probe") as background:
            probing = background.submit(sink.probe)
            try:
                sqs, s3 = aws_clients(settings)
            finally:
                problem = probing.result()
        if problem:
            raise CloudJobMetricsError(problem)
        # The modules and the service models just loaded live as long as the process: keep the
        # collector from scanning them again in every full collection of the drain.
        gc.freeze()
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            _install_signal_handlers(stop)
        # Progress is for people: in JSON logs it would be noise, so only text logs carry it.
        with Progress(sys.stderr, log_lines=log_format == "text") as progress:
            summary = drain_queue(
                settings, sqs=sqs, s3=s3, sink=sink, follow=follow, stop=stop, progress=progress
            )
    finally:
        sink.close()
    print(summary.to_json(), flush=True)
    # Refused deletes spoil the exit code too: those messages come back and are forwarded again.
    return EXIT_OK if summary.all_settled else EXIT_INCOMPLETE
