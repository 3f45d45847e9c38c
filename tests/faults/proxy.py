"""A fault-injecting HTTP proxy between the forwarder and the AWS emulator (loopback only).

Every request is forwarded to the upstream endpoint, except that, on a seeded random fraction of
them, the proxy answers the way an unhealthy AWS does instead:

- ``throttle``: SQS answers HTTP 400 in its JSON protocol with ``__type``
  ``com.amazonaws.sqs#RequestThrottled`` (or the generic ``ThrottlingException``) and the
  ``x-amzn-query-error`` header botocore reads for query-compatible services; S3 answers 503
  ``<Error><Code>SlowDown</Code>`` in REST-XML;
- ``internal-error`` (500) and ``unavailable`` (503), each in the service's own error format;
- ``drop``: the connection is closed without an answer before the request reaches the emulator;
- ``lost-response``: the request *is* applied by the emulator, then the connection is closed, so
  the client never learns that its receive, delete or send happened.

The requests are told apart by botocore's own markers: SQS speaks JSON 1.0 with an
``X-Amz-Target: AmazonSQS.<Operation>`` header; everything else is S3's REST-XML.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterable
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

UPSTREAM_TIMEOUT_SECONDS = 60
# Idle keep-alive connections from the client are closed after this long.
CLIENT_IDLE_TIMEOUT_SECONDS = 60
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


class Fault(StrEnum):
    """What the proxy can do instead of forwarding a request faithfully."""

    THROTTLE = "throttle"
    INTERNAL_ERROR = "internal-error"
    UNAVAILABLE = "unavailable"
    DROP = "drop"
    LOST_RESPONSE = "lost-response"


ALL_FAULTS: tuple[Fault, ...] = tuple(Fault)


def operation_of(headers: Any, method: str, path: str) -> str:
    """Name the AWS operation of a request: ``sqs:ReceiveMessage``, or ``s3:GET`` and the like."""
    target = headers.get("X-Amz-Target") or ""
    if target.startswith("AmazonSQS."):
        return "sqs:" + target.removeprefix("AmazonSQS.")
    return f"s3:{method}"


def _sqs_error(
    status: int, code: str, message: str, *, query_code: str | None
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": str(uuid.uuid4())}
    if query_code:
        headers["x-amzn-query-error"] = f"{query_code};{'Sender' if status < 500 else 'Receiver'}"
    body = json.dumps({"__type": code, "message": message}).encode()
    return status, headers, body


def _s3_error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    request_id = uuid.uuid4().hex[:16].upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{request_id}</RequestId></Error>"
    ).encode()
    return status, {"Content-Type": "application/xml", "x-amz-request-id": request_id}, body


# (status, code, message) per fault; SQS codes also travel in ``x-amzn-query-error``.
_SQS_ERRORS = {
    Fault.INTERNAL_ERROR: (500, "InternalError", "Internal failure"),
    Fault.UNAVAILABLE: (503, "ServiceUnavailable", "Service is unavailable"),
}
_S3_ERRORS = {
    Fault.THROTTLE: (503, "SlowDown", "Please reduce your request rate."),
    Fault.INTERNAL_ERROR: (500, "InternalError", "We encountered an internal error. Please try again."),
    Fault.UNAVAILABLE: (503, "ServiceUnavailable", "Service is unable to handle request."),
}


def error_response(fault: Fault, operation: str, rng: random.Random) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body AWS would answer with for ``fault`` on ``operation``."""
    if fault in (Fault.DROP, Fault.LOST_RESPONSE):
        raise ValueError(f"{fault} is not answered with an error response")
    if not operation.startswith("sqs:"):
        return _s3_error(*_S3_ERRORS[fault])
    if fault is Fault.THROTTLE:
        # Both forms exist: the query-compatible code, and the generic JSON-protocol one.
        if rng.random() < 0.5:
            return _sqs_error(
                400, "com.amazonaws.sqs#RequestThrottled", "Rate exceeded", query_code="RequestThrottled"
            )
        return _sqs_error(400, "ThrottlingException", "Rate exceeded", query_code=None)
    status, code, message = _SQS_ERRORS[fault]
    return _sqs_error(status, f"com.amazonaws.sqs#{code}", message, query_code=code)


