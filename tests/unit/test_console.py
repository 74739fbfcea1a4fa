"""The CLI's plain console prints exactly what rich prints without styles, without importing rich."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.markup import escape as rich_escape

from devbox import console

# Tag-like text is what markup parsing turns on: brackets, backslashes, tag names.
# Messages are printable text (outside text passes terminal.plain first), with newlines and tabs.
TRICKY = st.text(alphabet=st.sampled_from(list("[]\\/ab=#@ .:x\n\t")), max_size=40) | st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from("\n\t\r"), max_size=40
)
STYLES = st.sampled_from(["dim", "bold", "red", "yellow", "bold red", "link=https://x.y/a"])


def rich_plain(markup: str) -> str:
    out = io.StringIO()
    Console(file=out, color_system=None, highlight=False, soft_wrap=True, emoji=False).print(markup)
    return out.getvalue()


def plain_print(markup: str) -> str:
    out = io.StringIO()
    console.PlainConsole(out).print(markup)
    return out.getvalue()


@given(TRICKY)
def test_escape_is_riches_and_escaped_text_prints_as_rich_prints_it(text: str) -> None:
    assert console.escape(text) == rich_escape(text)
    assert plain_print(console.escape(text)) == rich_plain(console.escape(text))


@pytest.mark.parametrize("text", ["/data/[old] run", "C:\\dir\\x", "a\\[b]", "[/] [dim]", "x\ty"])
def test_names_and_paths_print_as_typed(text: str) -> None:
    assert plain_print(console.escape(text)) == text.replace("\t", " " * 7) + "\n"


@given(st.lists(st.tuples(STYLES, TRICKY), max_size=4))
def test_markup_of_tags_and_escaped_text_prints_as_rich_prints_it(parts: list[tuple[str, str]]) -> None:
    # Closed by name or by `[/]`, in turn.
    closes = [style if i % 2 else "" for i, (style, _) in enumerate(parts)]
    markup = "".join(f"[{s}]{console.escape(t)}[/{c}]" for (s, t), c in zip(parts, closes, strict=True))
    assert plain_print(markup) == rich_plain(markup)


def test_the_plain_console_writes_plain_lines_and_hands_a_table_to_rich() -> None:
    from rich.table import Table

    out = io.StringIO()
    plain = console.PlainConsole(out)
    message = console.escape("box [x] \\ gone")
    plain.print(f"[red]error:[/red] {message} [dim]— hint[/dim]")
    table = Table("NAME")
    table.add_row("[bold]a[/bold]")
    with plain.status("working") as status:
        status.update("still working")
        plain.print(table)
    assert out.getvalue().splitlines()[0] == "error: box [x] \\ gone — hint"
    assert "NAME" in out.getvalue() and " a " in out.getvalue() and "[bold]" not in out.getvalue()


def test_a_command_whose_output_is_piped_does_not_import_rich(tmp_path) -> None:
    code = (
        "import sys\n"
        "from devbox.cli import main\n"
        "sys.argv = ['devbox', 'rm', 'not/a name']\n"
        "try:\n    main()\n"
        "except SystemExit as e:\n    print('rich' in sys.modules, e.code, file=sys.__stdout__)\n"
    )
    # Not from the checkout (cwd first on sys.path): there devbox.keys lives in keys/.
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.stdout.split() == ["False", "2"], done.stdout + done.stderr
    assert done.stderr.startswith("error: ") and "[red]" not in done.stderr
    assert len(done.stderr.splitlines()) == 1
