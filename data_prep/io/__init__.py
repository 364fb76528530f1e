"""Output plumbing every command shares: atomic writes, append-only files that survive a crash, one writer
per output (a lock), and the package versions recorded beside every result."""

from data_prep.io.appendlog import complete_lines, cut_torn_tail
from data_prep.io.atomic import (
    atomic_file,
    naming,
    replace_dir_atomic,
    write_json_atomic,
    write_jsonl_atomic,
    write_lines_atomic,
    write_text_atomic,
)
from data_prep.io.lock import OutputLock, OutputLocked
from data_prep.io.versions import package_versions

__all__ = ["OutputLock", "OutputLocked", "atomic_file", "complete_lines", "naming", "cut_torn_tail", "package_versions",
           "replace_dir_atomic", "write_json_atomic", "write_jsonl_atomic", "write_lines_atomic",
           "write_text_atomic"]
