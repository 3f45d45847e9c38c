"""Progress on stderr: a live line on a terminal, log lines elsewhere."""

from __future__ import annotations

import io
import logging

import pytest

from app.commands.progress import Progress
from app.drain.service import Summary


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        """Pretend to be a TTY."""
        return True


def test_terminal_gets_one_rewritten_line() -> None:
    """On a terminal each report rewrites the same line, and the rate is shown."""
    stream = Terminal()
    with Progress(stream, interval_seconds=0) as progress:
        progress(Summary(received=10, forwarded=9, ignored=1, seconds=2.0))
        progress(Summary(received=20, forwarded=19, ignored=1, seconds=4.0))
    written = stream.getvalue()
    assert written.count("\r\x1b[2K") == 3  # two reports, then the line is cleared on exit
    assert "received 20  forwarded 19  ignored 1  rejected 0  retried 0  (5 msg/s)" in written
    assert "\n" not in written


def test_log_records_do_not_share_the_live_line(caplog: pytest.LogCaptureFixture) -> None:
    """A log record written while the live line is shown first clears that line."""
    stream = Terminal()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with Progress(stream, interval_seconds=0) as progress:
            progress(Summary(received=1, forwarded=1, seconds=1.0))
            logging.getLogger("app.test").warning("something happened")
    finally:
        root.removeHandler(handler)
    assert "retried 0  (1 msg/s)\r\x1b[2Ksomething happened\n" in stream.getvalue()


def test_non_terminal_reports_through_logging(caplog: pytest.LogCaptureFixture) -> None:
    """Without a terminal, progress is an INFO log line, throttled by the interval."""
    caplog.set_level(logging.INFO, logger="app.commands.progress")
    stream = io.StringIO()
    with Progress(stream, interval_seconds=3600) as progress:
        progress(Summary(received=5, forwarded=5, seconds=1.0))
        progress(Summary(received=6, forwarded=6, seconds=1.0))
    assert stream.getvalue() == ""
    lines = [r.getMessage() for r in caplog.records if r.name == "app.commands.progress"]
    assert lines == ["progress received 5  forwarded 5  ignored 0  rejected 0  retried 0  (5 msg/s)"]
