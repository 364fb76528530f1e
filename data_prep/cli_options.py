"""Command options as typed dataclasses: one declaration gives the parser, the help (defaults shown), the
checks that run before any model loads, and the settings a run records.

    @dataclass
    class Options:
        window: int = option(20, help="passages per window")
        def check(self) -> None:
            if self.window < 2:
                raise OptionError("window", "must be >= 2", fix="e.g. 20")

    opts = parse_options(Options, argv, prog="dear x")  # argparse's own errors exit 2 with the usage
    return run_command("dear x", lambda: run(checked(opts)), flags=flags_of(Options))
    # checked(): DataError "window: must be >= 2"; run_command (data_prep.cli_run) shows it as
    # "dear x: error: --window: must be >= 2", exit 2

Libraries raise errors that name fields (``DataError(field=...)``, or a ``ValueError`` whose text names a
parameter); :func:`flag_message` rewrites those names into the flags the user typed, so an error never names
an option that does not exist on this command. This is the training commands' mechanism (``TrlParser`` over
dataclasses) without importing transformers, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from data_prep.schema import DataError

T = TypeVar("T")

# what a field means for a run's recorded settings (``settings_of``):
#   "result": changes what the run produces (a resumed run must use the same value)
#   "neutral": recorded, but may change between a run and its resumption (batch size, device)
#   None: not a setting (paths of outputs, progress bars, what to print)
SETTING_KINDS = ("result", "neutral", None)


class OptionError(DataError):
    """A value that can never work, named by its field; the CLI shows it as its flag."""

    def __init__(self, field: str, message: str, *, fix: str | None = None) -> None:
        super().__init__(f"{field}: {message}", fix=fix, reason="bad_option", field=field)


def option(default: Any = dataclasses.MISSING, *, help: str, flag: str | None = None,
           aliases: Sequence[str] = (), choices: Sequence[Any] | None = None, metavar: str | None = None,
           nargs: str | None = None, group: str | None = None, setting: str | None = "result",
           default_factory: Callable[[], Any] | None = None, show_default: bool = True,
           negatable: bool = False, omit_default: bool = False) -> Any:
    """A dataclass field with what the parser and the run's settings need; no default = a required flag.

    ``omit_default``: leave the setting out of a run's settings while it has its default, so runs recorded
    before the option existed still resume (their settings lack it)."""
    if setting not in SETTING_KINDS:
        raise ValueError(f"setting must be one of {SETTING_KINDS}, got {setting!r}")
    meta = {"help": help, "flag": flag, "aliases": tuple(aliases), "choices": choices, "metavar": metavar,
            "nargs": nargs, "group": group, "setting": setting, "show_default": show_default,
            "negatable": negatable, "omit_default": omit_default}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(the element/scalar type, whether it is a list) of an annotation such as ``int | None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else (str, False)
    if origin in (list, tuple, Sequence):
        (inner, *_rest) = typing.get_args(tp) or (str,)
        return inner, True
    return tp, False


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout and appends each option's default (unless the help already says)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = getattr(action, "show_default", True)
        if (shown and "default" not in text and action.default not in (None, False, argparse.SUPPRESS)
                and action.option_strings and not action.required):
            d = action.default
            d = " ".join(map(str, d)) if isinstance(d, (list, tuple)) else d
            text += f" (default: {d})"
        return text


def build_parser(cls: type, *, prog: str, description: str | None = None,
                 epilog: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser for the dataclass ``cls``: abbreviations refused, defaults in ``--help``."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, allow_abbrev=False,
                                     formatter_class=HelpFormatter)
    hints = typing.get_type_hints(cls)
    groups: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if "help" not in meta:
            continue
        target = parser
        if meta.get("group"):
            if meta["group"] not in groups:
                groups[meta["group"]] = parser.add_argument_group(meta["group"])
            target = groups[meta["group"]]
        names = [flag_of(f), *meta.get("aliases", ())]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        required = default is dataclasses.MISSING
        kwargs: dict[str, Any] = {"dest": f.name, "help": meta["help"]}
        tp, is_list = _base_type(hints[f.name])
        if tp is bool:
            negatable = default is True or meta.get("negatable", False)
            kwargs["action"] = argparse.BooleanOptionalAction if negatable else "store_true"
            kwargs["default"] = bool(default) if not required else False
        else:
            kwargs["type"] = tp if tp in (int, float) else str
            if is_list:
                kwargs["nargs"] = meta.get("nargs") or "+"
            elif meta.get("nargs"):
                kwargs["nargs"] = meta["nargs"]
            if meta.get("choices") is not None:
                kwargs["choices"] = list(meta["choices"])
            if meta.get("metavar"):
                kwargs["metavar"] = meta["metavar"]
            if required:
                kwargs["required"] = True
            else:
                kwargs["default"] = default
        if not names[0].startswith("-"):  # a positional argument: its name is the field's
            names = [f.name]
            kwargs.pop("dest")
            kwargs.pop("required", None)
        action = target.add_argument(*names, **kwargs)
        action.show_default = meta.get("show_default", True)  # type: ignore[attr-defined]
    return parser


def flags_of(cls_or_parser: Any) -> dict[str, str]:
    """Field (dest) name -> the flag a user types, for a dataclass or any argparse parser."""
    if isinstance(cls_or_parser, argparse.ArgumentParser):
        return {a.dest: a.option_strings[0] for a in cls_or_parser._actions
                if a.option_strings and a.dest not in ("help",)}
    return {f.name: flag_of(f) for f in dataclasses.fields(cls_or_parser) if "help" in f.metadata}


def flag_message(err: Exception, flags: dict[str, str], *, renames: dict[str, str] | None = None) -> str:
    """``str(err)`` with the field names it mentions written as this command's flags.

    ``renames`` maps a library parameter to this command's field first (the reranker's ``max_tokens`` is
    ``dear rerank``'s ``max_prompt_tokens``). Only whole identifiers are replaced, never parts of words.
    """
    text = str(err)
    mapping = dict(flags)
    for lib_name, field_name in (renames or {}).items():
        if field_name in flags:
            mapping[lib_name] = flags[field_name]
    named = getattr(err, "field", None)
    for name in sorted(mapping, key=len, reverse=True):
        flag = mapping[name]
        # a field name at the start ("window must be ..."), the field the error says is at fault, or an
        # identifier with an underscore anywhere ("raise max_tokens"); other plain words are left alone
        text = re.sub(rf"^{re.escape(name)}(?=[\s:])", flag, text)
        if "_" in name or name == named:  # never inside a path or file name ("/data/out/input.trec")
            text = re.sub(rf"(?<![\w\-/\\.]){re.escape(name)}(?![\w\-/\\]|\.\w)", flag, text)
    return text


def parse_options(cls: type[T], argv: Sequence[str] | None = None, *, prog: str,
                  description: str | None = None, epilog: str | None = None,
                  parser: argparse.ArgumentParser | None = None) -> T:
    """Parse ``argv`` into ``cls`` (argparse's own errors exit 2 with the usage); run :func:`checked`
    next, inside the command's error handling, so a bad value is one line naming the flag."""
    parser = parser or build_parser(cls, prog=prog, description=description, epilog=epilog)
    ns = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    return cls(**vars(ns))


def checked(opts: T, *, prog: str | None = None) -> T:
    """``opts`` after its ``check()``: values that can never work raise a DataError (a library's ValueError
    naming a field becomes one, pointing at ``--help``) before any file is read or any model loads."""
    check_finite(opts)
    check = getattr(opts, "check", None)
    if check is not None:
        try:
            check()
        except DataError:
            raise
        except ValueError as err:
            raise DataError(str(err), reason="bad_option",
                            fix=f"see `{prog} --help`" if prog else "see --help for the valid values") from None
    return opts


def check_finite(opts: Any) -> None:
    """Every float option of a command is a real number: ``nan`` passes every ``<``/``>`` range check (all
    comparisons are false) and ``inf`` passes a lower bound, and argparse's ``float`` takes both."""
    import math

    for f in dataclasses.fields(opts):
        value = getattr(opts, f.name)
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise OptionError(f.name, f"must be a finite number, got {v}",
                                  fix="give a real number (see --help for its range)")


def settings_of(opts: Any, *, include_neutral: bool = True) -> dict[str, Any]:
    """The run's settings, derived from the options: every field marked as a setting, by name."""
    out = {}
    for f in dataclasses.fields(opts):
        kind = f.metadata.get("setting", None)
        value = getattr(opts, f.name)
        if f.metadata.get("omit_default") and value == f.default:
            continue
        if kind == "result" or (include_neutral and kind == "neutral"):
            out[f.name] = value
    return out


def neutral_settings(cls: type) -> tuple[str, ...]:
    """Names of the settings that may change between a run and its resumption."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("setting") == "neutral")


def check_output_file(path: str, what: str = "output file") -> None:
    """Refuse, before any work, an output path that can never be written: a folder where a file is
    expected, a parent that is a file, or a folder without write permission."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        raise DataError(f"is a folder, but the {what} to write is expected here", path=str(p),
                        reason="is_a_directory", fix="pass a file path (e.g. inside that folder)")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # the closest existing ancestor is what must be writable
    if not parent.is_dir():
        raise DataError(f"cannot create the {what}: {parent} is not a folder", path=str(p),
                        reason="not_a_directory", fix="choose a path under an existing folder")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise DataError(f"no permission to write the {what} here", path=str(p), reason="permission",
                        fix=f"choose a folder you can write to, or fix the permissions of {parent}")


