"""data_prep.io: torn tails, atomic line writes and the one-writer lock."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from data_prep.io import OutputLock, OutputLocked, complete_lines, cut_torn_tail, write_lines_atomic
from data_prep.io.lock import lock_path


def test_torn_tail_is_cut_and_complete_lines_kept(tmp_path):
    p = tmp_path / "run.trec"
    p.write_bytes(b"a 1\nb 2\nc-partial")
    assert complete_lines(p, repair=False) == ["a 1\n", "b 2\n"]
    assert p.read_bytes().endswith(b"c-partial")  # repair=False leaves the file alone
    assert cut_torn_tail(p) == len(b"c-partial")
    assert p.read_bytes() == b"a 1\nb 2\n"
    assert cut_torn_tail(p) == 0 and complete_lines(tmp_path / "missing") == []
    p.write_bytes(b"no newline at all")
    assert complete_lines(p) == [] and p.read_bytes() == b""


def test_lines_split_on_newline_only_and_bom_dropped(tmp_path):
    p = tmp_path / "x.jsonl"
    rec = json.dumps({"t": "line\u2028sep\rcr"}, ensure_ascii=False)
    p.write_bytes(b"\xef\xbb\xbf" + (rec + "\n").encode("utf-8") * 2)
    assert [json.loads(x) for x in complete_lines(p)] == [{"t": "line\u2028sep\rcr"}] * 2


def test_a_long_torn_tail_is_cut_whole(tmp_path):
    p = tmp_path / "big"
    p.write_bytes(b"ok\n" + b"x" * 200_000)
    assert cut_torn_tail(p) == 200_000 and p.read_bytes() == b"ok\n"


def test_write_lines_atomic_replaces_in_one_step(tmp_path):
    p = tmp_path / "f"
    p.write_text("old\n")
    write_lines_atomic(p, ["a\n", "b\n"])
    assert p.read_text() == "a\nb\n" and sorted(os.listdir(tmp_path)) == ["f"]


def test_a_second_writer_is_refused_with_the_owner_named(tmp_path):
    out = tmp_path / "run.trec"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from data_prep.io import OutputLock
        with OutputLock({str(out)!r}):
            print("locked", flush=True)
            sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLocked, match=rf"pid {holder.pid} .* holds .*run\.trec\.lock") as err:
            OutputLock(out, what="run").acquire()
        assert "wait for that job" in str(err.value)
    finally:
        holder.communicate("\n", timeout=30)
    assert not lock_path(out).exists()  # released and removed on exit
    with OutputLock(out):  # free again
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()


def test_a_killed_holder_never_blocks_a_rerun(tmp_path):
    out = tmp_path / "run.trec"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from data_prep.io import OutputLock
        OutputLock({str(out)!r}).acquire()
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait(timeout=30)
    assert lock_path(out).exists()  # the stale file is still there ...
    with OutputLock(out):  # ... but the kernel dropped the lock with the process
        pass


def test_atomic_writes_give_a_new_file_the_umask_mode_and_keep_an_old_files_mode(tmp_path):
    """mkstemp makes 0600 files: a run or adapter written that way was unreadable for the rest of a team."""
    import os
    import stat

    old = os.umask(0o027)
    try:
        new = write_lines_atomic(tmp_path / "new.trec", ["a\n"])
        assert stat.S_IMODE(new.stat().st_mode) == 0o640
    finally:
        os.umask(old)
    kept = tmp_path / "kept.trec"
    kept.write_text("x\n")
    kept.chmod(0o604)
    write_lines_atomic(kept, ["b\n"])
    assert stat.S_IMODE(kept.stat().st_mode) == 0o604 and kept.read_text() == "b\n"


def test_the_umask_is_read_without_changing_it_with_or_without_proc(monkeypatch):
    import os
    from pathlib import Path

    from data_prep.io import atomic

    old = os.umask(0o037)
    try:
        assert atomic._umask() == 0o037
        real = Path.read_text
        monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: (_ for _ in ()).throw(OSError("no /proc"))
                            if str(self) == "/proc/self/status" else real(self, *a, **k))
        assert atomic._umask() == 0o037 and os.umask(0o037) == 0o037  # read, and left as it was
    finally:
        os.umask(old)
