"""The CLI's output: rich markup, rendered by rich on a terminal and as the same plain text elsewhere.

Output that goes to a pipe, a file or a script (most output of scripted and timed runs) carries no
styles anyway, and importing rich costs a command more than all the rest of its printing; so
there it is written by `PlainConsole`, which reads rich's markup syntax itself, and rich is
imported only for a table or for a terminal.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from typing import IO, Any

# rich's markup tag, with the backslashes before it: an odd count makes it literal text.
_TAG = re.compile(r"(\\*)\[([a-z#/@][^[]*?)]")


def escape(text: str) -> str:
    """`text` to put in markup and print as it is: each tag-like `[` gets a backslash (and the
    backslashes before it are doubled), as rich.markup.escape does."""
    text = _TAG.sub(lambda m: f"{m.group(1) * 2}\\[{m.group(2)}]", text)
    # A lone trailing backslash would escape a tag that markup puts right after it.
    return text + "\\" if text.endswith("\\") and not text.endswith("\\\\") else text


# Control characters rich leaves out of any text it prints: bell, backspace, VT, FF, CR.
_DROPPED = str.maketrans(dict.fromkeys([7, 8, 11, 12, 13]))


def plain(markup: str) -> str:
    """What rich prints for `markup` without styles: tags dropped, escaped ones kept as text."""
    markup = markup.translate(_DROPPED)
    if "[" not in markup:
        return markup  # rich takes such text as it is, backslashes and all
    out, at = [], 0
    for match in _TAG.finditer(markup):
        # Between tags, a backslash before a `[` that opens no tag is dropped too.
        out.append(markup[at : match.start()].replace("\\[", "["))
        pairs, escaped = divmod(len(match.group(1)), 2)
        out.append("\\" * pairs + (f"[{match.group(2)}]" if escaped else ""))
        at = match.end()
    out.append(markup[at:].replace("\\[", "["))
    return "".join(out)


def _laid_out(text: str) -> str:
    # rich puts tab stops every 8 columns (it counts a wide character as two; this, as one).
    return text.expandtabs(8) if "\t" in text else text


class PlainConsole:
    """The part of rich's Console the CLI uses, for a stream that is not a terminal."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def print(self, item: Any = "") -> None:
        if not isinstance(item, str):  # a table: rich lays it out
            _rich(self._stream).print(item)
            return
        self._stream.write(_laid_out(plain(item)) + "\n")
        self._stream.flush()

    @contextlib.contextmanager
    def status(self, _text: str) -> Iterator[_NoStatus]:
        yield _NoStatus()  # a spinner is for a terminal only


class _NoStatus:
    def update(self, _text: str) -> None:
        pass


def console(stderr: bool = False) -> Any:
    """A console printing to stdout (or stderr): rich's on a terminal, else a PlainConsole."""
    stream = sys.stderr if stderr else sys.stdout
    return _rich(stream) if _is_terminal(stream) else PlainConsole(stream)


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def _rich(stream: IO[str]) -> Any:
    from rich.console import Console

    return Console(file=stream, highlight=False, soft_wrap=True)
