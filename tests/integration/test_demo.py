"""``cloud-job-metrics demo`` end to end: the README's first command, as a user runs it."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.conftest import REPO


def test_demo_shows_what_was_sent_and_what_datadog_keeps():
    """Two drain processes forward every valid file, dead-letter the broken one, and every run is counted in the Datadog view."""
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
    assert "with 2 `drain` processes" in out
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["forwarded"], summary["rejected"], summary["dead_lettered"]) == (35, 1, 1)
    runs = {
        (job, status): int(count)
        for job, status, count in re.findall(r"^  (\S+)\s+(success|failure)\s+(\d+)$", out, re.MULTILINE)
    }
    assert sum(runs.values()) == 35
    assert runs[("hourly-ingest", "success")] + runs.get(("hourly-ingest", "failure"), 0) == 12
    rows = {
        name: (kind, int(sent), int(kept))
        for name, kind, sent, kept in re.findall(
            r"^  (cloud_job\.[a-z_.]+)\s+(gauge|distribution)\s+(\d+)\s+(\d+)$", out, re.MULTILINE
        )
    }
    assert rows["cloud_job.runs"] == ("distribution", 35, 35)
    gauges = [(sent, kept) for kind, sent, kept in rows.values() if kind == "gauge"]
    assert gauges, out
    for sent, kept in gauges:
        # The same-second burst of one job collapses: fewer gauge points are kept than sent.
        assert kept < sent == 35
    assert re.search(
        r"burst: 12 runs of hourly-ingest in one second, written by 2 processes: 12 counted", out
    )
    assert "malformed datagrams: 0" in out


def test_demo_runs_through_the_api_sink_into_the_local_intake(run_cli):
    """`demo --sink api` drains every job through the HTTP API sink, two processes, every run kept by the intake."""
    result = run_cli("demo", "--sink", "api", "--jobs", "12")
    assert result.returncode == 0, result.stderr
    assert "local Datadog HTTP intake" in result.stdout
    assert re.search(r"^  cloud_job\.runs\s+distribution\s+11\s+11$", result.stdout, re.MULTILINE)
    assert "4 runs of hourly-ingest in one second, written by 2 processes: 4 counted" in result.stdout
    assert json.loads(result.stdout.strip().splitlines()[-1])["forwarded"] == 11
