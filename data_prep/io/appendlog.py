"""Append-only outputs after a crash: the only damage a killed writer can leave is a torn last line.

Every resumable output (`dear rerank` runs and JSONL, `dear teacher` records, pointwise teacher scores)
appends whole lines and flushes them; on restart the reader keeps the newline-terminated lines and cuts
the partial tail off the file, so the next append starts on a clean line.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def cut_torn_tail(path: str | Path) -> int:
    """Truncate ``path`` after its last newline (a no-op for a clean or missing file); returns bytes cut."""
    p = Path(path)
    if not p.is_file():
        return 0
    size = p.stat().st_size
    if size == 0:
        return 0
    with p.open("rb") as f:
        # Walk back in blocks to the last newline: the tail is at most one line, however big the file.
        block = 1 << 16
        pos = size
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            pos = start
        else:
            keep = 0
    if keep == size:
        return 0
    logger.warning("%s: dropping a partly written last line (%d bytes) left by an interrupted run", p, size - keep)
    with p.open("r+b") as f:
        f.truncate(keep)
    return size - keep


def complete_lines(path: str | Path, *, repair: bool = True) -> list[str]:
    """The newline-terminated lines of ``path`` (decoded UTF-8, BOM-tolerant); [] when it does not exist.

    With ``repair`` the torn tail is also cut off the file itself, so appending can go on safely.
    """
    p = Path(path)
    if not p.is_file():
        return []
    if repair:
        cut_torn_tail(p)
    data = p.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    # Split on "\n" only: JSON written with ensure_ascii=False may hold U+2028 or "\r" inside a string.
    end = data.rfind(b"\n") + 1  # repair=False: ignore a torn tail without touching the file
    return [line + "\n" for line in data[:end].decode("utf-8").split("\n")[:-1]]
