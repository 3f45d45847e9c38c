"""The forwarder variant: this product's console script, as a user runs it, with default settings.

``cloud-job-metrics drain`` runs as a process of its own, configured only by the environment a cron
job would give it (queue URL, endpoint, region, credentials, DogStatsD URL); every setting that
shapes throughput keeps its default. It reaches the emulator through the delay proxy, which also
counts its requests and times its deletes. Measured from outside, so nothing in it is special:

- whole process: from just before the process is started to its exit (``os.wait4``), so the
  interpreter's start, the imports, the queue lookups and the final decision that the queue is
  empty are all included;
- CPU and peak RSS: the process's own ``ru_utime + ru_stime`` and ``ru_maxrss`` from ``wait4``;
- first delete: process start to the first DeleteMessageBatch answered (the first forward is
  just before it); empty: the last delete answered to the exit (deciding the queue is empty and
  shutting down); steady state: the messages deleted after the first batch, over the time from
  the first delete to the last.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import VariantSpec

#: Environment variables that would change the drain's settings: removed, so defaults apply.
SETTING_VARIABLES = (
    "CONCURRENCY",
    "FETCH_WORKERS",
    "MAX_IN_FLIGHT_MESSAGES",
    "WAIT_TIME_SECONDS",
    "VISIBILITY_TIMEOUT_SECONDS",
    "MAX_BACKOFF_SECONDS",
    "MAX_OBJECT_BYTES",
    "AWS_PROFILE",
    "DD_AGENT_HOST",
    "DD_DOGSTATSD_PORT",
    "STATSD_HOST",
    "STATSD_PORT",
    "METRIC_NAMESPACE",
    "CONSTANT_TAGS",
    "ALLOWED_BUCKETS",
    "KEY_PREFIX",
    "KEY_SUFFIX",
    "SELF_METRICS",
    "LOG_LEVEL",
)


@dataclass
class ProcessResult:
    exit_code: int
    wall_seconds: float
    cpu_seconds: float
    peak_rss_kib: int
    summary: dict[str, Any]
    stderr_tail: str
    stderr: str = ""


def console_script() -> list[str]:
    """The installed ``cloud-job-metrics`` beside this interpreter (else ``python -m app``)."""
    script = Path(sys.executable).parent / "cloud-job-metrics"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app"]


def forwarder_environment(spec: VariantSpec) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTING_VARIABLES}
    env.update(
        SQS_QUEUE_URL=spec.queue_url,
        AWS_ENDPOINT_URL=spec.endpoint_url,
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        DD_DOGSTATSD_URL=f"udp://127.0.0.1:{spec.statsd_port}",
    )
    return env


def _profiled(command: list[str], path: str) -> list[str]:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        print("bench: --profile needs py-spy (pip install py-spy); profiling skipped", file=sys.stderr)
        return command
    return [exe, "record", "--gil", "--rate", "250", "--format", "raw", "--output", path, "--", *command]


def run_forwarder_process(spec: VariantSpec, *, timeout: float) -> tuple[ProcessResult, float]:
    """Run ``cloud-job-metrics drain`` to its exit; return its result and its start (monotonic)."""
    command = [*console_script(), "drain"]
    if spec.profile_path:
        command = _profiled(command, spec.profile_path)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen(
            command, env=forwarder_environment(spec), stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        # Reaped here with wait4, not by Popen, to get the process's own CPU time and peak RSS.
        reaped: list[tuple[int, Any, float]] = []
        waiter = threading.Thread(
            target=lambda: reaped.append((*os.wait4(process.pid, 0)[1:], time.monotonic())), daemon=True
        )
        waiter.start()
        waiter.join(timeout)
        if not reaped:
            process.kill()
            waiter.join(10)
            raise TimeoutError(f"the forwarder did not exit within {timeout:.0f} s")
        status, usage, ended = reaped[0]
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return (
        ProcessResult(
            exit_code=process.returncode,
            wall_seconds=ended - started,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            peak_rss_kib=usage.ru_maxrss,
            summary=_summary(stdout),
            stderr_tail="\n".join(stderr.splitlines()[-5:]),
            stderr=stderr,
        ),
        started,
    )


def _summary(stdout: str) -> dict[str, Any]:
    lines = stdout.strip().splitlines()
    try:
        return dict(json.loads(lines[-1])) if lines else {}
    except ValueError:
        return {}
