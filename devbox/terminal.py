"""Text that came from a terminal (build output, job logs) made fit for one line of ours."""

from __future__ import annotations

import re

_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves
    r"|\x1b\][^\x07\x1b]*(\x07|\x1b\\)"  # OSC: titles, links
    r"|\x1b[()*+][0-9A-Za-z]"  # character set selection (`tput sgr0` sends one)
    r"|\x1b[@-_0-9=>]"  # the rest: save/restore cursor, keypad modes
    r"|[\x00-\x08\x0b-\x1f\x7f]"  # control characters but tab and newline
)


def plain(text: str) -> str:
    """`text` without terminal escapes and control characters (tabs and newlines stay)."""
    return _ESCAPES.sub("", text)
