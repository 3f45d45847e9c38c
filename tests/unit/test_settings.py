"""Settings: flags > environment > defaults, decided once in ``resolve``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from app.errors import ConfigurationError
from app.settings import (
    DEFAULT_MAX_OBJECT_BYTES,
    DEFAULT_STATSD_HOST,
    DEFAULT_STATSD_PORT,
    Settings,
    StatsdTarget,
    parse_statsd_url,
    resolve,
)


def settings(flags: Mapping[str, object] | None = None, /, **env: str) -> Settings:
    """Resolve ``flags`` (missing ones are None) against an environment of ``env`` only."""
    return resolve(dict(flags or {}), env)


def test_defaults_without_flags_or_environment() -> None:
    """Nothing given: the documented defaults."""
    resolved = settings()

    assert resolved == Settings()
    assert resolved.statsd == StatsdTarget(DEFAULT_STATSD_HOST, DEFAULT_STATSD_PORT)
    assert resolved.namespace == "cloud_job"
    assert resolved.max_object_bytes == DEFAULT_MAX_OBJECT_BYTES == 1024 * 1024
    assert resolved.self_metrics is True


# (flag name, environment variable, attribute, flag value, env value, default, expected flag, expected env)
PRECEDENCE: list[tuple[str, str, str, Any, str, Any, Any, Any]] = [
    (
        "queue_url",
        "SQS_QUEUE_URL",
        "queue_url",
        "https://flag/q",
        "https://env/q",
        None,
        "https://flag/q",
        "https://env/q",
    ),
    (
        "dead_letter_queue_url",
        "DEAD_LETTER_QUEUE_URL",
        "dead_letter_queue_url",
        "https://flag/dlq",
        "https://env/dlq",
        None,
        "https://flag/dlq",
        "https://env/dlq",
    ),
    (
        "endpoint_url",
        "AWS_ENDPOINT_URL",
        "endpoint_url",
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
        None,
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
    ),
    ("region", "AWS_REGION", "region", "eu-west-1", "us-east-2", None, "eu-west-1", "us-east-2"),
    ("profile", "AWS_PROFILE", "profile", "flag-profile", "env-profile", None, "flag-profile", "env-profile"),
    ("namespace", "METRIC_NAMESPACE", "namespace", "flagns", "envns", "cloud_job", "flagns", "envns"),
    ("tags", "CONSTANT_TAGS", "constant_tags", "a:1,b:2", "c:3", (), ("a:1", "b:2"), ("c:3",)),
    (
        "allowed_buckets",
        "ALLOWED_BUCKETS",
        "allowed_buckets",
        "x, y",
        "z",
        frozenset(),
        frozenset({"x", "y"}),
        frozenset({"z"}),
    ),
    ("key_prefix", "KEY_PREFIX", "key_prefix", "jobs/", "env/", "", "jobs/", "env/"),
    ("key_suffix", "KEY_SUFFIX", "key_suffix", ".json", ".txt", "", ".json", ".txt"),
    (
        "max_object_bytes",
        "MAX_OBJECT_BYTES",
        "max_object_bytes",
        2048,
        "4096",
        DEFAULT_MAX_OBJECT_BYTES,
        2048,
        4096,
    ),
    ("concurrency", "CONCURRENCY", "concurrency", 6, "2", 8, 6, 2),
    ("fetch_workers", "FETCH_WORKERS", "fetch_workers", 32, "8", 64, 32, 8),
    ("max_in_flight_messages", "MAX_IN_FLIGHT_MESSAGES", "max_in_flight_messages", 100, "50", 400, 100, 50),
    ("wait_time_seconds", "WAIT_TIME_SECONDS", "wait_time_seconds", 5, "10", None, 5, 10),
    (
        "visibility_timeout_seconds",
        "VISIBILITY_TIMEOUT_SECONDS",
        "visibility_timeout_seconds",
        60,
        "120",
        None,
        60,
        120,
    ),
    ("max_backoff_seconds", "MAX_BACKOFF_SECONDS", "max_backoff_seconds", 60, "300", 900, 60, 300),
]


@pytest.mark.parametrize(
    ("flag", "variable", "attribute", "flag_value", "env_value", "default", "from_flag", "from_env"),
    PRECEDENCE,
    ids=[row[0] for row in PRECEDENCE],
)
def test_flag_beats_environment_beats_default(
    flag: str,
    variable: str,
    attribute: str,
    flag_value: object,
    env_value: str,
    default: object,
    from_flag: object,
    from_env: object,
) -> None:
    """For each setting, a flag wins over its environment variable, which wins over the default."""
    assert getattr(settings({flag: flag_value}, **{variable: env_value}), attribute) == from_flag
    assert getattr(settings({flag: None}, **{variable: env_value}), attribute) == from_env
    assert getattr(settings(), attribute) == default


def test_empty_environment_variable_counts_as_unset() -> None:
    """SQS_QUEUE_URL='' falls back to the default rather than becoming an empty URL."""
    assert settings(SQS_QUEUE_URL="").queue_url is None


def test_aws_default_region_is_the_last_resort() -> None:
    """AWS_REGION beats AWS_DEFAULT_REGION, which beats nothing."""
    assert settings(AWS_DEFAULT_REGION="ap-south-1").region == "ap-south-1"
    assert settings(AWS_REGION="eu-west-3", AWS_DEFAULT_REGION="ap-south-1").region == "eu-west-3"


def test_namespace_dots_are_trimmed() -> None:
    """A namespace written with a trailing dot does not produce 'ns..field'."""
    assert settings({"namespace": "batch."}).namespace == "batch"


def test_explicitly_empty_namespace_flag_is_kept() -> None:
    """--namespace '' means no namespace at all (DESIGN: the namespace may be empty)."""
    assert settings({"namespace": ""}).namespace == ""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("Yes", True), ("on", True), ("0", False), ("FALSE", False), ("no", False)],
)
def test_self_metrics_switch(raw: str, expected: bool) -> None:
    """SELF_METRICS accepts the usual spellings of true and false."""
    assert settings(SELF_METRICS=raw).self_metrics is expected


def test_self_metrics_rejects_other_words() -> None:
    """SELF_METRICS=maybe is a configuration error naming the variable."""
    with pytest.raises(ConfigurationError, match="SELF_METRICS"):
        settings(SELF_METRICS="maybe")


def test_receive_wait_depends_on_follow_unless_configured() -> None:
    """Long poll is 20 s when following, 1 s for a drain, or the configured value."""
    assert settings().receive_wait_seconds(follow=True) == 20
    assert settings().receive_wait_seconds(follow=False) == 1
    assert settings(WAIT_TIME_SECONDS="0").receive_wait_seconds(follow=True) == 0


# --- DogStatsD target ---------------------------------------------------------------------------


def test_statsd_from_the_original_variables() -> None:
    """STATSD_HOST/STATSD_PORT from the original still work."""
    assert settings(STATSD_HOST="statsd.local", STATSD_PORT="9125").statsd == StatsdTarget(
        "statsd.local", 9125
    )


def test_datadog_variables_beat_the_original_ones() -> None:
    """DD_AGENT_HOST/DD_DOGSTATSD_PORT win over STATSD_HOST/STATSD_PORT."""
    resolved = settings(
        DD_AGENT_HOST="agent", DD_DOGSTATSD_PORT="8126", STATSD_HOST="old", STATSD_PORT="9125"
    )

    assert resolved.statsd == StatsdTarget("agent", 8126)


def test_host_and_port_may_come_from_different_conventions() -> None:
    """DD_AGENT_HOST with only STATSD_PORT uses both."""
    assert settings(DD_AGENT_HOST="agent", STATSD_PORT="9999").statsd == StatsdTarget("agent", 9999)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("udp://agent.local:8200", StatsdTarget("agent.local", 8200)),
        ("udp://agent.local", StatsdTarget("agent.local", DEFAULT_STATSD_PORT)),
        ("udp://[::1]:8125", StatsdTarget("::1", 8125)),
        ("unix:///var/run/datadog/dsd.socket", StatsdTarget(socket_path="/var/run/datadog/dsd.socket")),
    ],
)
def test_dogstatsd_url_forms(url: str, expected: StatsdTarget) -> None:
    """DD_DOGSTATSD_URL accepts udp://host[:port] and unix:///path."""
    assert settings(DD_DOGSTATSD_URL=url).statsd == expected
    assert parse_statsd_url(url) == expected


