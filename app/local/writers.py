"""Several ``drain`` processes side by side on one queue, as replicas or overlapping cron runs are.

Used by the demo and the tests to show what Datadog keeps when more than one process writes the
same series in the same second. Each process is the real console entry point
(``python -m app drain``) with its own sockets and connections; they share only the queue and
the destination (the local DogStatsD receiver, one agent, or the local intake).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Variables of the caller's shell that would point a child at real AWS or a real agent.
_INHERITED_PREFIXES = ("AWS_", "DD_", "STATSD_", "SQS_", "SINK", "DISTRIBUTIONS", "CONSTANT_TAGS")


@dataclass(frozen=True, slots=True)
class DrainRun:
    """One finished ``drain`` process: its exit code, summary line (if any) and stderr."""

    returncode: int
    summary: Mapping[str, Any]
    stderr: str


def emulator_env(endpoint: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a child that talks to the local emulator at ``endpoint``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(_INHERITED_PREFIXES)}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
        LOG_FORMAT="json",
    )
    env.update(extra)
    return env


def run_drains(
    count: int, env: Mapping[str, str], *, args: Sequence[str] = (), timeout_seconds: float = 120
) -> list[DrainRun]:
    """Start ``count`` drain processes at once with ``env``; wait for all; return their runs."""
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "app", "drain", *args],
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    runs = []
    for child in children:
        try:
            stdout, stderr = child.communicate(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            child.kill()
            stdout, stderr = child.communicate()
        lines = stdout.strip().splitlines()
        summary = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
        runs.append(DrainRun(child.returncode, summary, stderr))
    return runs


def merged(runs: Sequence[DrainRun]) -> dict[str, float]:
    """The counts of every run's summary added up; ``seconds`` is the longest run's."""
    total: dict[str, float] = {}
    for run in runs:
        for key, value in run.summary.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                total[key] = max(total.get(key, 0), value) if key == "seconds" else total.get(key, 0) + value
    return total
