"""Fixtures and helpers of the fault suite: the fault proxy, crash-able drains, agent stand-ins.

All durations are seconds. Every subprocess has a timeout and every loop a bound, so a fault
that makes the forwarder hang fails a test instead of stalling the suite.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.local.dogstatsd import DogStatsdReceiver, Line, Metric, parse_datagram
from app.local.notifications import s3_event_record, s3_notification
from app.local.provision import Stack
from tests.conftest import REPO, Aws, CliResult, cli_env
from tests.faults.proxy import FaultInjectingProxy

Cli = Callable[..., CliResult]
CLI_TIMEOUT_SECONDS = 90
SUMMARY_KEYS = ("received", "forwarded", "ignored", "rejected", "retried", "dead_lettered", "jobs")


# --- figures printed at the end of the run -------------------------------------------------------

_FIGURES: list[str] = []


@pytest.fixture
def report_figure() -> Callable[[str], None]:
    """Record one line of figures (faults injected, duplicates …) for the terminal summary."""
    return _FIGURES.append


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the figures the fault tests recorded, so a run reports what it exercised."""
    if _FIGURES:
        terminalreporter.section("fault suite figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


# --- documents and notifications -----------------------------------------------------------------


def job_document(index: int, *, now: float) -> dict[str, Any]:
    """A job-metadata document identified by ``job_result == index`` and its own ``job_name``."""
    return {
        "job_success": index % 7 != 0,
        "job_name": f"job-{index:04d}",
        "job_result": index,
        "timestamp": round(now, 3),
        "duration_seconds": 10.5 + index,
        "images": {"train": 1000 + index, "validation": 100 + index},
        "loss": round(1 / (index + 1), 6),
        "tags": {"team": "faults"},
        "run_id": uuid.uuid4().hex,
    }


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object written to the emulator, with what its notification must say about it."""

    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None


def put_object(aws: Aws, bucket: str, key: str, body: bytes) -> StoredObject:
    """Write ``body`` and return what a notification about it carries."""
    response = aws.s3.put_object(Bucket=bucket, Key=key, Body=body)
    return StoredObject(bucket, key, len(body), response["ETag"].strip('"'), response.get("VersionId"))


def s3_record(stored: StoredObject, *, event_time: float | None = None, **overrides: Any) -> dict[str, Any]:
    """One ``ObjectCreated:Put`` record in the exact S3 notification format (key URL-encoded)."""
    record = s3_event_record(
        stored.bucket,
        stored.key,
        size=stored.size,
        etag=stored.etag,
        version_id=stored.version_id,
        event_time=event_time,
    )
    record["s3"]["object"].update(overrides)
    return record


notification = s3_notification


def send_bodies(aws: Aws, queue_url: str, bodies: Sequence[str]) -> list[str]:
    """Send ``bodies`` in batches of ten; return the message ids in order."""
    ids: list[str] = []
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        response = aws.sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)],
        )
        assert not response.get("Failed"), response.get("Failed")
        by_entry = {entry["Id"]: entry["MessageId"] for entry in response["Successful"]}
        ids.extend(by_entry[str(i)] for i in range(len(chunk)))
    return ids


# --- what the receiver saw -----------------------------------------------------------------------


def job_results(lines: Sequence[Line] | DogStatsdReceiver, namespace: str = "cloud_job") -> list[int]:
    """The ``job_result`` gauge values received, one entry per delivery, sorted."""
    metrics = lines.metrics() if isinstance(lines, DogStatsdReceiver) else lines
    name = f"{namespace}.job_result"
    return sorted(int(m.value) for m in metrics if isinstance(m, Metric) and m.name == name)


JOB_GAUGES = frozenset(
    f"cloud_job.{name}"
    for name in ("success", "job_result", "duration_seconds", "images.train", "images.validation", "loss")
)


def gauge_names_by_job(lines: Sequence[Line] | DogStatsdReceiver) -> dict[str, set[str]]:
    """The gauge names received per ``job:`` tag (a job from :func:`job_document` has :data:`JOB_GAUGES`)."""
    metrics = lines.metrics() if isinstance(lines, DogStatsdReceiver) else lines
    found: dict[str, set[str]] = {}
    for metric in metrics:
        if not isinstance(metric, Metric) or metric.type != "g":
            continue
        job = next((tag.removeprefix("job:") for tag in metric.tags if tag.startswith("job:")), None)
        if job is not None:
            found.setdefault(job, set()).add(metric.name)
    return found


def wait_for_results(receiver: DogStatsdReceiver, expected: set[int], *, timeout_seconds: float = 5) -> bool:
    """Wait until every ``job_result`` in ``expected`` arrived (datagrams may still be in flight)."""
    return receiver.wait_for(lambda r: expected <= set(job_results(r)), timeout_seconds=timeout_seconds)


# --- running drains --------------------------------------------------------------------------------


def start_drain(aws: Aws, *args: str, env: Mapping[str, str]) -> subprocess.Popen[str]:
    """Start ``python -m app drain ARGS`` without waiting (so the test can kill it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "app", "drain", *args],
        env=cli_env(aws, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


@dataclass
class DrainRuns:
    """The drains a test ran until the queue was empty, and how it ended."""

    results: list[CliResult] = field(default_factory=list)
    emptied: bool = False
    seconds: float = 0.0

    def total(self, key: str) -> int:
        """Sum of one summary counter over the runs that printed a summary."""
        return sum(int(r.summary[key]) for r in self.results if r.returncode in (0, 1))

    def describe(self) -> str:
        """One line per run, for assertion messages."""
        return "\n".join(
            f"run {i}: exit {r.returncode} {r.stdout.strip().splitlines()[-1:] or r.stderr[-300:]}"
            for i, r in enumerate(self.results)
        )


def wait_until_settled(aws: Aws, queue_url: str, *, deadline: float) -> bool:
    """Wait while only in-flight messages remain; True once the queue is empty, False if some are visible."""
    while True:
        visible, in_flight = aws.queue_depth(queue_url)
        if visible == 0 and in_flight == 0:
            return True
        if visible > 0 or time.monotonic() >= deadline:
            return False
        time.sleep(0.25)


@pytest.fixture
def drain_until_empty(aws: Aws, run_cli: Cli) -> Callable[..., DrainRuns]:
    """Factory: run ``drain`` again and again (bounded) until ``queue_url`` holds no message at all.

    ``accept`` decides which finished runs are normal (by default exit 0 or 1: done, or some left
    for retry); anything else stops the loop, so the test sees it.
    """

    def drain(
        queue_url: str,
        *args: str,
        env: Mapping[str, str],
        max_runs: int = 8,
        budget_seconds: float = 90,
        accept: Callable[[CliResult], bool] = lambda r: r.returncode in (0, 1),
    ) -> DrainRuns:
        runs = DrainRuns()
        started = time.monotonic()
        deadline = started + budget_seconds
        while len(runs.results) < max_runs and time.monotonic() < deadline:
            timeout = max(5.0, min(CLI_TIMEOUT_SECONDS, deadline - time.monotonic()))
            result = run_cli("drain", *args, env={"SQS_QUEUE_URL": queue_url, **env}, timeout=timeout)
            runs.results.append(result)
            if not accept(result):
                break
            if wait_until_settled(aws, queue_url, deadline=deadline):
                runs.emptied = True
                break
        runs.seconds = time.monotonic() - started
        return runs

    return drain


# --- AWS side ------------------------------------------------------------------------------------


@pytest.fixture
def fault_proxy(aws: Aws) -> Iterator[Callable[..., FaultInjectingProxy]]:
    """Factory: a started fault-injecting proxy in front of the emulator, stopped after the test."""
    started: list[FaultInjectingProxy] = []

    def make(**options: Any) -> FaultInjectingProxy:
        proxy = FaultInjectingProxy(aws.endpoint, **options).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@pytest.fixture
def quiet_stack(make_stack: Callable[..., Stack]) -> Callable[..., Stack]:
    """Factory: a fresh bucket, queue and DLQ without the S3 notification (the test sends its own)."""

    def make(**options: Any) -> Stack:
        return make_stack(notification=False, **options)

    return make


# --- DogStatsD side ------------------------------------------------------------------------------


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short-named temporary folder for Unix sockets (their paths are limited to ~100 bytes)."""
    folder = tempfile.mkdtemp(prefix="dsf-", dir="/tmp")
    try:
        yield Path(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class UnixAgent:
    """A DogStatsD stand-in on a Unix datagram socket that can be slow, and can go away.

    It goes away (socket closed and unlinked, in its own thread, so later sends find nothing)
    after ``max_datagrams`` datagrams, or once the ``job_result`` gauges of ``max_jobs`` jobs
    arrived, whichever comes first. The drain's start-up probe is one empty datagram, so
    ``max_datagrams=1`` lets the probe pass and removes the socket before any metric can arrive.
    ``read_pause_seconds`` makes it read one datagram at a time with a pause, like a busy agent.
    What it took is kept in ``datagrams`` and ``lines``.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_datagrams: int | None = None,
        max_jobs: int | None = None,
        read_pause_seconds: float = 0.0,
    ) -> None:
        self.path = path
        self.max_datagrams = max_datagrams
        self.max_jobs = max_jobs
        self.read_pause_seconds = read_pause_seconds
        self.datagrams: list[bytes] = []
        self.lines: list[Line] = []
        self.gone = threading.Event()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="unix-agent", daemon=True)

    @property
    def url(self) -> str:
        """The ``DD_DOGSTATSD_URL`` that reaches this agent while it is up."""
        return f"unix://{self.path}"

    def start(self) -> UnixAgent:
        """Start reading; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop reading and go away (if not gone already)."""
        self._stop.set()
        self._thread.join(timeout=2)
        self._go_away()

    def _go_away(self) -> None:
        """Refuse new datagrams (senders get ENOENT or EPIPE), but process those already accepted.

        A datagram the kernel queued counts as handed to the agent, so the forwarder may delete its
        message; dropping the queue here would blame the forwarder for the agent's own loss.
        """
        if self.gone.is_set():
            return
        self.path.unlink(missing_ok=True)
        try:
            self._sock.shutdown(socket.SHUT_RD)
            self._sock.setblocking(False)
            while data := self._sock.recv(65536):
                self._take(data)
        except OSError:
            pass  # BlockingIOError: the queue is empty
        self._sock.close()
        self.gone.set()

    def _take(self, data: bytes) -> None:
        self.datagrams.append(data)
        self.lines.extend(parse_datagram(data))

    def _satisfied(self) -> bool:
        if self.max_datagrams is not None and len(self.datagrams) >= self.max_datagrams:
            return True
        return self.max_jobs is not None and len(job_results(self.lines)) >= self.max_jobs

    def _run(self) -> None:
        while not self._stop.is_set() and not self._satisfied():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self._take(data)
            if self.read_pause_seconds:
                time.sleep(self.read_pause_seconds)
        if not self._stop.is_set():
            self._go_away()