def test_statsd_target_describes_itself_as_a_url() -> None:
    """describe() gives back the DD_DOGSTATSD_URL form, for both kinds."""
    assert StatsdTarget("h", 1).describe() == "udp://h:1"
    assert StatsdTarget(socket_path="/s").describe() == "unix:///s"


def test_dogstatsd_url_beats_host_and_port_variables() -> None:
    """DD_DOGSTATSD_URL wins over DD_AGENT_HOST and STATSD_HOST in the environment."""
    resolved = settings(DD_DOGSTATSD_URL="unix:///run/dsd.socket", DD_AGENT_HOST="agent", STATSD_HOST="old")

    assert resolved.statsd == StatsdTarget(socket_path="/run/dsd.socket")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"statsd_host": "flag-host"}, StatsdTarget("flag-host", DEFAULT_STATSD_PORT)),
        ({"statsd_host": "flag-host", "statsd_port": 9000}, StatsdTarget("flag-host", 9000)),
        ({"dogstatsd_url": "udp://url-host:7000"}, StatsdTarget("url-host", 7000)),
    ],
    ids=["host-flag", "host-and-port-flags", "url-flag"],
)
def test_explicit_flags_beat_dogstatsd_url_from_environment(
    flags: dict[str, object], expected: StatsdTarget
) -> None:
    """An explicit --statsd-host (or --dogstatsd-url) flag beats DD_DOGSTATSD_URL in the environment."""
    assert settings(flags, DD_DOGSTATSD_URL="unix:///run/dsd.socket").statsd == expected


