"""Summarise a py-spy raw profile (collapsed stacks) into the hot spots in ``app/``."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::(?P<line>\d+))?\)$")


def _where(frame: str) -> tuple[str, str]:
    """(function, short file) of one py-spy frame ``func (path/to/file.py:123)``."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), ""
    path = match.group("file")
    parts = Path(path).parts
    for anchor in ("app", "bench", "site-packages", "python3.11", "python3.12", "python3.13"):
        if anchor in parts:
            index = len(parts) - 1 - parts[::-1].index(anchor)
            short = "/".join(parts[index + (1 if anchor.startswith(("site", "python")) else 0) :])
            return match.group("func"), short
    return match.group("func"), Path(path).name


def summarize(path: str, *, top: int = 12) -> str:
    """Inclusive and self samples per function, for functions in app/ and for the whole process."""
    inclusive: Counter[str] = Counter()
    app_inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for raw in Path(path).read_text().splitlines():
        stack, _, count_text = raw.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        seen: set[str] = set()
        frames = [_where(f) for f in stack.split(";")]
        for func, short in frames:
            name = f"{short}:{func}"
            if name in seen:
                continue
            seen.add(name)
            inclusive[name] += count
            if short.startswith("app/"):
                app_inclusive[name] += count
        func, short = frames[-1]
        leaf[f"{short}:{func}"] += count
    if total == 0:
        return "(empty profile)"

    def block(title: str, counts: Counter[str]) -> list[str]:
        lines = [title]
        for name, count in counts.most_common(top):
            lines.append(f"  {100 * count / total:5.1f}%  {count:6d}  {name}")
        return lines

    lines = [f"{total} on-CPU samples (all threads) of the forwarder child process"]
    lines += block("app/ functions, inclusive (share of all samples):", app_inclusive)
    lines += block("self time, any module:", leaf)
    return "\n".join(lines)
