"""Random job-metadata files, as a batch job would write them.

One generator serves the ``demo`` command and the scheduled generator Lambda that Terraform deploys,
so what the demo shows is what production receives. This module depends on the standard library
alone (plus boto3 inside :func:`handler`, which the Lambda runtime provides), so Terraform can zip it
on its own.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from typing import Any

JOB_NAMES = ("train-resnet", "nightly-etl", "feature-backfill", "eval-suite")


def make_job_metadata(rng: random.Random, *, now: float, success: bool | None = None) -> dict[str, Any]:
    """Build one job-metadata document with plausible random numbers.

    ``now`` is the job's finishing time in epoch seconds; ``success`` is drawn (9 in 10 succeed)
    when not given.
    """
    if success is None:
        success = rng.random() < 0.9
    processed = rng.randint(100, 100_000)
    return {
        "job_success": success,
        "job_name": rng.choice(JOB_NAMES),
        "timestamp": round(now, 3),
        "job_result": rng.randint(0, 1_000),
        "duration_seconds": round(rng.uniform(5.0, 3_600.0), 2),
        "files_processed": processed,
        "images": {"train": rng.randint(1_000, 50_000), "validation": rng.randint(100, 5_000)},
        "loss": round(rng.uniform(0.01, 2.0), 4),
        "tags": {"team": rng.choice(("ml", "data")), "env": "demo"},
        "run_id": uuid.UUID(int=rng.getrandbits(128)).hex,
    }


def object_key(metadata: dict[str, Any], *, prefix: str = "jobs/") -> str:
    """Return the S3 key a producer would use for ``metadata``: one folder per job name."""
    return f"{prefix}{metadata['job_name']}/{metadata['run_id']}.json"


def handler(event: dict[str, Any], context: object) -> dict[str, str]:
    """Lambda entry point: write one random job file to the bucket named by ``JOB_RESULTS_BUCKET``."""
    import boto3  # provided by the Lambda runtime; imported here so the demo never needs it twice

    bucket = os.environ["JOB_RESULTS_BUCKET"]
    prefix = os.environ.get("JOB_RESULTS_PREFIX", "jobs/")
    metadata = make_job_metadata(random.Random(), now=time.time())
    key = object_key(metadata, prefix=prefix)
    boto3.client("s3").put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(metadata).encode(),
        ContentType="application/json",
    )
    return {"bucket": bucket, "key": key}
