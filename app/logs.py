r"""Log output: readable text on a terminal, one JSON object per line for Datadog elsewhere.

The package logs event-style messages with their context as ``key=value`` pairs and lazy ``%s``
arguments (``log.info("message.retry id=%s reason=%s detail=%s", ...)``). The JSON formatter turns
each ``key=%s`` pair into an attribute of its own, so call sites stay as they are and text logs stay
readable; context passed with ``extra=`` becomes attributes too. The reserved attributes Datadog
reads without a pipeline (https://docs.datadoghq.com/logs/log_configuration/attributes_naming_convention/)
are ``status``, ``message``, ``timestamp`` and ``logger.name`` (``logger.thread_name``, ``error.*``).

Values of keys that name a secret (``api_key``, ``token``, ``password`` …) are replaced by
``[redacted]`` in both formats, before the message is rendered.

Control characters never reach the terminal: S3 keys and intake answers are data from outside,
and an ANSI escape sequence in one could rewrite what an operator sees. Text lines show them as
``\x1b``, ``\n``, ``\u2028`` …; JSON lines carry them as ``\u`` escapes.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
REDACTED = "[redacted]"

# A printf placeholder, optionally right after ``key=``.
_PLACEHOLDER = re.compile(
    r"(?:(\w+)=)?%(?:\([^)]*\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[diouxXeEfFgGcrsa%]"
)
_SECRET_KEY = re.compile(r"(?i)(api_?key|app_?key|secret|token|password|passwd|credential|authorization)")
# The context keys of the log calls, under the attribute names a Datadog user searches for.
_ATTRIBUTE_NAMES = {"id": "message_id"}
# The outcome an event reports about a message.
_OUTCOMES = {
    "message.rejected": "rejected",
    "message.retry": "retried",
    "message.ignored": "ignored",
    "message.delete_failed": "delete_failed",
}
# Attributes every LogRecord has; anything else on a record came in through ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# Python level names → Datadog status values.
_STATUS = {"WARNING": "warn", "CRITICAL": "critical"}
# C0 and C1 controls, DEL, and the line and paragraph separators some terminals and viewers
# break lines at; also the bidirectional overrides that reorder what is displayed.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    character = match.group(0)
    short = _SHORT_ESCAPES.get(character)
    if short is not None:
        return short
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control(text: str) -> str:
    r"""``text`` with every control character shown as an escape (``\x1b``, ``\n``, ``\u2028``)."""
    return _CONTROL.sub(_escape, text)


def escape_control_lines(text: str) -> str:
    """Like :func:`escape_control`, but the line breaks between lines (a traceback's) are kept."""
    return "\n".join(escape_control(line) for line in text.split("\n"))


class EscapingFormatter(logging.Formatter):
    """The text format with control characters escaped: one log record, one line of plain text.

    A traceback keeps its own line breaks; the control characters inside its lines are escaped.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        """The message line, escaped."""
        return escape_control(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        """The traceback, its lines kept and their control characters escaped."""
        return escape_control_lines(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's name
        """The stack, its lines kept and their control characters escaped."""
        return escape_control_lines(super().formatStack(stack_info))


def resolve_format(flag: str | None, env: Mapping[str, str], stream: TextIO) -> str:
    """``--log-format``, else ``LOG_FORMAT``, else text on a terminal and JSON otherwise."""
    chosen = (flag or env.get("LOG_FORMAT") or "").strip().lower()
    if not chosen:
        return "text" if stream.isatty() else "json"
    if chosen not in FORMATS:
        raise ValueError(f"log format must be text or json, not {chosen!r}")
    return chosen


def context(record: logging.LogRecord) -> dict[str, Any]:
    """The ``key=%s`` pairs of a record's message, with their (unformatted) arguments."""
    args = record.args
    if not isinstance(record.msg, str) or not isinstance(args, tuple):
        return {}
    named = _named_arguments(record.msg, len(args))
    return {_ATTRIBUTE_NAMES.get(name, name): args[index] for name, index in named}


def _named_arguments(msg: str, count: int) -> Iterator[tuple[str, int]]:
    """``(key, index)`` of each ``key=%s`` placeholder of ``msg`` among its first ``count`` arguments."""
    index = 0
    for match in _PLACEHOLDER.finditer(msg):
        if match.group(0).endswith("%%"):
            continue
        if index >= count:
            return
        if match.group(1):
            yield match.group(1), index
        index += 1


class RedactingFilter(logging.Filter):
    """Replaces the arguments of ``secret_key=%s`` pairs and secret ``extra=`` values in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact, and always let the record through."""
        if isinstance(record.msg, str) and isinstance(record.args, tuple) and record.args:
            args = list(record.args)
            for name, index in _named_arguments(record.msg, len(args)):
                if _SECRET_KEY.search(name):
                    args[index] = REDACTED
            record.args = tuple(args)
        for name in set(vars(record)) - _RECORD_FIELDS:
            if _SECRET_KEY.search(name):
                setattr(record, name, REDACTED)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record with Datadog's reserved attributes and the message's context."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        message = record.getMessage()
        document: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "status": _STATUS.get(record.levelname, record.levelname.lower()),
            "message": message,
            "logger": {"name": record.name, "thread_name": record.threadName},
        }
        event = message.split(" ", 1)[0]
        if "." in event and "=" not in event:
            document["event"] = event
            if event in _OUTCOMES:
                document["outcome"] = _OUTCOMES[event]
        for key, value in context(record).items():
            document.setdefault(key, _plain(value))
        for name in set(vars(record)) - _RECORD_FIELDS:
            document.setdefault(name, _plain(getattr(record, name)))
        uri = document.get("uri")
        if isinstance(uri, str) and uri.startswith("s3://"):
            bucket, _, key = uri.removeprefix("s3://").partition("/")
            document.setdefault("bucket", bucket)
            document.setdefault("key", key)
        if record.exc_info and record.exc_info[0] is not None:
            document["error"] = {
                "kind": record.exc_info[0].__name__,
                "message": str(record.exc_info[1]),
                "stack": "".join(traceback.format_exception(*record.exc_info)),
            }
        # json.dumps escapes C0 controls only; C1, DEL and the separators get \u escapes too.
        return _CONTROL.sub(
            lambda m: f"\\u{ord(m.group(0)):04x}", json.dumps(document, ensure_ascii=False, default=str)
        )


def _plain(value: Any) -> Any:
    """JSON-friendly: numbers, booleans and None as they are, everything else as its text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


def configure_logging(
    *, level: str | None, log_format: str | None, env: Mapping[str, str], stream: TextIO | None = None
) -> str:
    """Send the package's logs to ``stream`` (stderr) in the chosen format; return the format."""
    out = stream if stream is not None else sys.stderr
    chosen = resolve_format(log_format, env, out)
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if chosen == "json" else EscapingFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    name = (level or env.get("LOG_LEVEL") or "INFO").upper()
    root.setLevel(getattr(logging, name, logging.INFO))
    for noisy in ("botocore", "boto3", "urllib3", "datadog.dogstatsd"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return chosen
