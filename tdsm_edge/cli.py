"""Shared command-line helpers."""
from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: X)` after each option, except for on/off flags, where the default is None
    (the help text then says what None means), or where the help already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.nargs == 0 or "default:" in text:
            return text
        return super()._get_help_string(action)
