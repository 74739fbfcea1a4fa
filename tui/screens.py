"""The TUI's dialogs: new box, confirm remove, a one-line prompt, command output, help.

Each returns what the user chose (through `dismiss`); the app does the acting."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

from devbox import spec
from devbox.errors import UsageError
from devbox.overview import HostView


@dataclass(frozen=True)
class NewBox:
    """A validated new-box form: the flags `up` would get."""

    host: str
    options: dict[str, object]


class NewBoxScreen(ModalScreen[NewBox | None]):
    """The `up` form: the same rules as the CLI (spec.from_flags), errors shown inline."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, view: HostView, image: str) -> None:
        super().__init__()
        self.view = view
        self.image = image

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="form"):
            yield Label(f"New box on [b]{self.view.host.name}[/b]", id="form-title")
            yield Input(placeholder="name (lowercase letters, digits and -)", id="name")
            yield Input(value=self.image, placeholder="base image", id="image")
            yield Label("GPUs")
            yield from self._gpu_boxes()
            yield Input(placeholder="mounts: SRC:DST[:ro] SRC:DST …", id="mounts")
            with Horizontal(id="limits"):
                yield Input(placeholder="memory e.g. 64g", id="memory")
                yield Input(placeholder="cpus e.g. 8", id="cpus")
                yield Input(value=spec.DEFAULT_SHM, placeholder="shm size", id="shm")
            yield Static("", id="form-error")
            with Horizontal(id="form-buttons"):
                yield Button("Create", variant="primary", id="create")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()  # typing goes to the name at once

    def _gpu_boxes(self) -> ComposeResult:
        report = self.view.gpus
        if report is None:
            yield Label(f"  none here ({self.view.gpu_note or 'no nvidia-smi'})", classes="dim")
            return
        for gpu in report.inventory.gpus:
            holder = report.holders.get(str(gpu.index), "")
            label = f"{gpu.index}: {gpu.name}" + (f" — held by {holder}" if holder else "")
            yield Checkbox(label, id=f"gpu-{gpu.index}", disabled=bool(holder))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
        else:
            self._submit()

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self._submit()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _value(self, widget_id: str) -> str:
        return self.query_one(f"#{widget_id}", Input).value.strip()

    def _submit(self) -> None:
        gpus = [c.id.removeprefix("gpu-") for c in self.query(Checkbox) if c.value and c.id]
        try:
            cpus = float(self._value("cpus")) if self._value("cpus") else None
        except ValueError:
            self._error(UsageError(f"cpus {self._value('cpus')!r} is not a number", "e.g. 8 or 0.5"))
            return
        options: dict[str, object] = {
            "name": self._value("name"),
            "image": self._value("image"),
            "gpus_text": ",".join(gpus) if gpus else None,
            "mounts": tuple(self._value("mounts").split()),
            "memory": self._value("memory") or None,
            "cpus": cpus,
            "shm_size": self._value("shm") or spec.DEFAULT_SHM,
        }
        try:
            # The CLI's own checks; the host's file system is checked again when the box is made.
            spec.from_flags(facts=spec.HostFacts.unchecked(), **options)  # type: ignore[arg-type]
        except UsageError as exc:
            self._error(exc)
            return
        self.dismiss(NewBox(self.view.host.name, options))

    def _error(self, exc: UsageError) -> None:
        text = Text(exc.message, style="bold red")
        if exc.hint:
            text.append(f" — {exc.hint}", style="red")
        self.query_one("#form-error", Static).update(text)


class ConfirmRemove(ModalScreen[str | None]):
    """Remove a box: 'keep' (home volume stays), 'purge', or None."""

    BINDINGS = [
        Binding("y", "choose('keep')", "Remove, keep home"),
        Binding("p", "choose('purge')", "Remove and delete home"),
        Binding("n,escape", "choose('')", "Cancel"),
    ]

    def __init__(self, name: str, volume: str) -> None:
        super().__init__()
        self.box_name = name
        self.volume = volume

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Label(f"Remove box [b]{self.box_name}[/b]?")
            yield Label(f"y: remove, keep its home volume {self.volume}")
            yield Label("p: remove and delete its home (files are lost)")
            yield Label("n: cancel")

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice or None)


class Confirm(ModalScreen[bool]):
    """A yes/no question for an action that costs running work (stop, restart, kill a job)."""

    BINDINGS = [
        Binding("y", "choose(True)", "Yes"),
        Binding("n,escape", "choose(False)", "No"),
    ]

    def __init__(self, question: str, consequence: str) -> None:
        super().__init__()
        self.question = question
        self.consequence = consequence

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Label(Text(self.question, style="bold"))
            yield Label(Text(self.consequence))
            yield Label("y: yes   n: no")

    def action_choose(self, yes: bool) -> None:
        self.dismiss(yes)


class Prompt(ModalScreen[str | None]):
    """One line of input (a job's command, a devbox command); Enter submits, Escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, placeholder: str = "", value: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.placeholder = placeholder
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt"):
            yield Label(self.title_text)
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Output(ModalScreen[None]):
    """A command's output, scrollable; any of q, Escape or Enter closes it."""

    BINDINGS = [Binding("escape,q,enter", "close", "Close")]

    def __init__(self, title: str, text: Text) -> None:
        super().__init__()
        self.title_text = title
        self.body = text

    def compose(self) -> ComposeResult:
        with Vertical(id="output"):
            yield Label(Text(self.title_text), id="output-title")  # a typed command: not markup
            with VerticalScroll():
                yield Static(self.body, id="output-body")

    def action_close(self) -> None:
        self.dismiss(None)


class Help(Output):
    """`?`: every key the app binds, from its bindings."""

    def __init__(self, rows: list[tuple[str, str]]) -> None:
        text = Text()
        for key, description in rows:
            text.append(f"{key:>10}  ", style="bold")
            text.append(f"{description}\n")
        super().__init__("Keys", text)
