"""The one error path of every `dear` command: bad input is one line on stderr and an exit code, never a traceback.

    def main(argv=None) -> int:
        opts = parse_options(Options, argv, prog="dear x")     # argparse's own errors exit 2 with the usage
        return run_command("dear x", lambda: _run(opts), flags=flags_of(Options), out=opts.out,
                           interrupted=f"finished work is in {opts.out}. Rerun the same command to resume.")

What the body raises becomes, on stderr:

* :class:`~data_prep.schema.DataError` (``OptionError`` included): ``dear x: error: <message>``, field names
  written as this command's flags (:func:`~data_prep.cli_options.flag_message` with ``flags``/``renames``;
  without ``flags`` the message as it is), exit 2;
* :class:`CommandError`: ``dear x: error: <message>``, its own exit code (a wrong launcher, a missing extra, a
  model that failed to load in a server);
* an ``OSError`` that is a disk fault (full disk, read-only folder, permission):
  :func:`~data_prep.cli_options.os_error_line` naming the file (or ``out``), exit 2; any other ``OSError`` is a
  bug and propagates (``os_errors="all"``: every ``OSError`` is shown this way);
* ``KeyboardInterrupt``, for a command that resumes (``interrupted`` given): ``dear x: interrupted; <what to
  do>``, exit 130; otherwise it propagates.

It lives in ``data_prep`` because every package may import ``data_prep`` and ``data_prep`` imports neither other.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping

from data_prep.cli_options import flag_message, is_disk_fault, os_error_line
from data_prep.schema import DataError

logger = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A command's refusal that is not about a file or an option value (a wrong launcher, a missing extra, a
    failed model load in a running server): shown as ``PROG: error: <message>``, exit ``code``."""

    def __init__(self, message: str, *, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


def error_text(prog: str, err: Exception, *, flags: Mapping[str, str] | None = None,
               renames: Mapping[str, str] | None = None) -> str:
    """``PROG: error: <message>``, the message's field names written as ``flags`` when given."""
    text = flag_message(err, dict(flags), renames=dict(renames or {})) if flags is not None else str(err)
    return f"{prog}: error: {text}"


def run_command(prog: str, body: Callable[[], int | None], *, flags: Mapping[str, str] | None = None,
                renames: Mapping[str, str] | None = None, out: str | None = None, interrupted: str | None = None,
                os_errors: str = "disk") -> int:
    """``body()``'s exit code (``None`` is 0), or the exit code of the one line its error became (module doc)."""
    if os_errors not in ("disk", "all"):
        raise ValueError(f"os_errors must be 'disk' or 'all', got {os_errors!r}")
    try:
        return int(body() or 0)
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        print(f"{prog}: interrupted; {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CommandError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return err.code
    except DataError as err:
        print(error_text(prog, err, flags=flags, renames=renames), file=sys.stderr)
        logger.debug("%s failed", prog, exc_info=True)
        return EXIT_BAD_INPUT
    except OSError as err:
        if os_errors == "disk" and not is_disk_fault(err):
            raise
        print(os_error_line(prog, err, path=out), file=sys.stderr)
        return EXIT_BAD_INPUT