PathArg = str | os.PathLike | None


def _paths(value: PathArg | Sequence[PathArg]) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)]
    return [os.fspath(v) for v in value if v is not None]


def _holds_something(p: str) -> bool:
    """Whether ``p`` holds data a write would replace: a non-empty file, or a folder with anything in it."""
    try:
        if os.path.isdir(p):
            with os.scandir(p) as entries:
                return next(entries, None) is not None
        return os.path.getsize(p) > 0
    except OSError:
        return False


def _same_or_inside(inp: str, out: str) -> bool:
    """Whether the input ``inp`` is the output ``out`` (same resolved path or same file: symlinks and hard
    links included) or lies inside it (an output folder the command writes or replaces)."""
    rin, rout = os.path.realpath(inp), os.path.realpath(out)
    if rin == rout or rin.startswith(rout.rstrip(os.sep) + os.sep):
        return True
    try:
        return os.path.samefile(inp, out)
    except OSError:  # one of them does not exist (yet): the resolved paths decided
        return False


def check_outputs(outputs: Mapping[str, PathArg | Sequence[PathArg]],
                  inputs: Mapping[str, PathArg | Sequence[PathArg]] = {}, *,
                  fresh: Sequence[str] = (), overwrite: bool = False,
                  overwrite_fix: str = "pass --overwrite to replace it, or choose another path",
                  flags: Mapping[str, str] | None = None) -> None:
    """The one guard of every command's output paths, run in its ``check()`` before any work.

    ``outputs`` and ``inputs`` map a field (named as its flag in the message) to the path or paths it
    names; an output's entry lists every file or folder the command writes for it (derived files such as
    ``RUN.meta.json`` included). Refused, as an :class:`OptionError` naming the fields:

    * an output that is an input of the same command, or an input inside an output folder (same resolved
      path or same inode: symlinks and hard links count), even with ``overwrite``: the input would be lost;
    * two outputs that are the same file;
    * for the fields in ``fresh``: a path that already holds data (a non-empty file or folder), unless
      ``overwrite`` (the user asked for it to be replaced). Outputs not in ``fresh`` are resumable: their
      owner decides whether the data there belongs to the run (``inference.runfiles``).

    ``flags`` names the fields in the message (default ``--field-name``).
    """
    def flag(name: str) -> str:
        return (flags or {}).get(name) or flag_name(name)

    written = [(name, p) for name, value in outputs.items() for p in _paths(value)]
    read = [(name, p) for name, value in inputs.items() for p in _paths(value)]
    for out_name, out in written:
        for in_name, inp in read:
            if _same_or_inside(inp, out):
                same = os.path.realpath(inp) == os.path.realpath(out) or _samefile(inp, out)
                where = "is the same path as" if same else "is a folder this command writes, holding"
                raise OptionError(out_name, f"{out} {where} {flag(in_name)} {inp}",
                                  fix="write the output somewhere else: an output never replaces an input of "
                                      "the same command")
    for i, (name_a, a) in enumerate(written):
        for name_b, b in written[i + 1:]:
            if os.path.realpath(a) == os.path.realpath(b) or _samefile(a, b):
                raise OptionError(name_b, f"{b} is the same path as the output of {flag(name_a)} ({a})",
                                  fix="give each output its own path")
    if not overwrite:
        for name, p in written:
            if name in fresh and _holds_something(p):
                what = "folder" if os.path.isdir(p) else "file"
                raise OptionError(name, f"{p} exists (a non-empty {what}) and would be replaced",
                                  fix=overwrite_fix)