def test_port_flag_beats_port_variables() -> None:
    """--statsd-port wins over DD_DOGSTATSD_PORT and STATSD_PORT."""
    resolved = settings({"statsd_port": 1234}, DD_DOGSTATSD_PORT="8126", STATSD_PORT="9125")

    assert resolved.statsd.port == 1234


def test_url_flag_beats_host_flag() -> None:
    """--dogstatsd-url is the most explicit choice of all."""
    resolved = settings({"dogstatsd_url": "unix:///a.sock", "statsd_host": "h"})

    assert resolved.statsd == StatsdTarget(socket_path="/a.sock")


@pytest.mark.parametrize(
    "url",
    [
        "tcp://agent:8125",
        "http://agent:8125",
        "agent:8125",
        "unix://",
        "udp://agent:notaport",
        "udp://a:70000",
    ],
)
def test_bad_dogstatsd_urls_are_configuration_errors(url: str) -> None:
    """An unknown scheme, a missing socket path or a bad port is a clear ConfigurationError."""
    with pytest.raises(ConfigurationError, match="DogStatsD URL"):
        settings(DD_DOGSTATSD_URL=url)


def test_dogstatsd_url_with_port_zero_is_rejected() -> None:
    """udp://agent:0 is an invalid port, as STATSD_PORT=0 is, not silently the default 8125."""
    with pytest.raises(ConfigurationError):
        settings(DD_DOGSTATSD_URL="udp://agent:0")


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("STATSD_PORT", "eighty", "must be an integer"),
        ("STATSD_PORT", "0", "between 1 and 65535"),
        ("DD_DOGSTATSD_PORT", "65536", "between 1 and 65535"),
        ("MAX_OBJECT_BYTES", "0", ">= 1"),
        ("MAX_OBJECT_BYTES", "1MB", "must be an integer"),
        ("CONCURRENCY", "0", "between 1 and 64"),
        ("CONCURRENCY", "65", "between 1 and 64"),
        ("CONCURRENCY", "2.5", "must be an integer"),
        ("FETCH_WORKERS", "257", "between 1 and 256"),
        ("WAIT_TIME_SECONDS", "21", "between 0 and 20"),
        ("WAIT_TIME_SECONDS", "-1", "between 0 and 20"),
        ("VISIBILITY_TIMEOUT_SECONDS", "0", "between 1 and 43200"),
        ("VISIBILITY_TIMEOUT_SECONDS", "43201", "between 1 and 43200"),
        ("MAX_BACKOFF_SECONDS", "0", "between 1 and 43200"),
    ],
)
def test_invalid_numbers_are_configuration_errors(variable: str, raw: str, message: str) -> None:
    """Out-of-range or non-integer values fail with one line naming what and why."""
    with pytest.raises(ConfigurationError, match=message) as caught:
        settings(**{variable: raw})

    assert raw in str(caught.value)
    assert "\n" not in str(caught.value)


def test_invalid_flag_value_is_a_configuration_error() -> None:
    """A bad number given as a flag fails the same way as from the environment."""
    with pytest.raises(ConfigurationError, match="between 1 and 64"):
        settings({"concurrency": 100})


@pytest.mark.parametrize("variable", ["CONCURRENCY", "WAIT_TIME_SECONDS", "MAX_BACKOFF_SECONDS"])
def test_error_message_names_the_variable(variable: str) -> None:
    """The message says which setting is wrong."""
    with pytest.raises(ConfigurationError, match=variable):
        settings(**{variable: "x"})


