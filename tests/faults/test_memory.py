"""Peak memory of a drain on the worst shapes within the documented limits, measured.

One run of the console script over a queue holding, at once:

- one ~240 KB message naming the same 1 MiB object 950 times (the record cap raised to 1,000 so
  the message is read: the object is fetched once);
- one message naming 100 distinct 1 MiB objects (the default record cap);
- 40 messages, each naming one 1 MiB file of 1,000 jobs x 60 fields;
- 8 messages, each naming one ~1 MiB file whose small leaves sit under a long key (the shape with
  the most memory per byte: every leaf's name repeats the path).

The peak RSS of the drain process (``ru_maxrss`` from ``wait4`` on that one child) must stay under
768 MiB. Metrics go to a UDP socket that counts and discards datagrams, so the measurement is the
drain's, not a receiver's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.local.provision import Stack
from tests.conftest import REPO, Aws, cli_env
from tests.faults.conftest import put_object, send_bodies

pytestmark = pytest.mark.fault

MIB = 1024 * 1024
PEAK_RSS_LIMIT_BYTES = 768 * MIB
DISTINCT_IN_ONE_MESSAGE = 100
ONE_FILE_MESSAGES = 40
LONG_PATH_MESSAGES = 8
SAME_OBJECT_RECORDS = 950
RUN_TIMEOUT_SECONDS = 900


class BlackholeAgent:
    """A UDP socket that reads and counts datagrams, and keeps nothing."""

    def __init__(self) -> None:
        self.datagrams = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="blackhole", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The DD_DOGSTATSD_URL that reaches it."""
        host, port = self._sock.getsockname()
        return f"udp://{host}:{port}"

    def close(self) -> None:
        """Stop reading and close the socket."""
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def _run(self) -> None:
        buffer = bytearray(65536)
        while not self._stop.is_set():
            try:
                self._sock.recv_into(buffer)
            except TimeoutError:
                continue
            except OSError:
                return
            self.datagrams += 1


@pytest.fixture
def blackhole() -> Iterator[BlackholeAgent]:
    """A started :class:`BlackholeAgent`, closed after the test."""
    agent = BlackholeAgent()
    yield agent
    agent.close()


def wide_file(now: float) -> bytes:
    """1,000 jobs x 60 numeric fields, just under 1 MiB."""
    jobs = [
        {
            "job_success": True,
            "job_name": f"job-{j:04d}",
            "timestamp": now,
            **{f"fld_{f:02d}": j + f / 4 for f in range(60)},
        }
        for j in range(1000)
    ]
    raw = json.dumps(jobs, separators=(",", ":")).encode()
    assert 0.85 * MIB < len(raw) <= MIB, len(raw)
    return raw


def long_path_file(now: float) -> bytes:
    """Jobs of 170 one-character leaves under a 180-character key, just under 1 MiB."""
    job = {"job_success": 1, "timestamp": int(now), "p" * 180: {f"{f:x}": 1 for f in range(170)}}
    line = json.dumps(job, separators=(",", ":"))
    raw = ("[" + ",".join([line] * (MIB // (len(line) + 1) - 1)) + "]").encode()
    assert 0.85 * MIB < len(raw) <= MIB, len(raw)
    return raw


def small_record(bucket: str, key: str, size: int, etag: str) -> dict[str, Any]:
    """A notification record with what the forwarder reads, and no more (250 bytes)."""
    return {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": size, "eTag": etag}},
    }


def run_measured(aws: Aws, *args: str, env: dict[str, str]) -> tuple[int, dict[str, Any], str, int]:
    """Run the console script; return its exit code, summary, stderr and peak RSS in bytes."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", *args],
            env=cli_env(aws, env),
            cwd=REPO,
            stdout=out,
            stderr=err,
            text=True,
        )
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail("the drain did not finish in time")
            time.sleep(0.2)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    lines = stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if lines else {}
    # ru_maxrss is in KiB on Linux.
    return process.returncode, summary, stderr, usage.ru_maxrss * 1024


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 120)
def test_peak_rss_stays_under_768_mib_on_the_worst_shapes(
    aws: Aws,
    quiet_stack: Callable[..., Stack],
    blackhole: BlackholeAgent,
    report_figure: Callable[[str], None],
) -> None:
    """950 copies of one object, 100 objects in one message, 48 files of 1 MiB: forwarded, peak RSS < 768 MiB."""
    stack = quiet_stack()
    now = time.time()
    wide = wide_file(now)
    long_path = long_path_file(now)
    bodies = []
    same = put_object(aws, stack.bucket, "jobs/same.json", wide)
    same_body = json.dumps(
        {"Records": [small_record(stack.bucket, same.key, same.size, same.etag)] * SAME_OBJECT_RECORDS}
    )
    assert 200_000 < len(same_body) <= 256 * 1024, len(same_body)
    bodies.append(same_body)
    distinct = [
        put_object(aws, stack.bucket, f"jobs/distinct/{n:03d}.json", wide)
        for n in range(DISTINCT_IN_ONE_MESSAGE)
    ]
    bodies.append(json.dumps({"Records": [small_record(o.bucket, o.key, o.size, o.etag) for o in distinct]}))
    for n in range(ONE_FILE_MESSAGES):
        stored = put_object(aws, stack.bucket, f"jobs/wide/{n:03d}.json", wide)
        bodies.append(
            json.dumps({"Records": [small_record(stored.bucket, stored.key, stored.size, stored.etag)]})
        )
    for n in range(LONG_PATH_MESSAGES):
        stored = put_object(aws, stack.bucket, f"jobs/long/{n:03d}.json", long_path)
        bodies.append(
            json.dumps({"Records": [small_record(stored.bucket, stored.key, stored.size, stored.etag)]})
        )
    send_bodies(aws, stack.queue_url, bodies)
    started = time.monotonic()

    code, summary, stderr, peak_rss = run_measured(
        aws,
        "drain",
        "--max-records-per-message",
        "1000",
        "--max-runtime",
        "0",
        env={"SQS_QUEUE_URL": stack.queue_url, "DD_DOGSTATSD_URL": blackhole.url},
    )

    seconds = time.monotonic() - started
    report_figure(
        f"memory: {len(bodies)} messages, {1 + DISTINCT_IN_ONE_MESSAGE + ONE_FILE_MESSAGES + LONG_PATH_MESSAGES} "
        f"distinct 1 MiB objects, {summary.get('jobs')} jobs in {seconds:.0f} s: peak RSS {peak_rss / MIB:.0f} MiB "
        f"(limit {PEAK_RSS_LIMIT_BYTES // MIB} MiB), {blackhole.datagrams} datagrams"
    )
    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    assert summary["forwarded"] == len(bodies)
    long_jobs = len(json.loads(long_path))
    assert (
        summary["jobs"]
        == 1000 * (1 + DISTINCT_IN_ONE_MESSAGE + ONE_FILE_MESSAGES) + long_jobs * LONG_PATH_MESSAGES
    )
    assert blackhole.datagrams > 0
    assert peak_rss < PEAK_RSS_LIMIT_BYTES, f"peak RSS {peak_rss / MIB:.0f} MiB"
    assert aws.queue_depth(stack.queue_url) == (0, 0)
