"""The ``cloud-job-metrics`` command: ``drain``, ``check`` and ``demo``.

Exit codes: 0 when every message was forwarded or ignored (or every check passed), 1 when some
were rejected or left for retry (or a check failed), 2 for a usage or configuration error, which
is printed as one line.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from types import FrameType

from app.errors import CloudJobMetricsError, TransientError
from app.settings import Settings, resolve

log = logging.getLogger("app")

EXIT_OK, EXIT_INCOMPLETE, EXIT_CONFIG = 0, 1, 2


def _add_connection_flags(parser: argparse.ArgumentParser) -> None:
    aws = parser.add_argument_group("AWS")
    aws.add_argument("--queue-url", help="SQS queue to drain [SQS_QUEUE_URL]")
    aws.add_argument(
        "--dead-letter-queue-url",
        help="where rejected messages go [DEAD_LETTER_QUEUE_URL]; default: the queue's RedrivePolicy",
    )
    aws.add_argument("--endpoint-url", help="AWS endpoint, for an emulator [AWS_ENDPOINT_URL]")
    aws.add_argument("--region", help="AWS region [AWS_REGION]; default: from the queue URL")
    aws.add_argument("--profile", help="AWS profile [AWS_PROFILE]")
    statsd = parser.add_argument_group("DogStatsD")
    statsd.add_argument("--dogstatsd-url", help="udp://host:port or unix:///path [DD_DOGSTATSD_URL]")
    statsd.add_argument("--statsd-host", help="agent host [DD_AGENT_HOST, STATSD_HOST]; default 127.0.0.1")
    statsd.add_argument(
        "--statsd-port", type=int, help="agent port [DD_DOGSTATSD_PORT, STATSD_PORT]; default 8125"
    )


def _add_processing_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("processing")
    group.add_argument("--namespace", help="metric name prefix [METRIC_NAMESPACE]; default cloud_job")
    group.add_argument(
        "--distributions",
        action="store_const",
        const="true",
        help="also send every numeric field as a distribution [DISTRIBUTIONS]; default off (on in Lambda)",
    )
    group.add_argument(
        "--fields", help="send only fields matching these glob patterns, comma-separated [FIELDS]"
    )
    group.add_argument(
        "--exclude-fields", help="never send fields matching these glob patterns [EXCLUDE_FIELDS]"
    )
    group.add_argument("--tags", help="constant tags, comma-separated key:value [CONSTANT_TAGS]")
    group.add_argument("--allowed-buckets", help="only read these buckets, comma-separated [ALLOWED_BUCKETS]")
    group.add_argument("--key-prefix", help="only keys with this prefix [KEY_PREFIX]")
    group.add_argument("--key-suffix", help="only keys with this suffix [KEY_SUFFIX]")
    group.add_argument(
        "--max-object-bytes", type=int, help="size cap per object [MAX_OBJECT_BYTES]; default 1 MiB"
    )
    group.add_argument("--concurrency", type=int, help="receive loops in flight [CONCURRENCY]; default 4")
    group.add_argument("--fetch-workers", type=int, help="concurrent S3 GETs [FETCH_WORKERS]; default 16")
    group.add_argument(
        "--wait-time-seconds",
        type=int,
        help="long-poll wait [WAIT_TIME_SECONDS]; default 2 for a drain, 20 with --follow",
    )
    group.add_argument(
        "--visibility-timeout-seconds",
        type=int,
        help="visibility per receive [VISIBILITY_TIMEOUT_SECONDS]; default: the queue's",
    )
    group.add_argument(
        "--max-backoff-seconds", type=int, help="cap of the retry backoff [MAX_BACKOFF_SECONDS]; default 900"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; flags beat environment variables (in brackets), which beat defaults."""
    parser = argparse.ArgumentParser(
        prog="cloud-job-metrics",
        description="Forward job-metadata files announced on an SQS queue to Datadog via DogStatsD.",
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING … [LOG_LEVEL]; default INFO")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    drain = commands.add_parser("drain", help="forward every message, then exit (or --follow)")
    drain.add_argument("--follow", action="store_true", help="keep polling after the queue is empty")
    _add_connection_flags(drain)
    _add_processing_flags(drain)
    check = commands.add_parser("check", help="preflight: queue, redrive, visibility, agent, S3")
    _add_connection_flags(check)
    _add_processing_flags(check)
    demo = commands.add_parser("demo", help="run the whole flow on a local emulator and receiver")
    demo.add_argument("--jobs", type=int, default=36, help="job files to generate; default 36")
    return parser


def _flags(args: argparse.Namespace) -> dict[str, object]:
    return {key: value for key, value in vars(args).items() if key not in {"command", "follow", "jobs"}}


def _configure_logging(level_name: str | None, env: Mapping[str, str]) -> None:
    level = (level_name or env.get("LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for noisy in ("botocore", "boto3", "urllib3", "datadog.dogstatsd"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


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


def run_drain(settings: Settings, *, follow: bool) -> int:
    """Wire the real clients, drain, print the summary line; return the exit code."""
    from app.aws.clients import aws_clients
    from app.commands.progress import Progress
    from app.drain.service import drain_queue
    from app.sinks.factory import build_sink

    sink = build_sink(settings)
    try:
        problem = sink.probe()
        if problem:
            raise CloudJobMetricsError(problem)
        sqs, s3 = aws_clients(settings)
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            _install_signal_handlers(stop)
        with Progress(sys.stderr) as progress:
            summary = drain_queue(
                settings, sqs=sqs, s3=s3, sink=sink, follow=follow, stop=stop, progress=progress
            )
    finally:
        sink.close()
    print(summary.to_json(), flush=True)
    return EXIT_OK if summary.all_settled else EXIT_INCOMPLETE


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    env = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level, env)
    try:
        if args.command == "demo":
            from app.commands.demo import run_demo

            return run_demo(jobs=args.jobs)
        settings = resolve(_flags(args), env)
        if args.command == "check":
            from app.commands.check import run_checks

            return run_checks(settings)
        if not settings.queue_url:
            raise CloudJobMetricsError("no queue URL: pass --queue-url or set SQS_QUEUE_URL")
        return run_drain(settings, follow=args.follow)
    except TransientError as exc:
        # An outage, not a mistake: nothing was lost, the messages wait on the queue.
        print(f"cloud-job-metrics: error: {exc} (transient; messages stay on the queue)", file=sys.stderr)
        return EXIT_INCOMPLETE
    except CloudJobMetricsError as exc:
        print(f"cloud-job-metrics: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def main_exit() -> None:
    """Console-script wrapper: exit with :func:`main`'s code."""
    raise SystemExit(main())
