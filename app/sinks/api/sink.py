"""ApiSink: hands parcels to the Datadog HTTP API and reports only what the intake acknowledged.

A parcel (one SQS message's metrics) counts as delivered when every request carrying its data was
answered 2xx. What the answers mean:

- 2xx: accepted.
- 408, 429, 5xx, timeouts, refused connections: retried within the call (see :mod:`.retry`); when
  the retries run out, :class:`~app.errors.IntakeUnavailableError` keeps the whole batch.
- 413: the request is halved and both halves are sent again.
- 400 (or 422): a payload this program built wrongly. Each parcel in the request is sent again on
  its own; those the intake still refuses are returned with its reason, to be dead-lettered.
- 401, 403, 404: the key, the site or the URL is wrong: :class:`~app.errors.ConfigurationError`.

The API key travels only in the ``DD-API-KEY`` header and is masked in every text this module
produces.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from app.core.catalog import health_metric
from app.core.metrics import Health, health_metrics
from app.errors import CloudJobMetricsError, ConfigurationError, IntakeUnavailableError
from app.settings import Secret
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
REFUSED_STATUSES = frozenset({400, 422})
CONFIGURATION_STATUSES = frozenset({401, 403, 404})
MASK = "********"


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
    ) -> None:
        self.transport = transport
        self.host = host
        self.base_url = base_url
        self.policy = policy or RetryPolicy()
        self.clock = clock
        self._api_key = api_key

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
        for item in work.events:
            if item.key not in refused:
                self._post_chunk(
                    EVENTS_PATH,
                    [item],
                    lambda chunk: event_body(chunk[0].event, host=self.host, now=now),
                    refused,
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
        request = Request("GET", VALIDATE_PATH, {"DD-API-KEY": self._api_key.reveal()})
        try:
            answer = send_with_retries(self.transport, request, self.policy)
        except IntakeUnavailableError as exc:
            raise IntakeUnavailableError(
                self._mask(f"the Datadog intake at {self.base_url} is not reachable: {exc}")
            ) from None
        if answer.status in CONFIGURATION_STATUSES:
            return self._configuration_problem(answer)
        if answer.status != 200:
            return self._mask(
                f"{self.base_url}{VALIDATE_PATH} answered HTTP {answer.status}: {answer.text()}"
            )
        try:
            valid = json.loads(answer.body).get("valid") is True
        except (ValueError, AttributeError):
            valid = False
        return None if valid else self._mask(f"{self.base_url}{VALIDATE_PATH} did not confirm the key")

    def close(self) -> None:
        """Release the transport's connections."""
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
        if answer.status in CONFIGURATION_STATUSES:
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
        reason = self._mask(f"{path} answered HTTP {answer.status}: {answer.text()}")
        log.warning("intake.parcel_refused key=%s reason=%s", keys[0], reason)
        refused[keys[0]] = reason

    def _send(self, path: str, body: bytes, policy: RetryPolicy) -> Response:
        request = Request(
            "POST",
            path,
            {
                "DD-API-KEY": self._api_key.reveal(),
                "Content-Type": "application/json",
                "Content-Encoding": "deflate",
            },
            compress(body),
        )
        try:
            return send_with_retries(self.transport, request, policy)
        except IntakeUnavailableError as exc:
            raise IntakeUnavailableError(self._mask(str(exc))) from None

    def _configuration_problem(self, answer: Response) -> str:
        if answer.status == 404:
            return (
                f"the Datadog intake at {self.base_url} has no such endpoint (404): "
                "check DD_SITE or DD_DD_URL"
            )
        return self._mask(
            f"the Datadog intake at {self.base_url} refused the API key (HTTP {answer.status}): "
            "check DD_API_KEY and DD_SITE"
        )

    def _mask(self, text: str) -> str:
        key = self._api_key.reveal()
        return text.replace(key, MASK) if key else text
