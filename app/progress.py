"""Progress on stderr: one live line on a terminal, a log line every few seconds otherwise."""

from __future__ import annotations

import logging
import threading
import time
from typing import TextIO

from app.service import Summary

log = logging.getLogger(__name__)


class Progress:
    """Callable handed to the forwarder; reports at most every ``interval_seconds``."""

    def __init__(self, stream: TextIO, *, interval_seconds: float | None = None) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self.interval_seconds = (
            interval_seconds if interval_seconds is not None else (0.2 if self.live else 5.0)
        )
        self._last = 0.0
        self._lock = threading.Lock()
        self._shown = False

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
            else:
                log.info("progress %s", line)

    def close(self) -> None:
        """End the live line so later output starts on a fresh one."""
        if self.live and self._shown:
            self.stream.write("\n")
            self.stream.flush()

    @staticmethod
    def format(summary: Summary) -> str:
        """One human line of counts and rate."""
        rate = summary.received / summary.seconds if summary.seconds else 0.0
        return (
            f"received {summary.received}  forwarded {summary.forwarded}  ignored {summary.ignored}  "
            f"rejected {summary.rejected}  retried {summary.retried}"
            + (f"  ({rate:.0f} msg/s)" if rate else "")
        )
