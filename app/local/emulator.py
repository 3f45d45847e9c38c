"""The embedded AWS emulator: moto's server on a free loopback port, reached over HTTP only.

Nothing else in the code knows it is not AWS: callers get an endpoint URL and dummy credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import boto3


def emulator_session() -> boto3.Session:
    """A boto3 session with the dummy credentials every emulator accepts."""
    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


@contextmanager
def moto_server(host: str = "127.0.0.1") -> Iterator[str]:
    """Run moto's server in a thread for the duration of the block; yield its endpoint URL."""
    from moto.server import ThreadedMotoServer  # a dev/demo dependency, imported only here

    # werkzeug logs every request at INFO; the demo and tests only care about failures.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    try:
        bound_host, port = server.get_host_and_port()
        yield f"http://{bound_host}:{port}"
    finally:
        server.stop()
