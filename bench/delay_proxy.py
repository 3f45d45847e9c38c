"""A loopback HTTP proxy in front of the emulator: a fixed delay per AWS call, and a count of each.

``python -m bench.delay_proxy --upstream http://127.0.0.1:4566 --delay-ms 20 --port-file F`` listens
on a free loopback port (written to F) and forwards every request on a keep-alive connection of its
own to the upstream, after sleeping the delay: one modelled network round trip per request,
whatever the client (a console script in another process included). It speaks just enough
HTTP/1.1 for botocore and the emulator: Content-Length request bodies; Content-Length, chunked or
close-delimited responses.

It also observes what it forwards: requests per operation (``sqs:ReceiveMessage``, ``s3:GET`` …,
told apart the way botocore marks them: ``X-Amz-Target: AmazonSQS.<Operation>`` for SQS's JSON
protocol, the method for S3) and, for every DeleteMessage(Batch) answered, when (CLOCK_MONOTONIC,
shared by every process on the machine) and for how many entries. ``GET /_bench/stats`` returns
that as JSON and ``POST /_bench/reset`` clears it; those two paths never reach the upstream.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CONTROL_PREFIX = b"/_bench/"


class Stats:
    """What the proxy has forwarded since the last reset."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.deletes: list[tuple[float, int]] = []  # (monotonic time answered, entries)
        self.first_request_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": dict(sorted(self.requests.items())),
            "deletes": self.deletes,
            "first_request_at": self.first_request_at,
        }


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(b"\r\n")[1:]:
        if b":" in line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return headers


def operation_of(headers: dict[str, str], method: str) -> str:
    target = headers.get("x-amz-target", "")
    if target.startswith("AmazonSQS."):
        return "sqs:" + target.removeprefix("AmazonSQS.")
    return f"s3:{method}"


def _delete_entries(operation: str, body: bytes) -> int:
    if operation == "sqs:DeleteMessage":
        return 1
    try:
        return len(json.loads(body).get("Entries", []))
    except ValueError:
        return 0


class Proxy:
    def __init__(self, upstream: str, delay_seconds: float) -> None:
        parts = urlsplit(upstream)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.delay_seconds = delay_seconds
        self.stats = Stats()

    async def serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                method, path = head.split(b" ", 2)[:2]
                headers = _headers(head)
                if "chunked" in headers.get("transfer-encoding", ""):
                    raise ValueError("chunked request bodies are not supported")
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                if path.startswith(CONTROL_PREFIX):
                    self._control(path, writer)
                    await writer.drain()
                    continue
                operation = operation_of(headers, method.decode())
                now = time.monotonic()
                if self.stats.first_request_at is None:
                    self.stats.first_request_at = now
                self.stats.requests[operation] += 1
                if self.delay_seconds > 0:
                    await asyncio.sleep(self.delay_seconds)
                upstream, response_head = await self._send(upstream, head + body)
                up_reader, up_writer = upstream
                keep = await self._relay_response(
                    response_head, up_reader, writer, head_only=method == b"HEAD"
                )
                if operation in ("sqs:DeleteMessageBatch", "sqs:DeleteMessage"):
                    self.stats.deletes.append((time.monotonic(), _delete_entries(operation, body)))
                if not keep:
                    up_writer.close()
                    upstream = None
                if headers.get("connection", "").lower() == "close":
                    return
        finally:
            if upstream is not None:
                upstream[1].close()
            with contextlib.suppress(ConnectionError):
                writer.close()

    async def _send(
        self, upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, request: bytes
    ) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], bytes]:
        """Send ``request`` upstream; return the connection used and the response's head."""
        for attempt in (1, 2):
            if upstream is None:
                upstream = await asyncio.open_connection(self.host, self.port)
            up_reader, up_writer = upstream
            try:
                up_writer.write(request)
                await up_writer.drain()
                return upstream, await up_reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                # The upstream closed an idle keep-alive connection: resend once on a new one.
                up_writer.close()
                upstream = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _relay_response(
        self, head: bytes, up: asyncio.StreamReader, writer: asyncio.StreamWriter, *, head_only: bool
    ) -> bool:
        """Copy one response to the client; return whether the upstream connection stays usable."""
        status = int(head.split(b" ", 2)[1])
        headers = _headers(head)
        writer.write(head)
        keep = headers.get("connection", "").lower() != "close"
        if head_only or status in (204, 304) or 100 <= status < 200:
            pass
        elif "content-length" in headers:
            writer.write(await up.readexactly(int(headers["content-length"])))
        elif "chunked" in headers.get("transfer-encoding", ""):
            while True:
                size_line = await up.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                writer.write(size_line)
                writer.write(await up.readexactly(size + 2))
                if size == 0:
                    break
        else:
            writer.write(await up.read())
            keep = False
        await writer.drain()
        return keep

    def _control(self, path: bytes, writer: asyncio.StreamWriter) -> None:
        if path.startswith(CONTROL_PREFIX + b"reset"):
            self.stats = Stats()
            payload = b"{}"
        else:
            payload = json.dumps(self.stats.as_json()).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )


async def serve(upstream: str, delay_ms: float, port_file: Path) -> None:
    proxy = Proxy(upstream, delay_ms / 1000.0)
    server = await asyncio.start_server(proxy.serve_client, "127.0.0.1", 0, backlog=512)
    port = server.sockets[0].getsockname()[1]
    temporary = port_file.with_suffix(".tmp")
    temporary.write_text(str(port))
    temporary.rename(port_file)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.upstream, args.delay_ms, args.port_file))


if __name__ == "__main__":
    main()
