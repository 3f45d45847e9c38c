"""ApiSink: hands parcels to the Datadog HTTP API and reports only what the intake acknowledged.

A parcel (one SQS message's metrics) counts as delivered when every request carrying its data was
answered 2xx. What the answers mean:

- 2xx: accepted.
- 408, 429, 5xx, timeouts, refused connections: retried within the call (see :mod:`.retry`); when
  the retries run out, :class:`~app.errors.IntakeUnavailableError` keeps the whole batch.
- 413: the request is halved and both halves are sent again; a single item still too large is
  refused data, like a 400.
- 400 (or 422): a payload this program built wrongly. Each parcel in the request is sent again on
  its own; those the intake still refuses are returned with its reason, to be dead-lettered.
  These are the only answers that dead-letter anything.
- 401, 403: the key is refused. A key read from Secrets Manager is read again once (it may have
  been rotated) and the request resent; otherwise :class:`~app.errors.ConfigurationError`.
- Every other answer (404, 405, 410, another 4xx, a 3xx: redirects are not followed) means the
  site, the URL or a proxy in front of the intake is wrong, not the data:
  :class:`~app.errors.ConfigurationError`, the run stops and nothing is deleted.

Events go one per request (``/api/v1/events`` takes no batch), concurrently on a small pool, at
most :data:`~app.sinks.api.events.MAX_EVENTS_PER_OBJECT` per object (see :mod:`.events`).

The API key travels only in the ``DD-API-KEY`` header and is masked in every text this module
produces.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from app.core.catalog import health_metric
from app.core.metrics import Health, health_metrics
from app.errors import CloudJobMetricsError, ConfigurationError, IntakeUnavailableError
from app.settings import Secret
from app.sinks.api.events import bounded_events
from app.sinks.api.payload import (
    DISTRIBUTION_PATH,
    EVENTS_PATH,
    SERIES_PATH,
    VALIDATE_PATH,
    DistributionValue,
    EventItem,
    SeriesPoint,
    compress,
    distribution_body,
    estimate_distribution,
    estimate_series,
    event_body,
    pack,
    pieces,
    series_body,
)
from app.sinks.api.retry import RetryPolicy, send_with_retries
from app.sinks.api.transport import Request, Response, Transport
from app.sinks.base import Parcel

log = logging.getLogger(__name__)

P = TypeVar("P", SeriesPoint, DistributionValue, EventItem)
# The answers that mean "this payload is bad" (with a 413 for a single item): only these
# dead-letter data. Every other answer that is neither 2xx nor transient is a configuration error.
REFUSED_STATUSES = frozenset({400, 422})
KEY_REFUSED_STATUSES = frozenset({401, 403})
MASK = "********"
# Event requests in flight at once, per sink.
EVENT_WORKERS = 8


class ApiSink:
    """The Datadog HTTP API behind the sink interface; the transport is injected."""

    def __init__(
        self,
        *,
        transport: Transport,
        api_key: Secret,
        host: str | None,
        base_url: str,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        reload_key: Callable[[], Secret] | None = None,
    ) -> None:
        self.transport = transport
        self.host = host
        self.base_url = base_url
        self.policy = policy or RetryPolicy()
        self.clock = clock
        self._api_key = api_key
        # Every key this sink has held, so that none of them shows in a text after a rotation.
        self._keys = [api_key]
        self._reload_key = reload_key
        self._reloaded_for: Secret | None = None
        self._key_lock = threading.Lock()
        self._events_pool: ThreadPoolExecutor | None = None
        self._events_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ApiSink(base_url={self.base_url!r}, host={self.host!r})"

    def submit(self, parcels: Sequence[Parcel]) -> Mapping[str, str]:
        """Deliver every parcel; return ``{parcel key: the intake's reason}`` for refused ones."""
        now = int(self.clock())
        work = pieces(parcels, now=now)
        refused: dict[str, str] = {}
        self._deliver(SERIES_PATH, list(work.series), self._render_series, estimate_series, refused)
        self._deliver(
            DISTRIBUTION_PATH,
            [v for v in work.distributions if v.key not in refused],
            lambda chunk: distribution_body(chunk, host=self.host),
            estimate_distribution,
            refused,
        )
        self._deliver_events(
            [item for item in bounded_events(work.events) if item.key not in refused], now, refused
        )
        return refused

    def record_health(self, health: Health) -> None:
        """Send the forwarder's own health; best effort, one attempt per request, never raises."""
        now = int(self.clock())
        metrics = health_metrics(health)
        requests: list[tuple[str, bytes]] = []
        if metrics.distributions:
            values = [DistributionValue("", d.name, d.value, d.tags, now) for d in metrics.distributions]
            requests.append((DISTRIBUTION_PATH, distribution_body(values, host=self.host)))
        if metrics.lag_seconds is not None:
            lag = SeriesPoint("", health_metric("lag_seconds"), metrics.lag_seconds, (), now)
            requests.append((SERIES_PATH, self._render_series([lag])))
        for path, body in requests:
            try:
                answer = self._send(path, body, RetryPolicy(attempts=1))
                if not 200 <= answer.status < 300:
                    log.debug("self_metrics.refused path=%s status=%d", path, answer.status)
            except CloudJobMetricsError as exc:
                log.debug("self_metrics.failed error=%s", exc)

    def probe(self) -> str | None:
        """None if the intake accepts the key (``GET /api/v1/validate``), else one line why not.

        An intake that cannot be reached at all is an outage rather than a mistake: that raises
        :class:`~app.errors.IntakeUnavailableError`, so a drain exits 1 with every message kept.
        """
        try:
            answer = self._exchange("GET", VALIDATE_PATH, b"", {}, self.policy)
        except IntakeUnavailableError as exc:
            raise IntakeUnavailableError(
                self._mask(f"the Datadog intake at {self.base_url} is not reachable: {exc}")
            ) from None
        if answer.status != 200:
            return self._configuration_problem(answer)
        try:
            valid = json.loads(answer.body).get("valid") is True
        except (ValueError, AttributeError):
            valid = False
        return None if valid else self._mask(f"{self.base_url}{VALIDATE_PATH} did not confirm the key")

    def close(self) -> None:
        """Stop the event senders and release the transport's connections."""
        with self._events_lock:
            pool, self._events_pool = self._events_pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self.transport.close()

    def _render_series(self, chunk: Sequence[SeriesPoint]) -> bytes:
        return series_body(chunk, host=self.host)

    def _deliver(
        self,
        path: str,
        items: list[P],
        render: Callable[[Sequence[P]], bytes],
        estimate: Callable[[P], int],
        refused: dict[str, str],
    ) -> None:
        if not items:
            return
        for chunk, _body, _compressed in pack(items, render, estimate=estimate):
            live = [item for item in chunk if item.key not in refused]
            if live:
                self._post_chunk(path, live, render, refused)

    def _post_chunk(
        self, path: str, chunk: list[P], render: Callable[[Sequence[P]], bytes], refused: dict[str, str]
    ) -> None:
        answer = self._send(path, render(chunk), self.policy)
        if 200 <= answer.status < 300:
            return
        if answer.status not in REFUSED_STATUSES and answer.status != 413:
            # Not an answer about the data: resending or dead-lettering cannot help.
            raise ConfigurationError(self._configuration_problem(answer))
        keys = list(dict.fromkeys(item.key for item in chunk))
        if answer.status == 413 and len(chunk) > 1:
            middle = len(chunk) // 2
            log.info("intake.too_large path=%s items=%d: splitting", path, len(chunk))
            for half in (chunk[:middle], chunk[middle:]):
                live = [item for item in half if item.key not in refused]
                if live:
                    self._post_chunk(path, live, render, refused)
            return
        if len(keys) > 1:
            # Find the culprit: each parcel's share of this request, alone.
            log.warning(
                "intake.refused path=%s status=%d parcels=%d: isolating", path, answer.status, len(keys)
            )
            for key in keys:
                if key not in refused:
                    self._post_chunk(path, [item for item in chunk if item.key == key], render, refused)
            return
        reason = f"{path} answered HTTP {answer.status}: {self._body(answer)}"
        log.warning("intake.parcel_refused key=%s reason=%s", keys[0], reason)
        refused[keys[0]] = reason

    def _deliver_events(self, items: list[EventItem], now: int, refused: dict[str, str]) -> None:
        """Post each event on its own, up to :data:`EVENT_WORKERS` at once; the first error is raised.

        A refused event refuses its parcel as a 400 on any other path does; a parcel already
        refused sends no further event.
        """

        def render(chunk: Sequence[EventItem]) -> bytes:
            return event_body(chunk[0].event, host=self.host, now=now)

        def post(item: EventItem) -> None:
            if item.key not in refused:
                self._post_chunk(EVENTS_PATH, [item], render, refused)

        if len(items) <= 1:
            for item in items:
                post(item)
            return
        futures = [self._event_senders().submit(post, item) for item in items]
        failure: BaseException | None = None
        for future in futures:
            if failure is not None:
                future.cancel()
                continue
            error = future.exception()
            if error is not None:
                failure = error
        for future in futures:
            # Nothing of this call is left running when it returns or raises.
            if not future.cancelled():
                future.exception()
        if failure is not None:
            raise failure

    def _event_senders(self) -> ThreadPoolExecutor:
        with self._events_lock:
            if self._events_pool is None:
                self._events_pool = ThreadPoolExecutor(EVENT_WORKERS, thread_name_prefix="events")
            return self._events_pool

    def _send(self, path: str, body: bytes, policy: RetryPolicy) -> Response:
        headers = {"Content-Type": "application/json", "Content-Encoding": "deflate"}
        try:
            return self._exchange("POST", path, compress(body), headers, policy)
        except IntakeUnavailableError as exc:
            raise IntakeUnavailableError(self._mask(str(exc))) from None

    def _exchange(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str], policy: RetryPolicy
    ) -> Response:
        """Send with the current key; after a 401/403, once more if the key could be read anew."""
        key = self._api_key
        answer = self._attempt(method, path, body, headers, policy, key)
        if answer.status in KEY_REFUSED_STATUSES and self._fresh_key(key):
            answer = self._attempt(method, path, body, headers, policy, self._api_key)
        return answer

    def _attempt(
        self,
        method: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        policy: RetryPolicy,
        key: Secret,
    ) -> Response:
        request = Request(method, path, {"DD-API-KEY": key.reveal(), **headers}, body)
        return send_with_retries(self.transport, request, policy)

    def _fresh_key(self, refused: Secret) -> bool:
        """After ``refused`` was refused: True when another key is now in use (read at most once per key)."""
        if self._reload_key is None:
            return False
        with self._key_lock:
            if self._api_key != refused:
                return True  # another request already read the new one
            if self._reloaded_for == refused:
                return False  # read once already, and it was this same key
            self._reloaded_for = refused
            fresh = self._reload_key()
            if fresh == refused:
                log.warning("intake.key_refused: the secret still holds the refused key")
                return False
            log.warning("intake.key_rotated: the intake refused the key; using the one read anew")
            self._keys.append(fresh)
            self._api_key = fresh
            return True

    def _configuration_problem(self, answer: Response) -> str:
        status = answer.status
        if status in KEY_REFUSED_STATUSES:
            return self._mask(
                f"the Datadog intake at {self.base_url} refused the API key (HTTP {status}): "
                "check DD_API_KEY and DD_SITE"
            )
        if status == 404:
            return (
                f"the Datadog intake at {self.base_url} has no such endpoint (404): "
                "check DD_SITE or DD_DD_URL"
            )
        if 300 <= status < 400:
            # The Location is not quoted: it is the intake's (or a proxy's) text, not ours.
            return (
                f"the Datadog intake at {self.base_url} answered with a redirect (HTTP {status}), "
                "which is not followed: check DD_SITE or DD_DD_URL"
            )
        return (
            f"the Datadog intake at {self.base_url} answered HTTP {status}, which is not an answer "
            f"about the data ({self._body(answer, 120)}): check DD_SITE, DD_DD_URL and any proxy"
        )

    def _body(self, answer: Response, limit: int = 300) -> str:
        """The answer's body as one short line, every key masked before it is cut."""
        return answer.text(limit, hide=[key.reveal() for key in self._keys])

    def _mask(self, text: str) -> str:
        for key in self._keys:
            if key.reveal():
                text = text.replace(key.reveal(), MASK)
        return text
