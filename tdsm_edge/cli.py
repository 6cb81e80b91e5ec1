"""Shared command-line helpers."""
from __future__ import annotations

import argparse
import logging
import re
from typing import Callable


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's own line breaks (module docstrings with example commands) and shows
    `(default: X)` after each option, except for on/off flags, where the default is None
    (the help text then says what None means), or where the help already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.nargs == 0 or "default:" in text:
            return text
        return super()._get_help_string(action)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_log_level(parser: argparse.ArgumentParser) -> None:
    """The `--log-level` option every command has."""
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS, help="logging detail")


def setup_logging(level: str = "INFO") -> None:
    """Log records to stderr with time, level and logger name."""
    logging.basicConfig(level=level, format=LOG_FORMAT)


def one_line(message: object) -> str:
    """A message on one line (line breaks and the indentation after them become one space)."""
    return re.sub(r"\s*\n\s*", " ", str(message)).strip()


def run_main(body: Callable[[], int | None], log: logging.Logger, interrupted: str = "interrupted") -> int:
    """Run a command's body so that no user error ends in a traceback.

    A TdsmError (what, why, how to fix) or an OSError on a path the user named (missing, a file where a
    folder is needed, no permission, a full disk) is logged as one line and exits 2; Ctrl-C logs
    `interrupted` (say what was kept and how to continue) and exits 130. Returns the exit status.
    """
    from tdsm_edge.errors import TdsmError

    try:
        rc = body()
        return 0 if rc is None else int(rc)
    except TdsmError as e:
        log.error("%s", one_line(e))
        return 2
    except KeyboardInterrupt:
        log.error("%s", one_line(interrupted))
        return 130
    except OSError as e:
        where = f" {str(e.filename)!r}" if e.filename else ""
        where += f" -> {str(e.filename2)!r}" if getattr(e, "filename2", None) else ""
        log.error("%s", one_line(f"{e.strerror or e}:{where or ' (no file named)'}; check the paths given on the "
                                 "command line (a folder where a file is expected or the reverse, permissions, "
                                 "free disk space)"))
        return 2