class FaultInjectingProxy:
    """A threaded HTTP proxy to ``upstream`` that injects faults into a seeded fraction of calls.

    ``rate`` is the probability (0..1) that a request gets a fault, drawn from ``faults``;
    ``operations``, when given, limits the faults to those operations (``sqs:GetQueueAttributes``).
    ``injected`` counts what was done per ``(operation, fault)``; ``requests`` counts every call.
    """

    def __init__(
        self,
        upstream: str,
        *,
        rate: float,
        seed: int,
        faults: Iterable[Fault] = ALL_FAULTS,
        operations: Iterable[str] | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.hostname not in {"127.0.0.1", "localhost"} or parts.port is None:
            raise ValueError(f"the proxy forwards to loopback only, not {upstream!r}")
        self.upstream_host: str = parts.hostname
        self.upstream_port: int = parts.port
        self.rate = rate
        self.faults = tuple(faults)
        self.operations = frozenset(operations) if operations is not None else None
        self.injected: Counter[tuple[str, Fault]] = Counter()
        self.requests: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        """The endpoint URL to hand to the forwarder (``AWS_ENDPOINT_URL``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def total_injected(self) -> int:
        """Faults injected so far, of every kind."""
        with self._lock:
            return sum(self.injected.values())

    def by_fault(self) -> dict[str, int]:
        """Faults injected so far, per kind."""
        totals: Counter[str] = Counter()
        with self._lock:
            for (_, fault), count in self.injected.items():
                totals[fault.value] += count
        return dict(sorted(totals.items()))

    def by_operation(self) -> dict[str, int]:
        """Faults injected so far, per operation."""
        totals: Counter[str] = Counter()
        with self._lock:
            for (operation, _), count in self.injected.items():
                totals[operation] += count
        return dict(sorted(totals.items()))

    def start(self) -> FaultInjectingProxy:
        """Start serving; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultInjectingProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def decide(self, operation: str) -> tuple[Fault | None, tuple[int, dict[str, str], bytes] | None]:
        """Draw the fate of one request: no fault, or a fault (with its error response, if any)."""
        with self._lock:
            self.requests[operation] += 1
            eligible = self.operations is None or operation in self.operations
            if not eligible or not self.faults or self._rng.random() >= self.rate:
                return None, None
            fault = self._rng.choice(self.faults)
            self.injected[(operation, fault)] += 1
            if fault in (Fault.DROP, Fault.LOST_RESPONSE):
                return fault, None
            return fault, error_response(fault, operation, self._rng)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        return Handler


class _ProxyHandler(BaseHTTPRequestHandler):
    """Forwards one client connection's requests; keeps one upstream connection per client one."""

    owner: FaultInjectingProxy
    protocol_version = "HTTP/1.1"
    timeout = CLIENT_IDLE_TIMEOUT_SECONDS
    _upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the tests count requests instead of logging them."""

    def do_GET(self) -> None:
        """Forward a GET (S3 GetObject, ListObjects …)."""
        self._proxy()

    def do_HEAD(self) -> None:
        """Forward a HEAD (S3 HeadObject, HeadBucket)."""
        self._proxy()

    def do_POST(self) -> None:
        """Forward a POST (every SQS call; S3 DeleteObjects)."""
        self._proxy()

    def do_PUT(self) -> None:
        """Forward a PUT (S3 PutObject and configuration calls)."""
        self._proxy()

    def do_DELETE(self) -> None:
        """Forward a DELETE (S3 DeleteObject, DeleteBucket)."""
        self._proxy()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _proxy(self) -> None:
        body = self._read_body()
        operation = operation_of(self.headers, self.command, self.path)
        fault, canned = self.owner.decide(operation)
        if fault is Fault.DROP:
            self._hang_up()
            return
        if canned is not None:
            self._answer(*canned)
            return
        try:
            status, headers, payload = self._forward(body)
        except (OSError, http.client.HTTPException):
            # The emulator itself failed us: the client sees a dropped connection.
            self._close_upstream()
            self._hang_up()
            return
        if fault is Fault.LOST_RESPONSE:
            self._hang_up()
            return
        self._answer(status, headers, payload)

    def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self._upstream is None:
            self._upstream = http.client.HTTPConnection(
                self.owner.upstream_host, self.owner.upstream_port, timeout=UPSTREAM_TIMEOUT_SECONDS
            )
        headers = {name: value for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        self._upstream.request(self.command, self.path, body=body, headers=headers)
        response = self._upstream.getresponse()
        payload = response.read()
        forwarded = {name: value for name, value in response.getheaders() if name.lower() not in _HOP_BY_HOP}
        if self.command == "HEAD" and response.getheader("Content-Length"):
            forwarded["Content-Length"] = response.getheader("Content-Length", "0")
        if response.will_close:
            self._close_upstream()
        return response.status, forwarded, payload

    def _answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response_only(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def _hang_up(self) -> None:
        """Close the client's connection without a word, as a failing load balancer does."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        self._close_upstream()

    def _close_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    def finish(self) -> None:
        """Release the upstream connection with the client's."""
        self._close_upstream()
        super().finish()
