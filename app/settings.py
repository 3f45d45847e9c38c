"""Settings: read once, frozen, with the precedence flags > environment > defaults decided here.

All durations are seconds; all sizes are bytes. Nothing in this module reads the environment at
import time: :func:`resolve` receives the flags and the environment as plain mappings.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from app.errors import ConfigurationError

DEFAULT_STATSD_HOST = "127.0.0.1"
DEFAULT_STATSD_PORT = 8125
DEFAULT_MAX_OBJECT_BYTES = 1024 * 1024
DEFAULT_MAX_JOBS_PER_OBJECT = 1000
# S3 puts one record in a notification; a producer's own bundles stay far below this. Over it, the
# message is rejected (too-many-records) unread: one message is settled as a whole, so a 256 KB body
# naming a thousand objects would make one verdict wait on a thousand reads.
DEFAULT_MAX_RECORDS_PER_MESSAGE = 100
# A scheduled drain every 5 minutes stops receiving after 4: the minute left covers settling what
# is in hand (a hand-off, deletes) and the next container's start, so two runs rarely overlap.
DEFAULT_MAX_RUNTIME_SECONDS = 240
DEFAULT_DD_SITE = "datadoghq.com"
SINKS = ("dogstatsd", "api")
DEFAULT_CONCURRENCY = 8
DEFAULT_FETCH_WORKERS = 64
DEFAULT_MAX_IN_FLIGHT_MESSAGES = 400

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StatsdTarget:
    """Where DogStatsD datagrams go: a UDP host and port, or a Unix datagram socket."""

    host: str = DEFAULT_STATSD_HOST
    port: int = DEFAULT_STATSD_PORT
    socket_path: str | None = None

    def describe(self) -> str:
        """Return the target as a URL, the form ``DD_DOGSTATSD_URL`` takes."""
        if self.socket_path:
            return f"unix://{self.socket_path}"
        return f"udp://{self.host}:{self.port}"


class Secret:
    """A value that must never be printed: its repr and str are masked, :meth:`reveal` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that sends it (the ``DD-API-KEY`` header)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# Datadog API keys are 32 hex digits; anything printable is accepted (a proxy may use its own
# keys), but never a space, a line break or a control character: http.client would refuse the
# header with the whole value in its error, and a secret stored pretty-printed has one inside.
_KEY_CHARACTERS = re.compile(r"[\x21-\x7e]+")


def api_key_problem(value: str) -> str | None:
    """Why ``value`` (already stripped) cannot be an API key, in words that never quote it; or None."""
    if not value:
        return "it is empty"
    if _KEY_CHARACTERS.fullmatch(value):
        return None
    if any(character in "\r\n" for character in value):
        return "it holds a line break (a secret stored pretty-printed?)"
    if any(character.isspace() for character in value):
        return "it holds whitespace"
    return "it holds a character outside printable ASCII"


def checked_api_key(value: str, *, source: str) -> Secret:
    """``value`` stripped, as a :class:`Secret`; a configuration error naming ``source`` if malformed."""
    stripped = value.strip()
    problem = api_key_problem(stripped)
    if problem is not None:
        raise ConfigurationError(f"{source} is not a usable Datadog API key: {problem}")
    return Secret(stripped)