def _samefile(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def flag_name(field_name: str) -> str:
    """``max_tokens`` as a flag (``--max-tokens``), for a fix that names another option."""
    return "--" + field_name.replace("_", "-")


DISK_FAULTS = {errno.ENOSPC: "free disk space or write to another folder; finished work is kept, rerun to resume",
               errno.EDQUOT: "disk quota exceeded: free space or write to another folder",
               errno.EROFS: "the folder is on a read-only file system: write the output somewhere else",
               errno.EACCES: "no permission: choose a folder you can write to, or fix its permissions",
               errno.EPERM: "not permitted: choose a folder you can write to"}


def is_disk_fault(err: OSError) -> bool:
    """A file-system fault a user can fix (full disk, read-only folder, permission), not a bug."""
    return err.errno in DISK_FAULTS


def os_error_line(prog: str, err: OSError, path: str | os.PathLike | None = None) -> str:
    """One line for a disk fault: what happened, the path, the fix.

    A write that fails midway (a full disk) raises an OSError without a file name; the writers in
    :mod:`data_prep.io` and ``inference.runfiles`` attach it (:func:`data_prep.io.named`), and ``path`` is the
    fallback a command knows (its output)."""
    name = getattr(err, "filename", None) or (os.fspath(path) if path is not None else None)
    where = f" ({name})" if name else ""
    return f"{prog}: error: {err.strerror or err}{where} -- fix: {DISK_FAULTS.get(err.errno or -1, 'check the path')}"
