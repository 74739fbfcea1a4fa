"""Build output reaches the user as plain text: package managers colour their errors."""

from __future__ import annotations

from devbox import image


def test_terminal_escapes_are_stripped_from_build_lines() -> None:
    coloured = "\x1b[1;31mE: \x1b[0mUnable to locate package \x1b]8;;http://x\x07openssh\x1b[0m\r"
    assert image._plain(coloured) == "E: Unable to locate package openssh"


def test_a_build_failure_line_has_no_escapes() -> None:
    log = [image._plain("\x1b[31mdevbox: cannot install openssh-server\x1b[0m")]
    text = image._build_failure("base:1", image._plain("\x1b[33mreturned a non-zero code\x1b[0m"), log)
    assert "\x1b" not in text
    assert "devbox: cannot install openssh-server" in text
