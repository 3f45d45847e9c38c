"""``cloud-job-metrics demo`` end to end: the README's first command, as a user runs it."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.conftest import REPO


def test_demo_shows_what_was_sent_and_what_datadog_keeps():
    """The demo forwards every valid file, dead-letters the broken one, and prints the Datadog view."""
    completed = subprocess.run(
        [sys.executable, "-m", "app", "demo"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["forwarded"], summary["rejected"], summary["dead_lettered"]) == (35, 1, 1)
    runs = {
        (job, status): int(count)
        for job, status, count in re.findall(r"^  (\S+)\s+(success|failure)\s+(\d+)$", out, re.MULTILINE)
    }
    assert sum(runs.values()) == 35
    assert runs[("nightly-etl", "success")] + runs.get(("nightly-etl", "failure"), 0) >= 12
    gauge_rows = re.findall(r"^  (cloud_job\.[a-z_.]+)\s+(\d+)\s+(\d+)$", out, re.MULTILINE)
    assert gauge_rows, out
    for _, sent, stored in gauge_rows:
        # The same-second burst of one job collapses: fewer gauge points are kept than sent.
        assert int(stored) < int(sent) == 35
    assert "malformed datagrams: 0" in out


def test_demo_runs_through_the_api_sink_into_the_local_intake(run_cli):
    """`demo --sink api` drains every job through the HTTP API sink and exits 0."""
    result = run_cli("demo", "--sink", "api", "--jobs", "12")
    assert result.returncode == 0, result.stderr
    assert "local Datadog HTTP intake" in result.stdout
    assert "cloud_job.jobs" in result.stdout and "11 jobs" in result.stdout
    assert json.loads(result.stdout.strip().splitlines()[-1])["forwarded"] == 11