@pytest.fixture
def unix_agent(socket_dir: Path) -> Iterator[Callable[..., UnixAgent]]:
    """Factory: a started :class:`UnixAgent` at ``<socket_dir>/dsd.socket``, stopped after the test."""
    made: list[UnixAgent] = []

    def make(**options: Any) -> UnixAgent:
        agent = UnixAgent(socket_dir / "dsd.socket", **options).start()
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.stop()


def unix_receiver_at(path: Path) -> DogStatsdReceiver:
    """A strict receiver bound to ``path`` (the agent coming back at its usual address)."""
    return DogStatsdReceiver(socket_path=str(path))


def summary_counts(result: CliResult) -> dict[str, int]:
    """The integer counters of a run's summary line."""
    summary = result.summary
    return {key: int(summary[key]) for key in SUMMARY_KEYS}


def env_for(receiver_url: str, endpoint: str | None = None, **extra: str) -> dict[str, str]:
    """Environment of a drain: its agent, optionally another AWS endpoint (the proxy), and more."""
    env = {"DD_DOGSTATSD_URL": receiver_url, **extra}
    if endpoint is not None:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env


def elapsed_since(started: float) -> float:
    """Seconds since ``started`` (a ``time.monotonic()`` reading), rounded for reports."""
    return round(time.monotonic() - started, 1)
