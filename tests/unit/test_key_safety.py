"""The API key cannot leak or go astray, and what outsiders wrote cannot drive the terminal.

The key is checked when loaded, masked on every error path, and sent only to a host named by
DD_SITE or an https DD_DD_URL; control characters are escaped in logs and the dlq table.
"""

from __future__ import annotations

import io
import json
import logging
import random
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from app.aws.secrets import read_api_key
from app.commands.dlq import print_table
from app.core.operator import DeadLetter, ReasonCount
from app.errors import ConfigurationError, IntakeUnavailableError
from app.local.intake import LocalIntake
from app.logs import configure_logging, escape_control
from app.settings import DATADOG_SITES, resolve
from app.sinks.api.retry import RetryPolicy, send_with_retries
from app.sinks.api.transport import Request, Response, Urllib3Transport

KEY = "9c1f0e7ad45b2c8e3f6a0b9d1e2c7f4a"
ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dd-api-key-AbCdEf"


def api_settings(**env: str) -> Any:
    """Resolve the settings of an API sink with ``env`` on top of a valid key."""
    return resolve({"sink": "api"}, {"DD_API_KEY": KEY, **env})


def no_part_of_the_key_in(text: str) -> bool:
    """True when no 8-character stretch of KEY appears in ``text``."""
    return not any(KEY[start : start + 8] in text for start in range(len(KEY) - 7))


# --- the key when loaded ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0123456789abcdef\n0123456789abcdef", "line break"),
        ("0123456789abcdef\r\n0123456789abcdef", "line break"),
        ("0123456789abcdef 0123456789abcdef", "whitespace"),
        ("0123456789abcdef\t0123456789abcdef", "whitespace"),
        ("0123456789abcdef\x1b0123456789abcdef", "printable ASCII"),
        ("0123456789abcdéf0123456789abcdef", "printable ASCII"),
    ],
    ids=["lf", "crlf", "space", "tab", "escape", "non-ascii"],
)
def test_a_malformed_dd_api_key_is_a_configuration_error_that_never_quotes_it(
    value: str, problem: str
) -> None:
    """A key with a line break, whitespace or a non-printable character inside names DD_API_KEY, not the value."""
    with pytest.raises(ConfigurationError) as caught:
        resolve({"sink": "api"}, {"DD_API_KEY": value})
    message = str(caught.value)
    assert "DD_API_KEY" in message and problem in message
    assert "0123456789abcdef" not in message
    assert "\n" not in message


def test_a_key_with_whitespace_only_at_its_ends_is_stripped_and_accepted() -> None:
    """Surrounding whitespace (a trailing newline from a file) is not part of the key."""
    assert api_settings(DD_API_KEY=f"  {KEY}\n").api.api_key.reveal() == KEY


class FakeSecrets:
    """Secrets Manager's GetSecretValue, answering from a dict (or raising a ClientError)."""

    def __init__(self, value: str | None) -> None:
        self.value = value
        self.calls = 0

    def get_secret_value(self, *, SecretId: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        """The stored string, or AccessDenied when there is none."""
        self.calls += 1
        if self.value is None:
            raise ClientError({"Error": {"Code": "AccessDeniedException"}}, "GetSecretValue")
        return {"ARN": SecretId, "SecretString": self.value}


def test_a_secret_stored_pretty_printed_is_refused_naming_the_arn_never_the_value() -> None:
    """A secret value with a line break inside is a configuration error naming DD_API_KEY_SECRET_ARN."""
    with pytest.raises(ConfigurationError) as caught:
        read_api_key(FakeSecrets(f"{KEY[:16]}\n{KEY[16:]}\n"), ARN)
    message = str(caught.value)
    assert "DD_API_KEY_SECRET_ARN" in message and ARN in message and "line break" in message
    assert no_part_of_the_key_in(message)
    assert read_api_key(FakeSecrets(f"{KEY}\n"), ARN).reveal() == KEY


# --- where the key goes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "site",
    [
        "datadoghq.com@127.0.0.1",
        "datadoghq.com#.evil.example",
        "datadoghq.com?x=1",
        "datadoghq.com\\@evil.example",
        "https://datadoghq.eu",
        "datadoghq.eu:443",
        "datadoghq .eu",
        "datadoghq.eu\nx",
        "-datadoghq.eu",
        "datadoghq..eu",
    ],
)
def test_dd_site_must_be_a_host_name(site: str) -> None:
    """A DD_SITE with a user part, query, fragment, scheme, port or bad label is refused."""
    with pytest.raises(ConfigurationError, match="DD_SITE must be a Datadog site"):
        api_settings(DD_SITE=site)


