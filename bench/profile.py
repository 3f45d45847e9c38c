"""Summarise a py-spy raw profile (collapsed stacks, ``--gil`` mode) into hot spots.

py-spy writes one line per distinct stack: ``frame;frame;...;leaf COUNT`` with frames like
``func (botocore/client.py:606)``. Recorded with ``--gil``, a sample is taken only from the thread
holding the GIL, so the shares below are shares of the Python CPU time of the draining process.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _where(frame: str) -> tuple[str, str]:
    """(function, file) of one py-spy frame."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), "?"
    return match.group("func"), match.group("file")


def _package(file: str) -> str:
    head = file.split("/", 1)[0]
    return head[:-3] if head.endswith(".py") else head


def summarize(path: str, *, top: int = 12) -> str:
    """Shares of samples: app/ functions (inclusive), packages (self), functions (self)."""
    app_inclusive: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for raw in Path(path).read_text().splitlines():
        stack, _, count_text = raw.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_where(f) for f in stack.split(";")]
        for name in {f"{file}:{func}" for func, file in frames if file.startswith("app/")}:
            app_inclusive[name] += count
        func, file = frames[-1]
        leaf[f"{file}:{func}"] += count
        by_package[_package(file)] += count
    if total == 0:
        return "(empty profile)"

    def block(title: str, counts: Counter[str], limit: int) -> list[str]:
        lines = [title]
        for name, count in counts.most_common(limit):
            lines.append(f"  {100 * count / total:5.1f}%  {name}")
        return lines

    lines = [f"{total} samples of the thread holding the GIL (py-spy --gil), the forwarder process"]
    lines += block("app/ functions, inclusive:", app_inclusive, top)
    lines += block("self time by package:", by_package, 8)
    lines += block("self time by function:", leaf, top)
    return "\n".join(lines)
