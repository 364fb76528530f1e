"""Every `dear` command reports errors through one function (:func:`data_prep.cli_run.run_command`).

The messages themselves are pinned by tests/test_bad_input.py's table; here: that each command's front end routes
through the one path (a printer copied by hand would not see the patched formatter), that a new command in
``COMMANDS`` needs a case, and the path's own contract (exit codes, interrupts, disk faults).
"""

from __future__ import annotations

import errno
import importlib
import os
from pathlib import Path

import pytest

from data_prep import cli_run
from data_prep.cli_run import CommandError, run_command
from data_prep.schema import DataError
from dear_train.cli import COMMANDS

# command -> arguments after the name whose option check fails before any file is read or model loaded
BAD_OPTION = {
    "tiny-model": ["{tmp}/tiny", "--layers", "0"],
    "prep": ["listwise", "--out", "{tmp}/o", "--teacher", "{tmp}/missing", "--window", "1"],
    "prep pointwise": ["pointwise", "--candidates", "{tmp}/missing", "--teacher-scores", "{tmp}/missing",
                       "--out", "{tmp}/o", "--negatives", "-1"],
    "train": ["--method", "nope"],
    "train --method grpo": ["--method", "grpo", "--output_dir", "{tmp}/o", "--nope", "1"],
    "distill": ["--output_dir", "{tmp}/o", "--nope", "1"],
    "rerank": ["--model", "{tmp}/missing", "--input", "{tmp}/missing", "--out", "{tmp}/o", "--window", "1"],
    "serve": ["--model", "{tmp}/missing", "--port", "99999"],
    "mcp": ["--model", "{tmp}/missing", "--window", "1"],
    "eval": ["--run", "{tmp}/missing", "--qrels", "{tmp}/missing", "--alpha", "2"],
    "teacher": ["--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--input", "{tmp}/missing",
                "--out", "{tmp}/o", "--temperature", "-1"],
}
# the prog each case reports as (a subcommand's own name)
PROG = {"prep": "dear prep listwise", "prep pointwise": "dear prep pointwise", "train --method grpo":
        "dear train --method grpo"}
# `dear export` is the one command whose failures are not bad input: a failed verification or upload exits 1 with
# "nothing was written" (docs/errors.md), and its option errors are argparse usage errors
NOT_ROUTED = {"export"}


def _main(name: str):
    return importlib.import_module(COMMANDS[name.split()[0]][0]).main


def test_every_command_has_a_case() -> None:
    assert {n.split()[0] for n in BAD_OPTION} | NOT_ROUTED == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(BAD_OPTION))
def test_each_command_routes_its_errors_through_run_command(name: str, tmp_path: Path, monkeypatch, capsys) -> None:
    """With the one formatter patched, each command's bad option shows the patched line, once, exit 2: a
    command printing its own copy would show the real message instead."""
    monkeypatch.setattr(cli_run, "error_text", lambda prog, err, **kw: f"ROUTED {prog} | {type(err).__name__}")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in BAD_OPTION[name]]
    rc = _main(name)(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if not ln.startswith(("INFO ", "WARNING "))]
    prog = PROG.get(name, f"dear {name}")
    assert rc == 2
    assert lines[-1] in {f"ROUTED {prog} | {kind}" for kind in ("OptionError", "DataError", "ConfigError")}, err
    assert sum(": error:" in ln or ln.startswith("ROUTED") for ln in lines) == 1, err
    assert not (tmp_path / "o").exists()


def test_the_real_message_names_the_flag(tmp_path: Path, capsys) -> None:
    rc = _main("tiny-model")([str(tmp_path / "t"), "--layers", "0"])
    assert rc == 2
    assert capsys.readouterr().err == "dear tiny-model: error: --layers: must be >= 1, got 0 -- fix: use a positive number\n"


def test_rerank_under_a_launcher_is_a_command_error(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    rc = _main("rerank")(["--model", "m", "--input", "i", "--out", str(tmp_path / "o")])
    (line,) = capsys.readouterr().err.splitlines()
    assert rc == 2 and line.startswith("dear rerank: error: started as one of several processes")
    assert "-m inference.rerank" in line


def test_rerank_interrupted_says_how_to_resume(tmp_path: Path, monkeypatch, capsys) -> None:
    from inference import cli_rerank

    def interrupted(opts):
        raise KeyboardInterrupt

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(cli_rerank, "run_job", interrupted)
    monkeypatch.setattr(cli_rerank, "checked", lambda opts, prog: opts)  # the folder need not be a model here
    out = tmp_path / "run.trec"
    rc = cli_rerank.main(["--model", "m", "--input", "i", "--out", str(out)])
    assert rc == 130
    assert capsys.readouterr().err == (f"dear rerank: interrupted; finished queries are saved in {out}. "
                                       "Run the same command again to resume.\n")


def test_an_error_a_command_let_through_is_still_one_line(monkeypatch, capsys) -> None:
    """The dispatcher's own run_command: a DataError or disk fault that escaped a command's body."""
    from dear_train import cli, tiny_model_cli

    def escaping(argv):
        raise DataError("something the command did not expect", path="x.jsonl", fix="report it")

    monkeypatch.setattr(tiny_model_cli, "main", escaping)
    assert cli.main(["tiny-model"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == \
        "dear tiny-model: error: x.jsonl: something the command did not expect -- fix: report it"


# ------------------------------------------------------------------------------------- run_command's contract

def test_exit_codes() -> None:
    assert run_command("dear x", lambda: None) == 0
    assert run_command("dear x", lambda: 3) == 3

    def load_failed():
        raise CommandError("the model failed to load", code=1)

    assert run_command("dear x", load_failed) == 1


def test_data_error_names_the_flags(capsys) -> None:
    def bad():
        raise DataError("max_tokens must be >= 1", fix="e.g. 4096")

    assert run_command("dear x", bad, flags={"max_prompt_tokens": "--max-prompt-tokens"},
                       renames={"max_tokens": "max_prompt_tokens"}) == 2
    assert capsys.readouterr().err == "dear x: error: --max-prompt-tokens must be >= 1 -- fix: e.g. 4096\n"
    assert run_command("dear x", bad) == 2  # no flags: the message as it is
    assert capsys.readouterr().err == "dear x: error: max_tokens must be >= 1 -- fix: e.g. 4096\n"


def test_interrupt_only_for_commands_that_resume(capsys) -> None:
    def stop():
        raise KeyboardInterrupt

    assert run_command("dear x", stop, interrupted="rerun to resume.") == 130
    assert capsys.readouterr().err == "dear x: interrupted; rerun to resume.\n"
    with pytest.raises(KeyboardInterrupt):
        run_command("dear x", stop)


def test_disk_faults_are_one_line_other_os_errors_are_bugs(tmp_path: Path, capsys) -> None:
    def full():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def missing():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "gone.txt")

    assert run_command("dear x", full, out=str(tmp_path / "run.trec")) == 2
    line = capsys.readouterr().err
    assert line.startswith("dear x: error: No space left on device") and str(tmp_path / "run.trec") in line
    with pytest.raises(FileNotFoundError):
        run_command("dear x", missing)
    assert run_command("dear x", missing, os_errors="all") == 2
    assert "gone.txt" in capsys.readouterr().err
