"""Atomic outputs: a reader never sees half a file or half a dataset folder after a crash.

Files are written to a temporary sibling and moved into place with :func:`os.replace`; folders are built
in a temporary sibling folder and renamed into place (an existing folder is moved aside first and removed
only after the new one is in place).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Give an OSError raised inside the block the file name ``path`` when it has none.

    A write that fails midway (a full disk, a quota) raises ``OSError(ENOSPC)`` without a file name, so the
    one-line message of a command could not say which file; every writer here wraps its writes in this."""
    try:
        yield
    except OSError as err:
        if err.filename is None and err.errno is not None:
            raise OSError(err.errno, err.strerror or str(err), os.fspath(path)) from err
        raise


def _umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux), else set and restored."""
    try:
        m = re.search(r"^Umask:\s*([0-7]+)", Path("/proc/self/status").read_text(), re.MULTILINE)
        if m:
            return int(m.group(1), 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _file_mode(target: Path) -> int:
    """The permissions ``target`` keeps when replaced, or those a plain ``open(target, "w")`` would give it
    (the temporary file is private, 0600, until it takes its place: teammates must be able to read a run)."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


@contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file next to ``path``; on a clean exit it replaces ``path`` in one step, with the
    permissions ``path`` had (or a new file's)."""
    target = Path(path)
    with naming(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            os.fchmod(fd, _file_mode(target))
            with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_file(path) as f:
        f.write(text)
    return Path(path)


def write_lines_atomic(path: str | Path, lines: Iterable[str]) -> Path:
    """Replace ``path`` with ``lines`` (each already newline-terminated) in one step."""
    with atomic_file(path) as f:
        f.writelines(lines)
    return Path(path)


def write_json_atomic(path: str | Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line; returns the number of lines written."""
    n = 0
    with atomic_file(path) as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def replace_dir_atomic(path: str | Path, build: Callable[[Path], None]) -> Path:
    """Build a folder with ``build(tmp_dir)`` and rename it to ``path``.

    ``build`` writes into an empty temporary folder beside ``path``. If it raises, ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the final folder gets the usual permissions
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old: Path | None = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.replace(target, old / target.name)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target