@dataclass(frozen=True, slots=True)
class ApiTarget:
    """Where the HTTP API sink posts: ``https://api.<DD_SITE>`` unless ``DD_DD_URL`` overrides it.

    ``hostname`` (``DD_HOSTNAME``) is the series' host when set; by default series carry no host, so
    Lambda environments and scheduled containers (a new machine name each) share them. The
    key comes from ``DD_API_KEY`` or, read once at start-up, from the Secrets Manager secret
    ``DD_API_KEY_SECRET_ARN`` (which wins, as in the Datadog Forwarder).
    """

    site: str = DEFAULT_DD_SITE
    url: str | None = None
    api_key: Secret | None = None
    api_key_secret_arn: str | None = None
    hostname: str | None = None

    @property
    def base_url(self) -> str:
        """The intake's base URL, without a trailing slash."""
        return (self.url or f"https://api.{self.site}").rstrip("/")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the forwarder is configured with; build it with :func:`resolve`."""

    queue_url: str | None = None
    dead_letter_queue_url: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    statsd: StatsdTarget = field(default_factory=StatsdTarget)
    sink: str = "dogstatsd"
    api: ApiTarget = field(default_factory=ApiTarget)
    namespace: str = "cloud_job"
    constant_tags: tuple[str, ...] = ()
    allowed_buckets: frozenset[str] = frozenset()
    key_prefix: str = ""
    key_suffix: str = ""
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES
    max_jobs_per_object: int = DEFAULT_MAX_JOBS_PER_OBJECT
    max_records_per_message: int = DEFAULT_MAX_RECORDS_PER_MESSAGE
    # None: no deadline (``MAX_RUNTIME_SECONDS=0``); ``drain --follow`` ignores it.
    max_runtime_seconds: int | None = DEFAULT_MAX_RUNTIME_SECONDS
    include_fields: tuple[str, ...] = ()
    exclude_fields: tuple[str, ...] = ()
    concurrency: int = DEFAULT_CONCURRENCY
    fetch_workers: int = DEFAULT_FETCH_WORKERS
    max_in_flight_messages: int = DEFAULT_MAX_IN_FLIGHT_MESSAGES
    wait_time_seconds: int | None = None
    visibility_timeout_seconds: int | None = None
    max_backoff_seconds: int = 900
    self_metrics: bool = True
    distributions: bool | None = None

    def receive_wait_seconds(self, *, follow: bool) -> int:
        """Long-poll duration: 20 s when following (3 calls a minute idle), 1 s for a drain.

        A drain ends at its first empty long poll, so this is what deciding "empty" costs; 1 s is
        the shortest long poll SQS offers (0 is a short poll, which samples only some servers and
        can come back empty while messages are visible).
        """
        if self.wait_time_seconds is not None:
            return self.wait_time_seconds
        return 20 if follow else 1

    def connection_pool_size(self) -> int:
        """HTTP connections per client: every GET, receive and settling batch can be in flight at once."""
        return self.fetch_workers + self.concurrency + self.max_in_flight_messages // 10 + 4

    def with_changes(self, **changes: object) -> Settings:
        """Return a copy with ``changes`` applied (for tests and the demo)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _first(*values: T | None) -> T | None:
    for value in values:
        if value is not None and value != "":
            return value
    return None


