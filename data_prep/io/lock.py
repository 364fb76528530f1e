"""One writer per output: a second job appending to the same file would interleave or lose queries.

The lock is an advisory ``flock`` on ``<output>.lock`` held for the life of the writer; the file holds
the owner's pid, host and command so the refusal can name them. The kernel drops the lock when the
process dies (kill -9 included), so a stale lock file never blocks a rerun. On a network file system
without ``flock`` support the lock degrades to a no-op with a warning rather than blocking every job.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from data_prep.schema import DataError

logger = logging.getLogger(__name__)


class OutputLocked(DataError):
    """Another live process holds the lock on this output."""


def lock_path(output: str | Path) -> Path:
    return Path(str(output) + ".lock")


class OutputLock:
    """``with OutputLock(out): ...`` refuses (``OutputLocked``) while another process writes ``out``."""

    def __init__(self, output: str | Path, *, what: str = "output") -> None:
        self.output = Path(output)
        self.path = lock_path(output)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_owner(fd)
                os.close(fd)
                who = (f"pid {owner.get('pid')} on {owner.get('host')} since {owner.get('since')}"
                       f" ({owner.get('command')})" if owner else "another process")
                raise OutputLocked(f"another job is writing this {self.what}: {who} holds {self.path}",
                                   path=str(self.output), reason="output_locked",
                                   fix="wait for that job to finish (or stop it), or choose another output") from None
            except OSError as err:  # e.g. ENOLCK on a file system without flock
                logger.warning("%s: cannot lock (%s); make sure no other job writes %s", self.path, err,
                               self.output)
                break
            # The holder we waited on may have unlinked the file between our open and flock: then we locked
            # an orphan inode, and must lock the file that is there now.
            try:
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_owner()).encode("utf-8") + b"\n")
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _owner() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": " ".join(sys.argv)[:300]}


def _read_owner(fd: int) -> dict[str, Any] | None:
    try:
        raw = os.pread(fd, 4096, 0)
        return json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (OSError, ValueError):
        return None