@pytest.mark.parametrize("site", [*DATADOG_SITES, "datadoghq.eu/", "US5.DATADOGHQ.COM"])
def test_datadog_sites_are_accepted(site: str) -> None:
    """Every Datadog site is accepted (a trailing slash and capitals are forgiven)."""
    assert api_settings(DD_SITE=site).api.base_url == f"https://api.{site.rstrip('/').lower()}"


def test_dd_dd_url_with_a_user_or_password_is_refused_without_echoing_it() -> None:
    """A DD_DD_URL holding user:password@ is refused; the message quotes neither."""
    with pytest.raises(ConfigurationError) as caught:
        api_settings(DD_DD_URL="https://admin:hunter22@intake.example.com")
    assert "DD_DD_URL" in str(caught.value) and "user or password" in str(caught.value)
    assert "hunter22" not in str(caught.value) and "admin" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://intake.example.com/api?api_key=0123456789abcdef0123456789abcdef",
        "http://intake.example.com/api?api_key=0123456789abcdef0123456789abcdef",
        "https://intake.example.com/api#api_key=0123456789abcdef0123456789abcdef",
    ],
)
def test_dd_dd_url_refused_for_its_query_or_scheme_never_echoes_the_query(url: str) -> None:
    """Datadog accepts ?api_key=, so a refused DD_DD_URL is shown without its query or fragment."""
    with pytest.raises(ConfigurationError, match="DD_DD_URL") as caught:
        api_settings(DD_DD_URL=url)
    assert "0123456789abcdef" not in str(caught.value)
    assert "intake.example.com/api" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://intake.example.com", True),
        ("https://intake.example.com:8443/prefix", True),
        ("http://127.0.0.1:8080", True),
        ("http://localhost:8080", True),
        ("http://[::1]:8080", True),
        ("http://intake.example.com", False),
        ("http://10.0.0.5:8080", False),
        ("https://intake.example.com/?token=1", False),
        ("https://intake.example.com:port", False),
        ("ftp://intake.example.com", False),
    ],
)
def test_dd_dd_url_is_https_unless_it_is_this_machine(url: str, accepted: bool) -> None:
    """http:// only to a loopback address; no query, fragment or non-numeric port."""
    if accepted:
        assert api_settings(DD_DD_URL=url).api.base_url == url.rstrip("/")
    else:
        with pytest.raises(ConfigurationError, match="DD_DD_URL"):
            api_settings(DD_DD_URL=url)


# --- the transport and the retries ------------------------------------------------------------------


def test_a_header_http_client_refuses_becomes_a_masked_configuration_error() -> None:
    """A key with a line break reaching the transport: a ConfigurationError with no key and no chained cause."""
    key = f"{KEY[:16]}\n{KEY[16:]}"
    with LocalIntake(api_key=KEY) as intake:
        transport = Urllib3Transport(intake.url)
        try:
            with pytest.raises(ConfigurationError) as caught:
                transport.send(Request("GET", "/api/v1/validate", {"DD-API-KEY": key}))
        finally:
            transport.close()
    error = caught.value
    assert error.__cause__ is None and error.__suppress_context__
    printed = "".join(traceback.format_exception(error))
    assert no_part_of_the_key_in(printed), printed
    assert "DD_API_KEY" in str(error)


