"""Shared command-line helpers."""
from __future__ import annotations

import argparse
import logging


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
