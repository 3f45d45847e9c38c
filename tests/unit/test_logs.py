"""Log output: the format choice, Datadog's JSON shape, the context as attributes, redaction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from app.logs import REDACTED, configure_logging, resolve_format


class Tty(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        """Always a terminal."""
        return True


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    """Put the root logger's handlers and level back after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def emit(log_format: str, emit_record: Any) -> str:
    """Configure ``log_format`` on a buffer, log through ``emit_record(logger)``, return the output."""
    buffer = io.StringIO()
    configure_logging(level="DEBUG", log_format=log_format, env={}, stream=buffer)
    emit_record(logging.getLogger("app.drain.handler"))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("flag", "env", "stream", "expected"),
    [
        (None, {}, Tty(), "text"),
        (None, {}, io.StringIO(), "json"),
        (None, {"LOG_FORMAT": "TEXT"}, io.StringIO(), "text"),
        ("json", {"LOG_FORMAT": "text"}, Tty(), "json"),
    ],
    ids=["terminal", "pipe", "env", "flag-beats-env"],
)
def test_format_is_flag_then_env_then_terminal(
    flag: str | None, env: dict[str, str], stream: io.StringIO, expected: str
) -> None:
    """--log-format beats LOG_FORMAT, which beats text on a terminal and JSON elsewhere."""
    assert resolve_format(flag, env, stream) == expected


def test_unknown_format_is_refused() -> None:
    """A LOG_FORMAT other than text or json is an error, not silently text."""
    with pytest.raises(ValueError, match="text or json"):
        resolve_format(None, {"LOG_FORMAT": "xml"}, io.StringIO())


@pytest.mark.usefixtures("restore_root_logger")
def test_json_line_has_datadog_reserved_attributes_and_the_context() -> None:
    """One JSON object per line: status, message, timestamp, logger.name, and each key=%s pair."""
    out = emit(
        "json",
        lambda log: log.warning(
            "message.rejected id=%s reason=%s detail=%s uri=%s",
            "m-1",
            "invalid-json",
            "line 1",
            "s3://jobs-bucket/jobs/a b.json",
        ),
    )

    lines = out.splitlines()
    assert len(lines) == 1
    document = json.loads(lines[0])
    assert document["status"] == "warn"
    assert document["logger"]["name"] == "app.drain.handler"
    assert document["message"].startswith("message.rejected id=m-1 reason=invalid-json")
    assert document["timestamp"].endswith("+00:00")
    assert (document["event"], document["outcome"]) == ("message.rejected", "rejected")
    assert (document["message_id"], document["reason"], document["detail"]) == (
        "m-1",
        "invalid-json",
        "line 1",
    )
    assert (document["bucket"], document["key"]) == ("jobs-bucket", "jobs/a b.json")


@pytest.mark.usefixtures("restore_root_logger")
def test_extra_context_and_numbers_become_typed_attributes() -> None:
    """Context passed with extra= is kept, and numeric arguments stay numbers."""
    out = emit("json", lambda log: log.info("heartbeat.extended messages=%d", 3, extra={"queue": "q"}))

    document = json.loads(out)
    assert document["messages"] == 3
    assert document["queue"] == "q"
    assert document["status"] == "info"


@pytest.mark.usefixtures("restore_root_logger")
def test_exceptions_are_one_line_with_an_error_attribute() -> None:
    """A logged exception stays inside its JSON line, under error.kind/message/stack."""

    def fail(log: logging.Logger) -> None:
        try:
            raise KeyError("boom")
        except KeyError:
            log.exception("object.unexpected_error uri=%s", "s3://b/k")

    out = emit("json", fail)

    assert len(out.splitlines()) == 1
    error = json.loads(out)["error"]
    assert error["kind"] == "KeyError"
    assert "Traceback" in error["stack"]


@pytest.mark.usefixtures("restore_root_logger")
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_secrets_are_never_written(log_format: str) -> None:
    """A secret passed as api_key=%s or extra= is replaced in the message and in the attributes."""
    out = emit(
        log_format,
        lambda log: log.info(
            "sink.configured api_key=%s site=%s",
            "abcd1234secret",
            "datadoghq.eu",
            extra={"dd_token": "t0ps3cret"},
        ),
    )

    assert "abcd1234secret" not in out
    assert "t0ps3cret" not in out
    assert REDACTED in out
    assert "datadoghq.eu" in out


@pytest.mark.usefixtures("restore_root_logger")
def test_text_lines_stay_readable() -> None:
    """Text logs keep the event-style line as written."""
    out = emit("text", lambda log: log.info("message.retry id=%s reason=%s", "m-2", "agent-unavailable"))

    assert out.rstrip().endswith("INFO app.drain.handler message.retry id=m-2 reason=agent-unavailable")
