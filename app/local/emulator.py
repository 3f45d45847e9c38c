"""The embedded AWS emulator: moto's server on a free loopback port, reached over HTTP only.

Nothing else in the code knows it is not AWS: callers get an endpoint URL, and
:func:`emulator_session` gives boto3 the dummy credentials every emulator accepts.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3

# SQS operations that read and rewrite a queue's message list. moto runs them unguarded on the
# server's request threads, so concurrent consumers can both receive one message, and a delete
# racing a send can drop the sent message. SQS does neither; serialising these makes the
# emulator behave like the service the forwarder is written against.
_MUTATING_SQS_OPERATIONS = (
    "send_message",
    "send_message_batch",
    "delete_message",
    "delete_message_batch",
    "change_message_visibility",
    "change_message_visibility_batch",
    "purge_queue",
)


def emulator_session() -> boto3.Session:
    """A boto3 session with the dummy credentials every emulator accepts."""
    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


def _serialised(method: Callable[..., Any], lock: threading.RLock) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    return call


def _atomic_receive(method: Callable[..., Any], lock: threading.RLock) -> Callable[..., Any]:
    """Scan the queue under the lock, but wait out a long poll outside it."""

    @functools.wraps(method)
    def receive(
        backend: Any, queue_name: str, count: int, wait_seconds_timeout: int, *args: Any, **kwargs: Any
    ) -> Any:
        deadline = time.monotonic() + (wait_seconds_timeout or 0)
        while True:
            with lock:
                found = method(backend, queue_name, count, 0, *args, **kwargs)
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            backend.get_queue(queue_name).wait_for_messages(min(1.0, remaining))
            time.sleep(0.005)  # a visible message this scan skipped must not make the wait spin

    return receive


@functools.cache
def _make_moto_sqs_atomic() -> None:
    from moto.sqs.models import SQSBackend

    lock = threading.RLock()
    for name in _MUTATING_SQS_OPERATIONS:
        setattr(SQSBackend, name, _serialised(getattr(SQSBackend, name), lock))
    SQSBackend.receive_message = _atomic_receive(SQSBackend.receive_message, lock)  # type: ignore[method-assign]


@contextmanager
def moto_server(host: str = "127.0.0.1", *, enforce_iam_after: int | None = None) -> Iterator[str]:
    """Run moto's server in a thread for the duration of the block; yield its endpoint URL.

    ``enforce_iam_after``: answer the first that many AWS requests without authentication (enough
    to create an IAM user and its key), then check every request's signature and IAM policy.
    moto keeps this setting per process, so use it only in a process of its own (see :func:`main`).
    """
    from moto.server import ThreadedMotoServer  # a dev/demo dependency, imported only here

    if enforce_iam_after is not None:
        from moto import settings

        settings.INITIAL_NO_AUTH_ACTION_COUNT = enforce_iam_after
    _make_moto_sqs_atomic()
    # werkzeug logs every request at INFO; the demo and tests only care about failures.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    try:
        bound_host, port = server.get_host_and_port()
        yield f"http://{bound_host}:{port}"
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m app.local.emulator [--enforce-iam-after N]``: serve until stdin closes.

    Prints the endpoint URL as the first line of stdout, so a parent process can read it.
    """
    parser = argparse.ArgumentParser(prog="python -m app.local.emulator", description=main.__doc__)
    parser.add_argument("--enforce-iam-after", type=int, default=None, help="unauthenticated requests first")
    args = parser.parse_args(argv)
    with moto_server(enforce_iam_after=args.enforce_iam_after) as endpoint:
        print(endpoint, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