def test_bounds_are_inclusive() -> None:
    """The documented bounds themselves are accepted."""
    resolved = settings(
        CONCURRENCY="64",
        WAIT_TIME_SECONDS="20",
        VISIBILITY_TIMEOUT_SECONDS="43200",
        STATSD_PORT="65535",
        FETCH_WORKERS="1",
    )

    assert (resolved.concurrency, resolved.wait_time_seconds) == (64, 20)
    assert (resolved.visibility_timeout_seconds, resolved.statsd.port, resolved.fetch_workers) == (
        43200,
        65535,
        1,
    )


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after resolve; with_changes returns a modified copy."""
    resolved = settings()

    with pytest.raises(AttributeError):
        resolved.namespace = "x"  # type: ignore[misc]
    assert resolved.with_changes(namespace="x").namespace == "x"
    assert resolved.namespace == "cloud_job"


def test_resolve_reads_only_the_given_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process environment is ignored: resolve sees only the mapping it is handed."""
    monkeypatch.setenv("SQS_QUEUE_URL", "https://process/q")
    monkeypatch.setenv("STATSD_HOST", "process-host")

    resolved = settings()

    assert resolved.queue_url is None
    assert resolved.statsd.host == DEFAULT_STATSD_HOST


def test_field_selection_is_comma_separated_and_flags_win() -> None:
    """FIELDS/EXCLUDE_FIELDS split on commas; --fields/--exclude-fields beat them."""
    from_env = settings(FIELDS="loss, images.*,", EXCLUDE_FIELDS="images.val")
    assert from_env.include_fields == ("loss", "images.*")
    assert from_env.exclude_fields == ("images.val",)
    flagged = settings({"fields": "accuracy", "exclude_fields": "x.*"}, FIELDS="loss", EXCLUDE_FIELDS="y")
    assert flagged.include_fields == ("accuracy",)
    assert flagged.exclude_fields == ("x.*",)
    assert settings().include_fields == () and settings().exclude_fields == ()


def test_max_jobs_per_object_default_and_bounds() -> None:
    """MAX_JOBS_PER_OBJECT defaults to 1000 and must be at least 1."""
    assert settings().max_jobs_per_object == 1000
    assert settings(MAX_JOBS_PER_OBJECT="5").max_jobs_per_object == 5
    with pytest.raises(ConfigurationError, match="MAX_JOBS_PER_OBJECT"):
        settings(MAX_JOBS_PER_OBJECT="0")


def test_api_sink_reads_the_datadog_variables() -> None:
    """SINK=api with DD_SITE gives https://api.<site>; DD_DD_URL overrides it; the key stays masked."""
    settings = resolve({}, {"SINK": "api", "DD_API_KEY": "abc123secret", "DD_SITE": "datadoghq.eu"})
    assert settings.sink == "api"
    assert settings.api.base_url == "https://api.datadoghq.eu"
    assert "abc123secret" not in repr(settings)
    assert settings.api.api_key is not None and settings.api.api_key.reveal() == "abc123secret"
    override = resolve({"sink": "api"}, {"DD_API_KEY": "k", "DD_DD_URL": "http://127.0.0.1:9/"})
    assert override.api.base_url == "http://127.0.0.1:9"


def test_api_sink_defaults_to_datadoghq_com_and_accepts_a_secret_arn() -> None:
    """Without DD_SITE the US1 site is used; a Secrets Manager ARN stands in for the key."""
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dd-api-key-AbCdEf"
    settings = resolve({"sink": "api"}, {"DD_API_KEY_SECRET_ARN": arn})
    assert settings.api.base_url == "https://api.datadoghq.com"
    assert settings.api.api_key_secret_arn == arn


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"sink": "api"}, {}, "DD_API_KEY"),
        ({}, {"SINK": "kafka"}, "SINK must be one of"),
        ({}, {"DD_SITE": "https://datadoghq.eu"}, "DD_SITE"),
        ({}, {"DD_DD_URL": "ftp://x"}, "DD_DD_URL"),
        ({"sink": "api"}, {"DD_API_KEY_SECRET_ARN": "dd-key"}, "ARN"),
    ],
)
def test_api_sink_configuration_mistakes_are_one_line_errors(
    flags: dict[str, object], env: dict[str, str], message: str
) -> None:
    """A missing key, an unknown sink, a URL for a site or a bad ARN is a configuration error."""
    with pytest.raises(ConfigurationError, match=message):
        resolve(flags, env)
