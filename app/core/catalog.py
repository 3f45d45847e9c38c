"""Every metric the forwarder emits, by name and type (pure).

This is the reference docs/output.md, the dashboard and the monitors are checked against.

Names are templates: ``<namespace>`` is the configured namespace (default ``cloud_job``, may be
empty, then the dot goes too) and ``<field>`` a flattened numeric field of the job file. A Datadog
metric name has exactly one type, so each name here has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DEFAULT_NAMESPACE = "cloud_job"
# The forwarder's own health, under a fixed prefix so a namespace change never hides it.
SELF_PREFIX = "cloud_job_metrics"
RUNS = "runs"
# The job counter's name before it became a distribution: still kept off field gauges, so no
# organisation that ingested it as a count ever sees a gauge of that name.
LEGACY_JOBS = "jobs"
SUCCESS = "success"
# The forwarder's own counters: one value per batch (how many messages of it had each outcome),
# summed server side, so writers on several processes, runs and hosts add up.
BATCH_PREFIX = "batch"
DISTRIBUTION_PREFIX = "distribution"


class MetricType(StrEnum):
    """The Datadog metric types the forwarder sends."""

    GAUGE = "gauge"
    DISTRIBUTION = "distribution"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric name (a template), its type, its tags and what it means."""

    name: str
    type: MetricType
    tags: str
    meaning: str


JOB_TAGS = "`cloud_job_metric`, `status:success|failure`, `bucket:`, `job:`, the file's tags, constant tags"

JOB_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        f"<namespace>.{RUNS}",
        MetricType.DISTRIBUTION,
        JOB_TAGS,
        "1 per job; `count:` is the number of runs, added up across every writer (kept server side)",
    ),
    MetricSpec(
        f"<namespace>.{SUCCESS}",
        MetricType.GAUGE,
        JOB_TAGS,
        "1 on success, 0 on failure, at the job's time: the latest run per series",
    ),
    MetricSpec(
        "<namespace>.<field>",
        MetricType.GAUGE,
        JOB_TAGS,
        "each numeric field, at the job's time: the latest value per series",
    ),
    MetricSpec(
        f"<namespace>.{DISTRIBUTION_PREFIX}.{SUCCESS}",
        MetricType.DISTRIBUTION,
        JOB_TAGS,
        "with distributions on: 1/0 per job; `count:` is the number of jobs, `avg:` the success rate",
    ),
    MetricSpec(
        f"<namespace>.{DISTRIBUTION_PREFIX}.<field>",
        MetricType.DISTRIBUTION,
        JOB_TAGS,
        "with distributions on: every value of each numeric field, at arrival time",
    ),
)

HEALTH_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        f"{SELF_PREFIX}.{BATCH_PREFIX}.messages",
        MetricType.DISTRIBUTION,
        "`outcome:forwarded|ignored|rejected|retried`",
        "SQS messages per outcome (one value per batch: `sum:` is the number of messages)",
    ),
    MetricSpec(
        f"{SELF_PREFIX}.{BATCH_PREFIX}.failures",
        MetricType.DISTRIBUTION,
        "`class:permanent|transient`, `reason:<code>`",
        "messages rejected or retried, per reason",
    ),
    MetricSpec(
        f"{SELF_PREFIX}.{BATCH_PREFIX}.dead_lettered",
        MetricType.DISTRIBUTION,
        "",
        "messages copied to the dead-letter queue",
    ),
    MetricSpec(
        f"{SELF_PREFIX}.{BATCH_PREFIX}.delete_failures",
        MetricType.DISTRIBUTION,
        "",
        "deletes SQS refused after retries (those messages come back: duplicates, not losses)",
    ),
    MetricSpec(
        f"{SELF_PREFIX}.{BATCH_PREFIX}.late_points",
        MetricType.DISTRIBUTION,
        "`reason:too-old|too-new|no-time`",
        "gauges not sent because the job's time lies outside the window Datadog accepts",
    ),
    MetricSpec(
        f"{SELF_PREFIX}.lag_seconds",
        MetricType.GAUGE,
        "",
        "S3 event time to hand-off, worst of the batch",
    ),
)


def health_metric(suffix: str) -> str:
    """The full name of the health metric ``suffix``; raises if the catalog does not list it."""
    name = f"{SELF_PREFIX}.{suffix}"
    if not any(spec.name == name for spec in HEALTH_METRICS):
        raise KeyError(f"{name} is not in the metric catalog")
    return name
