"""The flags several subcommands share, defined once, and how they become :class:`Settings`.

Every flag names the environment variable it overrides in brackets; :func:`app.settings.resolve`
decides the precedence (flag > environment > default).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from app.settings import Settings, resolve


def add_log_flags(parser: argparse.ArgumentParser) -> None:
    """How the logs on stderr look; given before the subcommand (``--log-format json drain``)."""
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING … [LOG_LEVEL]; default INFO")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help="log lines on stderr [LOG_FORMAT]; default text on a terminal, json otherwise",
    )


def add_aws_flags(parser: argparse.ArgumentParser) -> None:
    """The queue, its dead-letter queue and how to reach AWS."""
    aws = parser.add_argument_group("AWS")
    aws.add_argument("--queue-url", help="SQS queue to drain [SQS_QUEUE_URL]")
    aws.add_argument(
        "--dead-letter-queue-url",
        help="where rejected messages go [DEAD_LETTER_QUEUE_URL]; default: the queue's RedrivePolicy",
    )
    aws.add_argument("--endpoint-url", help="AWS endpoint, for an emulator [AWS_ENDPOINT_URL]")
    aws.add_argument("--region", help="AWS region [AWS_REGION]; default: from the queue URL")
    aws.add_argument("--profile", help="AWS profile [AWS_PROFILE]")


def add_statsd_flags(parser: argparse.ArgumentParser) -> None:
    """Where the DogStatsD agent listens."""
    statsd = parser.add_argument_group("DogStatsD")
    statsd.add_argument("--dogstatsd-url", help="udp://host:port or unix:///path [DD_DOGSTATSD_URL]")
    statsd.add_argument("--statsd-host", help="agent host [DD_AGENT_HOST, STATSD_HOST]; default 127.0.0.1")
    statsd.add_argument(
        "--statsd-port", type=int, help="agent port [DD_DOGSTATSD_PORT, STATSD_PORT]; default 8125"
    )


def add_sink_flags(parser: argparse.ArgumentParser) -> None:
    """Which sink gets the metrics; the HTTP API one reads the Datadog variables."""
    sink = parser.add_argument_group(
        "sink",
        "the api sink reads DD_API_KEY (or DD_API_KEY_SECRET_ARN), DD_SITE (default datadoghq.com), "
        "DD_DD_URL (overrides https://api.<DD_SITE>) and DD_HOSTNAME; the key is never a flag",
    )
    sink.add_argument(
        "--sink",
        choices=("dogstatsd", "api"),
        help="dogstatsd (to an agent) or api (Datadog's HTTP intake, acknowledged) [SINK]; default dogstatsd",
    )


def add_processing_flags(parser: argparse.ArgumentParser) -> None:
    """How messages and objects are read and turned into metrics."""
    group = parser.add_argument_group("processing")
    group.add_argument("--namespace", help="metric name prefix [METRIC_NAMESPACE]; default cloud_job")
    group.add_argument(
        "--distributions",
        action="store_const",
        const="true",
        help="also send every numeric field as a distribution [DISTRIBUTIONS]; default off (on in Lambda)",
    )
    group.add_argument("--tags", help="constant tags, comma-separated key:value [CONSTANT_TAGS]")
    group.add_argument("--allowed-buckets", help="only read these buckets, comma-separated [ALLOWED_BUCKETS]")
    group.add_argument("--key-prefix", help="only keys with this prefix [KEY_PREFIX]")
    group.add_argument("--key-suffix", help="only keys with this suffix [KEY_SUFFIX]")
    group.add_argument(
        "--max-object-bytes", type=int, help="size cap per object [MAX_OBJECT_BYTES]; default 1 MiB"
    )
    group.add_argument(
        "--max-jobs-per-object",
        type=int,
        help="jobs one file may hold (JSON array or JSON Lines) [MAX_JOBS_PER_OBJECT]; default 1000",
    )
    group.add_argument(
        "--max-records-per-message",
        type=int,
        help="objects one notification may name; over it the message is rejected (too-many-records) "
        "[MAX_RECORDS_PER_MESSAGE]; default 100",
    )
    group.add_argument(
        "--fields",
        help="send only these fields: comma-separated globs over flattened names ('images.*') [FIELDS]",
    )
    group.add_argument(
        "--exclude-fields", help="never send these fields: comma-separated globs [EXCLUDE_FIELDS]"
    )
    group.add_argument("--concurrency", type=int, help="receive loops [CONCURRENCY]; default 8")
    group.add_argument("--fetch-workers", type=int, help="concurrent S3 GETs [FETCH_WORKERS]; default 64")
    group.add_argument(
        "--max-in-flight-messages",
        type=int,
        help="upper bound of the adaptive in-flight limit [MAX_IN_FLIGHT_MESSAGES]; default 400",
    )
    group.add_argument(
        "--wait-time-seconds",
        type=int,
        help="long-poll wait [WAIT_TIME_SECONDS]; default 1 for a drain, 20 with --follow",
    )
    group.add_argument(
        "--visibility-timeout-seconds",
        type=int,
        help="visibility per receive [VISIBILITY_TIMEOUT_SECONDS]; default: the queue's",
    )
    group.add_argument(
        "--max-backoff-seconds", type=int, help="cap of the retry backoff [MAX_BACKOFF_SECONDS]; default 900"
    )


def add_forwarder_flags(parser: argparse.ArgumentParser) -> None:
    """Everything a command that forwards (or checks the forwarding path) is configured with."""
    add_aws_flags(parser)
    add_sink_flags(parser)
    add_statsd_flags(parser)
    add_processing_flags(parser)


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """Resolve the parsed flags and the environment into :class:`Settings`.

    Flags a subcommand keeps for itself are passed along too; :func:`resolve` reads only the names
    it knows, so they do no harm.
    """
    flags = {key: value for key, value in vars(args).items() if not callable(value)}
    return resolve(flags, env)
