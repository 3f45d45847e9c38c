"""Progress on stderr: one live line on a terminal, a log line every few seconds otherwise."""

from __future__ import annotations

import logging
import threading
import time
from typing import TextIO

from app.drain.service import Summary

log = logging.getLogger(__name__)


class _ClearLiveLine(logging.Filter):
    """Wipes the live line before a log record is written, so the two never share a line."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        self.progress.clear()
        return True


class Progress:
    """Callable handed to the forwarder; reports at most every ``interval_seconds``.

    Use it as a context manager: on a terminal it keeps log records off the live line and ends the
    line on exit.
    """

    def __init__(
        self, stream: TextIO, *, interval_seconds: float | None = None, log_lines: bool = True
    ) -> None:
        self.stream = stream
        self.live = stream.isatty()
        # Off a terminal, progress goes out as log lines only when ``log_lines`` (text logs).
        self.log_lines = log_lines
        default_interval = 0.2 if self.live else 5.0
        self.interval_seconds = default_interval if interval_seconds is None else interval_seconds
        self._last = float("-inf")  # the first report is always shown
        self._lock = threading.RLock()
        self._shown = False
        self._filter = _ClearLiveLine(self)

    def __enter__(self) -> Progress:
        if self.live:
            for handler in logging.getLogger().handlers:
                handler.addFilter(self._filter)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self._filter)
        self.clear()

    def __call__(self, summary: Summary) -> None:
        """Show ``summary`` if the last report is old enough."""
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval_seconds:
                return
            self._last = now
            line = self.format(summary)
            if self.live:
                self.stream.write("\r\x1b[2K" + line)
                self.stream.flush()
                self._shown = True
            elif self.log_lines:
                log.info("progress %s", line)

    def clear(self) -> None:
        """Remove the live line, if one is shown."""
        with self._lock:
            if self.live and self._shown:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
                self._shown = False

    @staticmethod
    def format(summary: Summary) -> str:
        """One human line of counts and rate."""
        rate = summary.received / summary.seconds if summary.seconds else 0.0
        return (
            f"received {summary.received}  forwarded {summary.forwarded}  ignored {summary.ignored}  "
            f"rejected {summary.rejected}  retried {summary.retried}"
            + (f"  ({rate:.0f} msg/s)" if rate else "")
        )