class EchoingTransport:
    """A proxy that answers 503 and echoes the request's headers in its body, ``pad`` characters in."""

    def __init__(self, pad: int) -> None:
        self.pad = pad

    def send(self, request: Request) -> Response:
        """503 with the headers in the body."""
        body = "x" * self.pad + json.dumps(dict(request.headers))
        return Response(503, {}, body.encode())

    def close(self) -> None:
        """Nothing to release."""


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """The package's log output in text format, restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    configure_logging(level="DEBUG", log_format="text", env={}, stream=buffer)
    yield buffer
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("pad", [0, 90, 100, 110])
def test_response_bodies_are_masked_before_any_log_line(pad: int, captured_logs: io.StringIO) -> None:
    """A body echoing the key is masked in the retry log and the error, wherever the 120-char cut falls."""
    policy = RetryPolicy(attempts=2, base_seconds=0.01, sleep=lambda _s: None, rng=random.Random(0))
    request = Request("POST", "/api/v2/series", {"DD-API-KEY": KEY, "Content-Type": "application/json"})
    with pytest.raises(IntakeUnavailableError) as caught:
        send_with_retries(EchoingTransport(pad), request, policy)
    logged = captured_logs.getvalue()
    assert "intake.retry" in logged
    assert no_part_of_the_key_in(logged), logged
    assert no_part_of_the_key_in(str(caught.value))


# --- the terminal -----------------------------------------------------------------------------------


HOSTILE_KEY = "jobs/\x1b[2J\x1b[31mred\x9b1mcsi\u2028next\nline\u202eevil.json"


def test_escape_control_shows_every_control_character_as_an_escape() -> None:
    """ESC, CSI, line breaks, separators and bidi overrides become visible escapes; text stays."""
    escaped = escape_control(HOSTILE_KEY)
    assert escaped == "jobs/\\x1b[2J\\x1b[31mred\\x9b1mcsi\\u2028next\\nline\\u202eevil.json"
    assert escape_control("plain ünïcode key.json") == "plain ünïcode key.json"


def test_text_logs_escape_control_characters_and_keep_tracebacks_readable(captured_logs: io.StringIO) -> None:
    """A text log line with a hostile S3 key stays one line, with no raw control character at all."""
    log = logging.getLogger("app.drain.handler")
    log.warning("message.rejected uri=%s", f"s3://b/{HOSTILE_KEY}")
    try:
        raise ValueError(f"cannot read {HOSTILE_KEY}")
    except ValueError:
        log.exception("object.unexpected_error uri=%s", HOSTILE_KEY)
    lines = captured_logs.getvalue().splitlines()
    assert lines[0].endswith("message.rejected uri=s3://b/" + escape_control(HOSTILE_KEY))
    assert lines[2] == "Traceback (most recent call last):"
    for line in lines:
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u202e" for c in line), line


def test_json_logs_carry_no_raw_control_character() -> None:
    """JSON lines escape C1 controls and separators too, and still parse back to the original key."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    try:
        configure_logging(level="INFO", log_format="json", env={}, stream=buffer)
        logging.getLogger("app").warning("message.rejected uri=%s", HOSTILE_KEY)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    line = buffer.getvalue().strip()
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u202e" for c in line)
    assert json.loads(line)["uri"] == HOSTILE_KEY


def test_dlq_table_escapes_control_characters() -> None:
    """The dlq table shows a hostile key and detail escaped, never as terminal control sequences."""
    letter = DeadLetter("m-1", "invalid-json\x1b[8m", f"bad {HOSTILE_KEY}", (f"s3://b/{HOSTILE_KEY}",))
    out = io.StringIO()
    print_table("https://sqs/q\x1b]0;title\x07", 1, 1, [ReasonCount("invalid-json\x1b[8m", 1, [letter])], out)
    text = out.getvalue()
    assert "\x1b" not in text and "\x9b" not in text and "\u2028" not in text and "\x07" not in text
    assert "s3://b/jobs/\\x1b[2J" in text and "invalid-json\\x1b[8m" in text


def test_the_one_error_line_of_the_console_script_escapes_control_characters(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error quoting a hostile S3 key is printed as one line, its control characters escaped, exit 2."""
    from app.commands import main as main_module

    def register(commands: Any) -> None:
        parser = commands.add_parser("hostile")

        def run(args: Any, env: Any) -> int:
            raise ConfigurationError(f"access denied on s3://b/{HOSTILE_KEY}")

        parser.set_defaults(run=run)

    monkeypatch.setattr(main_module, "SUBCOMMANDS", (register,))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        assert main_module.main(["--log-format", "text", "hostile"], environ={}) == 2
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    printed = capsys.readouterr().err
    assert printed == f"cloud-job-metrics: error: access denied on s3://b/{escape_control(HOSTILE_KEY)}\n"
