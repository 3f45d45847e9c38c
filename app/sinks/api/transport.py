"""The one seam between the API sink and the network: a request in, a response or an error out.

Tests hand the sink another :class:`Transport` (or point this one at the local intake) instead of
patching. All durations are seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import urllib3

from app.errors import ConfigurationError, IntakeUnavailableError

CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 20.0
MASK = "********"
# Headers whose values are credentials: never in an error, a log line or a dead-letter reason.
SECRET_HEADERS = frozenset({"dd-api-key", "dd-application-key", "authorization", "proxy-authorization"})


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request to the intake; ``path`` is relative to the base URL."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Response:
    """The intake's answer; header names are lower-case."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def text(self, limit: int = 300, *, hide: Iterable[str] = ()) -> str:
        """The body as one short line, for logs and dead-letter reasons.

        Every value in ``hide`` is masked in the whole body before it is cut to ``limit``
        characters, so no cut can leave half a key behind.
        """
        text = self.body.decode("utf-8", "replace")
        for value in hide:
            if value:
                text = text.replace(value, MASK)
        return " ".join(text[:limit].split())


def secret_values(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The values of the secret headers among ``headers``."""
    return tuple(value for name, value in headers.items() if value and name.lower() in SECRET_HEADERS)


def masked(text: str, headers: Mapping[str, str]) -> str:
    """``text`` with the value of every secret header of ``headers`` replaced by ``********``.

    An intake or a proxy may echo the request's headers in its answer; an error may quote them.
    """
    for value in secret_values(headers):
        text = text.replace(value, MASK)
    return text


class Transport(Protocol):
    """Sends a request; raises :class:`~app.errors.IntakeUnavailableError` when nothing came back."""

    def send(self, request: Request) -> Response:
        """Send ``request`` and return the answer, whatever its status."""

    def close(self) -> None:
        """Release the connections."""


class Urllib3Transport:
    """Keep-alive connections to ``base_url`` through urllib3 (already installed with botocore).

    urllib3 retries nothing here: the sink's retry loop decides, so that every attempt is counted
    and ``Retry-After`` is honoured.
    """

    def __init__(self, base_url: str, *, pool_size: int = 8, pool: urllib3.PoolManager | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.pool = pool or urllib3.PoolManager(
            num_pools=2,
            maxsize=pool_size,
            retries=False,
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS),
        )

    def send(self, request: Request) -> Response:
        """POST/GET ``request``; connection errors and timeouts become ``IntakeUnavailableError``.

        No foreign exception leaves this method, and none is chained to the error raised instead:
        http.client quotes a header value it refuses (``Invalid header value b'<the key>'``), and a
        chained traceback in a Lambda log would carry it.
        """
        url = f"{self.base_url}{request.path}"
        try:
            answer = self.pool.request(
                request.method,
                url,
                body=request.body or None,
                headers=dict(request.headers),
                redirect=False,
                preload_content=True,
            )
        except urllib3.exceptions.HTTPError as exc:
            # The exception text names the URL (never the key, which travels in a header).
            raise IntakeUnavailableError(f"{request.method} {url}: {type(exc).__name__}") from None
        except (ValueError, TypeError, UnicodeError) as exc:
            # The request cannot be sent at all (a header or URL http.client refuses): sending it
            # again cannot help.
            raise ConfigurationError(
                f"{request.method} {url} cannot be sent ({type(exc).__name__}: a header or the URL is "
                "malformed): check DD_API_KEY and DD_DD_URL"
            ) from None
        except OSError as exc:
            raise IntakeUnavailableError(f"{request.method} {url}: {type(exc).__name__}") from None
        headers = {name.lower(): value for name, value in answer.headers.items()}
        return Response(answer.status, headers, answer.data or b"")

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.clear()