def _as_int(name: str, raw: object, *, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(str(raw))
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigurationError(f"{name} must be {bound}, got {value}")
    return value


def _as_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _split_list(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def parse_statsd_url(url: str) -> StatsdTarget:
    """Parse ``udp://host:port`` or ``unix:///path`` (the ``DD_DOGSTATSD_URL`` forms)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        path = parts.path or parts.netloc
        if not path:
            raise ConfigurationError(f"DogStatsD URL {url!r} names no socket path")
        return StatsdTarget(socket_path=path)
    if parts.scheme == "udp":
        try:
            port = DEFAULT_STATSD_PORT if parts.port is None else parts.port
        except ValueError:
            raise ConfigurationError(f"DogStatsD URL {url!r} has an invalid port") from None
        if port == 0:
            raise ConfigurationError(f"DogStatsD URL {url!r} has port 0")
        return StatsdTarget(host=parts.hostname or DEFAULT_STATSD_HOST, port=port)
    raise ConfigurationError(f"DogStatsD URL {url!r} must start with udp:// or unix://")


def _resolve_statsd(flags: Mapping[str, object], env: Mapping[str, str]) -> StatsdTarget:
    # One rule, flags first: an explicit URL, then an explicit host/port, then the datadog
    # conventions (DD_DOGSTATSD_URL over DD_AGENT_HOST/DD_DOGSTATSD_PORT), then the original
    # STATSD_HOST/STATSD_PORT, then the agent's default address.
    url = flags.get("dogstatsd_url")
    if isinstance(url, str) and url:
        return parse_statsd_url(url)
    flag_host, flag_port = flags.get("statsd_host"), flags.get("statsd_port")
    if flag_host is None and flag_port is None and env.get("DD_DOGSTATSD_URL"):
        return parse_statsd_url(env["DD_DOGSTATSD_URL"])
    host = _first(
        flag_host if isinstance(flag_host, str) else None,
        env.get("DD_AGENT_HOST"),
        env.get("STATSD_HOST"),
    )
    port_raw = _first(flag_port, env.get("DD_DOGSTATSD_PORT"), env.get("STATSD_PORT"))
    port = (
        DEFAULT_STATSD_PORT
        if port_raw is None
        else _as_int("the DogStatsD port", port_raw, minimum=1, maximum=65535)
    )
    return StatsdTarget(host=host or DEFAULT_STATSD_HOST, port=port)


# A DNS name: dot-separated labels of letters, digits and inner hyphens (RFC 1123), so nothing
# after it can change where the request goes (``datadoghq.com@127.0.0.1`` connects to 127.0.0.1).
_HOSTNAME = re.compile(r"(?i)(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}")
DATADOG_SITES = (
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "ddog-gov.com",
)


def _resolve_site(raw: str | None) -> str:
    site = (raw or DEFAULT_DD_SITE).strip().rstrip("/").lower()
    if site in DATADOG_SITES or _HOSTNAME.fullmatch(site):
        return site
    raise ConfigurationError(
        f"DD_SITE must be a Datadog site such as {DEFAULT_DD_SITE} or datadoghq.eu (a host name, "
        f"without scheme, path, port or user), got {_printable(site)}"
    )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _resolve_url(raw: str | None) -> str | None:
    """``DD_DD_URL``: https (http only to this machine), no user or password, no query or fragment.

    The key travels in a header to whatever this names, so the messages never echo a userinfo.
    """
    if not raw:
        return None
    url = raw.strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        raise ConfigurationError("DD_DD_URL is not a valid URL (check its host and port)") from None
    if "@" in parts.netloc:
        raise ConfigurationError(
            "DD_DD_URL must not hold a user or password (user:password@): the API key is the credential"
        )
    # Scheme, host, port and path only: a query may carry a key (Datadog accepts ?api_key=).
    shown = _printable(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))
    if parts.scheme not in {"http", "https"} or not host:
        raise ConfigurationError(f"DD_DD_URL must be an https URL, got {shown}")
    if parts.scheme == "http" and not is_loopback(host):
        raise ConfigurationError(
            f"DD_DD_URL must use https (http only to localhost or 127.0.0.1), got {shown}"
        )
    if parts.query or parts.fragment or "#" in url:
        raise ConfigurationError(
            f"DD_DD_URL must not hold a query or fragment (not shown: it may hold a key), got {shown}"
        )
    return url


def _printable(text: str, limit: int = 120) -> str:
    """``text`` quoted, its control characters escaped, cut to ``limit`` characters."""
    return ascii(text[:limit])


def _resolve_api(env: Mapping[str, str]) -> ApiTarget:
    # The key is never a flag: command lines are visible to every user of the machine.
    raw_key = env.get("DD_API_KEY") or ""
    key = checked_api_key(raw_key, source="DD_API_KEY") if raw_key.strip() else None
    arn = (env.get("DD_API_KEY_SECRET_ARN") or "").strip() or None
    if arn is not None and not arn.startswith("arn:"):
        raise ConfigurationError("DD_API_KEY_SECRET_ARN must be a Secrets Manager ARN (arn:…)")
    return ApiTarget(
        site=_resolve_site(env.get("DD_SITE")),
        url=_resolve_url(env.get("DD_DD_URL")),
        api_key=key,
        api_key_secret_arn=arn,
        hostname=(env.get("DD_HOSTNAME") or "").strip() or None,
    )


def _resolve_sink(flags: Mapping[str, object], env: Mapping[str, str]) -> str:
    raw = flags.get("sink")
    sink = str(raw) if raw is not None else (env.get("SINK") or "dogstatsd")
    sink = sink.strip().lower()
    if sink not in SINKS:
        raise ConfigurationError(f"SINK must be one of {', '.join(SINKS)}, got {sink!r}")
    return sink


def resolve(flags: Mapping[str, object], env: Mapping[str, str]) -> Settings:
    """Combine command-line ``flags`` (``None`` = not given) and ``env`` into :class:`Settings`.

    This is the only place where precedence is decided: a flag beats its environment variable,
    which beats the default.
    """

    def pick(flag: str, variable: str) -> str | None:
        value = flags.get(flag)
        if value is not None:
            return str(value)
        return env.get(variable) or None

    def pick_int(flag: str, variable: str, default: int, **bounds: int) -> int:
        raw = pick(flag, variable)
        return default if raw is None else _as_int(variable, raw, **bounds)

    def pick_optional_int(flag: str, variable: str, **bounds: int) -> int | None:
        raw = pick(flag, variable)
        return None if raw is None else _as_int(variable, raw, **bounds)

    # An empty namespace is meaningful (bare metric names), so an empty variable counts as set.
    namespace = flags.get("namespace")
    if namespace is None:
        namespace = env.get("METRIC_NAMESPACE")
    self_metrics_raw = env.get("SELF_METRICS")
    distributions_raw = pick("distributions", "DISTRIBUTIONS")
    sink = _resolve_sink(flags, env)
    api = _resolve_api(env)
    if sink == "api" and api.api_key is None and api.api_key_secret_arn is None:
        raise ConfigurationError("the api sink needs DD_API_KEY or DD_API_KEY_SECRET_ARN")
    return Settings(
        queue_url=pick("queue_url", "SQS_QUEUE_URL"),
        dead_letter_queue_url=pick("dead_letter_queue_url", "DEAD_LETTER_QUEUE_URL"),
        endpoint_url=pick("endpoint_url", "AWS_ENDPOINT_URL"),
        region=_first(pick("region", "AWS_REGION"), env.get("AWS_DEFAULT_REGION")),
        profile=pick("profile", "AWS_PROFILE"),
        statsd=_resolve_statsd(flags, env),
        sink=sink,
        api=api,
        namespace="cloud_job" if namespace is None else str(namespace).strip("."),
        constant_tags=_split_list(pick("tags", "CONSTANT_TAGS")),
        allowed_buckets=frozenset(_split_list(pick("allowed_buckets", "ALLOWED_BUCKETS"))),
        key_prefix=pick("key_prefix", "KEY_PREFIX") or "",
        key_suffix=pick("key_suffix", "KEY_SUFFIX") or "",
        max_object_bytes=pick_int(
            "max_object_bytes", "MAX_OBJECT_BYTES", DEFAULT_MAX_OBJECT_BYTES, minimum=1
        ),
        max_jobs_per_object=pick_int(
            "max_jobs_per_object", "MAX_JOBS_PER_OBJECT", DEFAULT_MAX_JOBS_PER_OBJECT, minimum=1
        ),
        max_records_per_message=pick_int(
            "max_records_per_message",
            "MAX_RECORDS_PER_MESSAGE",
            DEFAULT_MAX_RECORDS_PER_MESSAGE,
            minimum=1,
            maximum=10_000,
        ),
        max_runtime_seconds=pick_int(
            "max_runtime_seconds",
            "MAX_RUNTIME_SECONDS",
            DEFAULT_MAX_RUNTIME_SECONDS,
            minimum=0,
            maximum=604_800,
        )
        or None,
        include_fields=_split_list(pick("fields", "FIELDS")),
        exclude_fields=_split_list(pick("exclude_fields", "EXCLUDE_FIELDS")),
        concurrency=pick_int("concurrency", "CONCURRENCY", DEFAULT_CONCURRENCY, minimum=1, maximum=64),
        fetch_workers=pick_int(
            "fetch_workers", "FETCH_WORKERS", DEFAULT_FETCH_WORKERS, minimum=1, maximum=256
        ),
        max_in_flight_messages=pick_int(
            "max_in_flight_messages",
            "MAX_IN_FLIGHT_MESSAGES",
            DEFAULT_MAX_IN_FLIGHT_MESSAGES,
            minimum=10,
            maximum=5000,
        ),
        wait_time_seconds=pick_optional_int("wait_time_seconds", "WAIT_TIME_SECONDS", minimum=0, maximum=20),
        visibility_timeout_seconds=pick_optional_int(
            "visibility_timeout_seconds", "VISIBILITY_TIMEOUT_SECONDS", minimum=1, maximum=43200
        ),
        max_backoff_seconds=pick_int(
            "max_backoff_seconds", "MAX_BACKOFF_SECONDS", 900, minimum=1, maximum=43200
        ),
        self_metrics=True if self_metrics_raw is None else _as_bool("SELF_METRICS", self_metrics_raw),
        distributions=None if distributions_raw is None else _as_bool("DISTRIBUTIONS", distributions_raw),
    )
