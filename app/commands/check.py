"""``cloud-job-metrics check``: a preflight of the queue, its redrive, S3 and the agent.

One line per check; the exit code is 0 when none failed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

from app.aws.resources import CloudResourceHandler, QueueAttributes
from app.commands.flags import add_forwarder_flags, settings_from
from app.errors import CloudJobMetricsError
from app.settings import Settings
from app.sinks.dogstatsd import probe_agent

# The forwarder holds a batch for at most a few S3 reads and one hand-off; the heartbeat extends
# longer holds, but a timeout under this makes every slow read a near-miss.
MIN_VISIBILITY_SECONDS = 30
MAX_SANE_RECEIVE_COUNT = 100


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of the report."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        """``ok``/``FAIL``, the name, the detail."""
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def queue_checks(resources: CloudResourceHandler, settings: Settings) -> list[CheckResult]:
    """Checks that need the queue: reachable, redrive, visibility, DLQ."""
    try:
        attributes = resources.queue_attributes()
    except CloudJobMetricsError as exc:
        return [CheckResult("queue reachable", False, str(exc))]
    results = [CheckResult("queue reachable", True, resources.queue_url)]
    results.append(_redrive(attributes))
    vt = settings.visibility_timeout_seconds or attributes.visibility_timeout_seconds
    results.append(
        CheckResult(
            "visibility timeout",
            vt >= MIN_VISIBILITY_SECONDS,
            f"{vt} s (at least {MIN_VISIBILITY_SECONDS} s; the heartbeat extends longer holds)",
        )
    )
    results.append(_dead_letter_queue(resources, settings, attributes))
    return results


def _redrive(attributes: QueueAttributes) -> CheckResult:
    count = attributes.max_receive_count
    if attributes.dead_letter_queue_arn is None or count is None:
        return CheckResult("redrive policy", False, "none: a message that keeps failing is retried forever")
    sane = 2 <= count <= MAX_SANE_RECEIVE_COUNT
    return CheckResult(
        "redrive policy",
        sane,
        f"maxReceiveCount {count} to {attributes.dead_letter_queue_arn} (sane: 2..{MAX_SANE_RECEIVE_COUNT})",
    )


def _dead_letter_queue(
    resources: CloudResourceHandler, settings: Settings, attributes: QueueAttributes
) -> CheckResult:
    try:
        url = settings.dead_letter_queue_url or (
            resources.queue_url_for_arn(attributes.dead_letter_queue_arn)
            if attributes.dead_letter_queue_arn
            else None
        )
        if url is None:
            return CheckResult("dead-letter queue", False, "not configured and not in the RedrivePolicy")
        CloudResourceHandler(
            sqs_client=resources.sqs, s3_client=resources.s3, queue_url=url
        ).queue_attributes()
    except CloudJobMetricsError as exc:
        return CheckResult("dead-letter queue", False, str(exc))
    return CheckResult("dead-letter queue", True, url)


def bucket_checks(resources: CloudResourceHandler, settings: Settings) -> list[CheckResult]:
    """Each allowed bucket exists and answers (HeadBucket needs s3:ListBucket, so 403 is a warning)."""
    if not settings.allowed_buckets:
        return [CheckResult("S3 buckets", True, "no ALLOWED_BUCKETS: any bucket in a notification is read")]
    results = []
    for bucket in sorted(settings.allowed_buckets):
        problem = resources.bucket_problem(bucket)
        if problem is None:
            results.append(CheckResult(f"bucket {bucket}", True, "reachable"))
        elif problem in {"403", "AccessDenied"}:
            results.append(
                CheckResult(
                    f"bucket {bucket}", True, "exists; HeadBucket denied (fine without s3:ListBucket)"
                )
            )
        else:
            results.append(CheckResult(f"bucket {bucket}", False, problem))
    return results


def sink_check(settings: Settings) -> CheckResult:
    """The configured sink: the DogStatsD agent reachable, or the API intake accepting the key."""
    if settings.sink != "api":
        problem = probe_agent(settings.statsd)
        return CheckResult("agent reachable", problem is None, problem or settings.statsd.describe())
    from app.sinks.api import api_sink

    name = "Datadog API key valid"
    try:
        sink = api_sink(settings)
    except CloudJobMetricsError as exc:
        return CheckResult(name, False, str(exc))
    try:
        problem = sink.probe()
    except CloudJobMetricsError as exc:
        problem = str(exc)
    finally:
        sink.close()
    return CheckResult(name, problem is None, problem or f"{settings.api.base_url}/api/v1/validate")


def run_checks(settings: Settings, *, out: TextIO = sys.stdout) -> int:
    """Run every check, print one line each; return 0 if all passed, else 1."""
    from app.aws.clients import aws_clients

    results = [sink_check(settings)]
    if not settings.queue_url:
        results.append(
            CheckResult("queue reachable", False, "no queue URL: pass --queue-url or set SQS_QUEUE_URL")
        )
    else:
        sqs, s3 = aws_clients(settings)
        resources = CloudResourceHandler(sqs_client=sqs, s3_client=s3, queue_url=settings.queue_url)
        checks: list[Callable[[CloudResourceHandler, Settings], list[CheckResult]]] = [
            queue_checks,
            bucket_checks,
        ]
        for check in checks:
            results.extend(check(resources, settings))
    for result in results:
        print(result.line(), file=out)
    return 0 if all(result.ok for result in results) else 1


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``check`` subcommand."""
    parser = commands.add_parser("check", help="preflight: queue, redrive, visibility, agent, S3")
    add_forwarder_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Resolve the settings and run every check."""
    return run_checks(settings_from(args, env))
