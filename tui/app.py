"""`devbox tui`: boxes, GPUs, owners and jobs on every host, on one screen, and one key to act.

The app only renders and dispatches: what it shows comes from devbox.overview, what it does
calls the same core functions as the CLI. Every engine or ssh call runs in a worker thread, so a
slow or dead host never freezes the screen.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from devbox.tui import render
from devbox.tui.screens import Confirm, ConfirmRemove, Help, NewBox, NewBoxScreen, Output, Prompt
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Footer, Input, Log, Static
from textual.widgets.data_table import RowDoesNotExist

from devbox import overview
from devbox.boxes import Box
from devbox.errors import DevboxError, UsageError
from devbox.hosts import Host
from devbox.overview import HostView

REFRESH_S = 2.0
# How long one host may take to answer before its row says "unreachable" (it is asked again on
# the next refresh); shorter than the CLI's fleet timeout: a screen should tell sooner.
HOST_TIMEOUT_S = 10.0
LOG_POLL_S = 1.0
LOG_LINES = 500
# Actions that change something: refused with --readonly (the bindings disappear from the footer).
ACTIONS = frozenset(
    {"new", "start", "stop", "restart", "remove", "shell", "code", "run_job", "kill_job", "command"}
)
# `:` commands that need the terminal: run with the app suspended, not captured.
INTERACTIVE = frozenset({"ssh", "attach", "tui", "code"})
_STOPS_JOBS = "Its running jobs end (they show as lost); its home stays."


def _runs_until_stopped(args: list[str]) -> bool:
    """A command that never ends by itself: captured, it would run unseen and hold up quitting."""
    if not args:
        return False
    following = "-f" in args or "--follow" in args
    return (
        args[0] in ("forward", "wait")
        or (args[0] == "logs" and following)
        or (args[0] == "run" and "--wait" in args)
    )


class DevboxApp(App[None]):
    """The devbox dashboard; `targets` are the hosts to watch (default: every configured one)."""

    # Absolute: Textual resolves a relative path against the module of whichever subclass runs.
    CSS_PATH = Path(__file__).with_name("devbox.tcss")
    TITLE = "devbox"
    BINDINGS = [
        Binding("n", "new", "New"),
        Binding("s", "start", "Start"),
        Binding("x", "stop", "Stop"),
        Binding("R", "restart", "Restart"),
        Binding("d", "remove", "Remove"),
        Binding("enter", "shell", "Shell", priority=False),
        Binding("c", "code", "VS Code"),
        Binding("y", "copy", "Copy ssh"),
        Binding("j", "run_job", "Run job"),
        Binding("k", "kill_job", "Kill job"),
        Binding("f", "follow", "Follow log"),
        Binding("slash", "filter", "Filter"),
        Binding("ctrl+f", "search_log", "Search log"),
        Binding("g", "log_top", "Log top", show=False),
        Binding("G", "log_bottom", "Log bottom", show=False),
        Binding("colon", "command", "Command"),
        Binding("r", "refresh", "Refresh"),
        Binding("t", "toggle_theme", "Theme", show=False),
        Binding("tab", "focus_next", "Next panel", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        targets: list[Host],
        *,
        readonly: bool = False,
        interval: float = REFRESH_S,
        ssh_config: Path | None = None,
        image: str = "",
        host_timeout: float = HOST_TIMEOUT_S,
        look: Callable[[Host], HostView] | None = None,
        read_log: Callable[[Host, Box, str], bytes] | None = None,
    ) -> None:
        super().__init__()
        self.targets = targets
        self.host_timeout = host_timeout
        # Where a host's view comes from: the host itself, unless a caller (a snapshot test, a
        # demo) hands in a fixed fleet.
        self.look = look or self._look
        self.read_log = read_log or self._job_log
        self.readonly = readonly
        self.interval = interval
        self.ssh_config = ssh_config
        self.image = image
        self._views: dict[str, HostView] = {}
        self.needle = ""
        self.log_needle = ""
        self.follow = True
        self.selected_job = ""
        self._loading: set[str] = set()  # hosts asked and not answered yet
        self._rows: list[tuple[str, tuple]] = []  # what the boxes table shows: (row key, cells)
        self._log_text = ""
        self._progress = ""
        self.refreshes = 0  # views shown so far (tests and the benchmark wait on it)

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Static(render.status_line([]), id="status")
        with Horizontal(id="top"):
            with Vertical(id="boxes-pane"):
                yield DataTable(id="boxes", cursor_type="row", zebra_stripes=True)
                yield Input(placeholder="filter boxes (Enter keeps it, Escape clears)", id="filter")
            with VerticalScroll(id="gpus-pane"):
                yield Static(Text("GPUs: loading…"), id="gpus")
        with Horizontal(id="bottom"):
            with VerticalScroll(id="details-pane"):
                yield Static(Text("No box selected."), id="details")
            with Vertical(id="jobs-pane"):
                yield DataTable(id="jobs", cursor_type="row")
                yield Input(placeholder="search the log", id="log-search")
                yield Log(id="log", highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#boxes", DataTable).add_columns(*render.BOX_COLUMNS)
        self.query_one("#jobs", DataTable).add_columns(*render.JOB_COLUMNS)
        self.query_one("#filter").display = False
        self.query_one("#log-search").display = False
        if self.readonly:
            self.sub_title = "read-only"
        self.action_refresh()
        self.set_interval(self.interval, self.action_refresh)
        self.set_interval(LOG_POLL_S, self._poll_log)
        self.set_interval(1.0, self._tick_status)
        self.query_one("#boxes").focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (self.readonly and action in ACTIONS)

    # ------------------------------------------------------------------ data

    @property
    def views(self) -> list[HostView]:
        """The latest view of every host that has answered, in the order the hosts were given."""
        return [self._views[h.name] for h in self.targets if h.name in self._views]

    def action_refresh(self) -> None:
        # Each host on its own worker: a host that stops answering holds up only its own row,
        # and the others keep their cadence.
        for host in self.targets:
            if host.name not in self._loading:
                self._loading.add(host.name)
                self._load(host)

    def _look(self, host: Host) -> HostView:
        return overview.look([host], timeout=self.host_timeout, ssh_config=self.ssh_config)[0]

    @work(thread=True, group="refresh")
    def _load(self, host: Host) -> None:
        try:
            view = self.look(host)
        except Exception as exc:  # never a traceback on the terminal: a notification instead
            self.call_from_thread(self._fail, exc)
            view = None
        self.call_from_thread(self._show, host, view)

    def _show(self, host: Host, view: HostView | None) -> None:
        self._loading.discard(host.name)
        if view is None:
            return
        self._views[host.name] = view
        self.refreshes += 1
        self._fill_boxes()
        self.query_one("#gpus", Static).update(render.gpu_panel(self.views))
        self._tick_status()
        self._show_selected()

    def _tick_status(self) -> None:
        line = render.status_line(self.views)
        self.query_one("#status", Static).update(
            Text(f"{line} · {self._progress}" if self._progress else line)
        )

    def _fill_boxes(self) -> None:
        """Show the rows, keeping the cursor on the same box and the scroll where it was."""
        now = time.time()
        rows: list[tuple[str, tuple]] = []
        for view in self.views:
            if not view.reachable:
                rows.append((f"{view.host.name}\x1f\x1f", tuple(render.unreachable_cells(view))))
                continue
            for box in view.boxes:
                if render.matches(view, box, self.needle):
                    rows.append((render.box_key(view, box), tuple(render.box_cells(view, box, now))))
        table = self.query_one("#boxes", DataTable)
        if [key for key, _ in rows] == [key for key, _ in self._rows]:
            # The same boxes: change only the cells that differ (uptimes, states). Rebuilding a
            # table of 100 boxes every refresh would hold up key presses for a tenth of a second.
            for i, ((_, cells), (_, before)) in enumerate(zip(rows, self._rows, strict=True)):
                for column, (cell, old) in enumerate(zip(cells, before, strict=True)):
                    if cell != old:
                        table.update_cell_at(Coordinate(i, column), cell, update_width=True)
            self._rows = rows
            return
        keep = self._cursor_key()
        row, scroll = table.cursor_row, table.scroll_y
        table.clear()
        for key, cells in rows:
            table.add_row(*cells, key=key)
        self._rows = rows
        if keep is not None and table.row_count:
            # A box that is gone (or filtered out) leaves the cursor where it was, in range: on a
            # neighbour, never back on the first row (clear() put it there).
            with contextlib.suppress(RowDoesNotExist):
                row = table.get_row_index(keep)
            table.move_cursor(row=min(row, table.row_count - 1), animate=False, scroll=False)
        table.scroll_to(y=scroll, animate=False)

    def _cursor_key(self) -> str | None:
        table = self.query_one("#boxes", DataTable)
        if table.row_count == 0:
            return None
        try:
            return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        except Exception:
            return None

    def selected(self) -> tuple[HostView, Box] | None:
        key = self._cursor_key()
        if not key:
            return None
        host, owner, name = render.split_key(key)
        return overview.find(self.views, host, name, owner) if name else None

    @on(DataTable.RowHighlighted, "#boxes")
    def _box_moved(self) -> None:
        self._show_selected()

    def _show_selected(self) -> None:
        found = self.selected()
        details = self.query_one("#details", Static)
        jobs = self.query_one("#jobs", DataTable)
        if found is None:
            details.update(Text("No box selected."))
            jobs.clear()
            self._forget_job()
            return
        view, box = found
        details.update(render.details(view, box))
        keep = self.selected_job
        jobs.clear()
        listed = view.jobs.get(box.name, ())
        now = time.time()
        for job in listed:
            jobs.add_row(*render.job_cells(job, now), key=job.name)
        names = [j.name for j in listed]
        if keep in names:
            jobs.move_cursor(row=names.index(keep), animate=False, scroll=False)
        elif names:
            # Newest job by default: the one a person most likely wants to watch.
            jobs.move_cursor(row=len(names) - 1, animate=False)
        else:
            self._forget_job()  # no job here: another box's log (and `k`'s target) must not stay

    def _forget_job(self) -> None:
        self.selected_job = ""
        self._log_text = ""
        self.query_one("#log", Log).clear()

    @on(DataTable.RowSelected, "#boxes")
    def _box_chosen(self) -> None:
        # Enter on the boxes table: the table takes the key for its own selection first.
        if self.check_action("shell", ()):
            self.action_shell()

    @on(DataTable.RowHighlighted, "#jobs")
    def _job_moved(self, event: DataTable.RowHighlighted) -> None:
        name = str(event.row_key.value) if event.row_key is not None else ""
        if name != self.selected_job:
            self.selected_job = name
            self._log_text = ""
            self.query_one("#log", Log).clear()
            self._poll_log()

    # ------------------------------------------------------------------ the log tail

    def _poll_log(self) -> None:
        found = self.selected()
        if found is None or not self.selected_job or not found[0].mine(found[1]) or not found[1].running:
            return
        self._read_log(found[0].host, found[1], self.selected_job)

    def _job_log(self, host: Host, box: Box, job: str) -> bytes:
        from devbox import jobs

        return jobs.logs(self._engine(host), box, job, LOG_LINES)

    @work(thread=True, exclusive=True, group="log")
    def _read_log(self, host: Host, box: Box, job: str) -> None:
        try:
            text = self.read_log(host, box, job)
        except DevboxError:
            return  # the job list already says why; a log that cannot be read is not news
        self.call_from_thread(self._show_log, job, text.decode(errors="replace"))

    def _show_log(self, job: str, text: str) -> None:
        if job != self.selected_job or (text == self._log_text and not self.log_needle):
            return
        self._log_text = text
        log = self.query_one("#log", Log)
        at_end = log.is_vertical_scroll_end
        scroll = log.scroll_y
        log.clear()
        log.write_lines(render.log_lines(text, self.log_needle))
        if self.follow or at_end:
            log.scroll_end(animate=False)
        else:
            log.scroll_to(y=scroll, animate=False)

    def action_follow(self) -> None:
        self.follow = not self.follow
        if self.follow:
            self.query_one("#log", Log).scroll_end(animate=False)
        self.notify(f"log follow {'on' if self.follow else 'off'}")

    def action_log_top(self) -> None:
        self.follow = False
        self.query_one("#log", Log).scroll_home(animate=False)

    def action_log_bottom(self) -> None:
        self.follow = True
        self.query_one("#log", Log).scroll_end(animate=False)

    def action_search_log(self) -> None:
        field = self.query_one("#log-search", Input)
        field.display = True
        field.focus()

    # ------------------------------------------------------------------ filter

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.display = True
        field.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.needle = event.value.strip()
        self._fill_boxes()
        self._show_selected()

    @on(Input.Changed, "#log-search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.log_needle = event.value.strip()
        self._show_log(self.selected_job, self._log_text)

    @on(Input.Submitted, "#filter, #log-search")
    def _input_done(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            event.input.display = False
        self.query_one("#boxes").focus()

    def on_key(self, event) -> None:
        focused = self.focused
        if event.key == "escape" and isinstance(focused, Input) and focused.id in ("filter", "log-search"):
            focused.value = ""
            focused.display = False
            self.query_one("#boxes").focus()
            event.stop()

    # ------------------------------------------------------------------ acting

    def _mine(self) -> tuple[HostView, Box] | None:
        """The selected box if it is yours; otherwise say why nothing happens."""
        found = self.selected()
        if found is None:
            self.notify("select a box first", severity="warning")
            return None
        try:
            overview.refuse_foreign(*found)
        except UsageError as exc:
            self._fail(exc)
            return None
        return found

    def _engine(self, host: Host):
        from devbox.engine import Engine

        return Engine.connect(host, ssh_config=self.ssh_config)

    @work(thread=True, group="act")
    def _act(self, what: str, host: Host, act: Callable[[object], object]) -> None:
        """Run one core call for `host` in a worker; success and failure both end as a notification."""
        self.call_from_thread(self.notify, f"{what}…", timeout=2)
        try:
            done = act(self._engine(host))
        except Exception as exc:
            self.call_from_thread(self._fail, exc)
        else:
            self.call_from_thread(self.notify, str(done) if isinstance(done, str) else f"{what}: done")
        self.call_from_thread(self.action_refresh)

    def notify(self, message: str, *, markup: bool = False, **kwargs) -> None:  # type: ignore[override]
        # Messages carry paths, errors and typed commands: `[/x]` in one is text, not markup
        # (parsed, it ended the app with a MarkupError).
        super().notify(message, markup=markup, **kwargs)

    def _status_text(self, text: str) -> None:
        self._progress = text
        self._tick_status()

    def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, DevboxError):
            text = exc.message + (f" — {exc.hint}" if exc.hint else "")
        else:
            text = f"{' '.join(str(exc).split())[:300] or type(exc).__name__} ({type(exc).__name__})"
        self.notify(text, severity="error", timeout=8)

    def action_start(self) -> None:
        from devbox import boxes

        self._lifecycle("starting", partial(boxes.start, ssh_config=self.ssh_config, on_warning=self._warn))

    def action_stop(self) -> None:
        from devbox import boxes

        self._lifecycle("stopping", boxes.stop, ask="Stop")

    def action_restart(self) -> None:
        from devbox import boxes

        self._lifecycle(
            "restarting",
            partial(boxes.restart, ssh_config=self.ssh_config, on_warning=self._warn),
            ask="Restart",
        )

    def _lifecycle(self, doing: str, call: Callable[..., Box], ask: str = "") -> None:
        """start/stop/restart of the selected box (yours only); the new state as a notification.
        With `ask`, only once the user says yes to it (the box is the one selected now)."""
        found = self._mine()
        if found is None:
            return
        view, box = found

        act = partial(
            self._act, f"{doing} {box.name}", view.host, lambda e: f"{box.name}: {call(e, box.name).status}"
        )
        if ask:
            self._confirmed(f"{ask} {box.name}?", _STOPS_JOBS, act)
        else:
            act()

    def _confirmed(self, question: str, consequence: str, act: Callable[[], object]) -> None:
        """`act` once the user says yes to `question` (for what costs running work)."""
        self.push_screen(Confirm(question, consequence), lambda yes: act() if yes else None)

    def _warn(self, line: str) -> None:
        """An ssh-entry warning from a worker: the box is fine, the user's ssh config needs a hand."""
        self.call_from_thread(self.notify, line, severity="warning", timeout=10)

    def action_remove(self) -> None:
        from devbox import boxes

        found = self._mine()
        if found is None:
            return
        view, box = found

        def chosen(choice: str | None) -> None:
            if not choice:
                return
            purge = choice == "purge"

            def remove(engine) -> str:
                volume = boxes.rm(engine, box.name, purge=purge, ssh_config=self.ssh_config)
                return f"removed {box.name}" + ("" if purge else f" (home volume {volume} kept)")

            self._act(f"removing {box.name}", view.host, remove)

        self.push_screen(ConfirmRemove(box.name, box.volume), chosen)

    def action_new(self) -> None:
        view = self._target_view()
        if view is None:
            return
        from devbox import config

        image = self.image or config.default_image()
        self.push_screen(NewBoxScreen(view, image), self._create)

    def _target_view(self) -> HostView | None:
        """Where a new box goes: the selected row's host, else the first that answers."""
        found = self.selected()
        if found is not None:
            return found[0]
        reachable = [v for v in self.views if v.reachable]
        if not reachable:
            self.notify("no host answers yet", severity="warning")
            return None
        return reachable[0]

    def _create(self, form: NewBox | None) -> None:
        if form is not None:
            view = next(v for v in self.views if v.host.name == form.host)
            self._up(view.host, form)

    @work(thread=True, group="act")
    def _up(self, host: Host, form: NewBox) -> None:
        from devbox.keys.keypair import ensure_user_key

        from devbox import boxes, spec

        name = form.options["name"]

        def progress(line: str) -> None:
            # A progress line must never fail the `up` itself (the app may be closing meanwhile).
            with contextlib.suppress(Exception):
                self.call_from_thread(self._status_text, f"up {name}: {line[:150]}")

        try:
            engine = self._engine(host)
            made = spec.from_flags(facts=engine.facts(), **form.options)  # type: ignore[arg-type]
            result = boxes.up(engine, made, ensure_user_key(), progress=progress, ssh_config=self.ssh_config)
        except Exception as exc:
            self.call_from_thread(self._fail, exc)
        else:
            self.call_from_thread(self.notify, f"{result.box.name} is up: ssh {result.box.alias}")
        self.call_from_thread(self._status_text, "")
        self.call_from_thread(self.action_refresh)

    def action_shell(self) -> None:
        from devbox import sshconfig

        found = self._mine()
        if found is None:
            return
        _, box = found
        if not box.running:
            self.notify(f"{box.name} is {box.status}: start it with s", severity="warning")
            return
        with self.suspend():
            subprocess.run(sshconfig.ssh_command(box.alias, user_config=self.ssh_config))

    def action_code(self) -> None:
        import shutil

        from devbox import vscode

        found = self._mine()
        if found is None:
            return
        _, box = found
        argv = vscode.code_command(box.alias, box.workdir or "/")
        if shutil.which("code") is None:
            self.copy_to_clipboard(shlex.join(argv))
            self.notify(f"no `code` on PATH; copied: {shlex.join(argv)}", severity="warning")
            return
        subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.notify(f"opening VS Code on {box.alias}")

    def action_copy(self) -> None:
        found = self.selected()
        if found is not None:
            command = f"ssh {found[1].alias}"
            self.copy_to_clipboard(command)
            self.notify(f"copied: {command}")

    def action_run_job(self) -> None:
        found = self._mine()
        if found is None:
            return
        view, box = found

        def chosen(line: str | None) -> None:
            from devbox import jobs

            if not line or not line.strip():
                return
            try:
                req = jobs.request(box, (line,))
            except UsageError as exc:
                self._fail(exc)
                return
            self._act(
                f"starting a job in {box.name}", view.host, lambda e: f"job {jobs.run(e, box, req).name} runs"
            )

        self.push_screen(Prompt(f"Run a job in {box.name}", "a shell command, e.g. python train.py"), chosen)

    def action_kill_job(self) -> None:
        from devbox import jobs

        found = self._mine()
        if found is None or not self.selected_job:
            if found is not None:
                self.notify("select a job first", severity="warning")
            return
        view, box = found
        name = self.selected_job

        act = partial(
            self._act,
            f"killing {name}",
            view.host,
            lambda e: f"job {name}: {jobs.kill(e, box, name).describe()}",
        )
        self._confirmed(f"Kill job {name} in {box.name}?", "Its process gets TERM; its log stays.", act)

    def action_command(self) -> None:
        self.push_screen(Prompt("devbox command", "e.g. ls --all, jobs mybox, gpus"), self._run_command)

    def _run_command(self, line: str | None) -> None:
        if not line or not line.strip():
            return
        try:
            args = shlex.split(line.strip().removeprefix("devbox "))
        except ValueError as exc:
            self.notify(f"cannot read that command: {exc}", severity="error")
            return
        if _runs_until_stopped(args):
            self.notify(
                f"`devbox {shlex.join(args)}` runs until stopped: run it in a terminal "
                "(f follows a job's log here)",
                severity="warning",
            )
            return
        # -P: the folder the TUI runs in (a checkout with a devbox/ folder) must not shadow the package.
        argv = [sys.executable, "-P", "-c", "from devbox.cli import entry; entry()", *args]
        env = os.environ | ({"DEVBOX_SSH_CONFIG": str(self.ssh_config)} if self.ssh_config else {})
        if args and args[0] in INTERACTIVE:
            with self.suspend():
                subprocess.run(argv, env=env)
            self.action_refresh()
            return
        self._capture(args, argv, env)

    @work(thread=True, group="act")
    def _capture(self, args: list[str], argv: list[str], env: dict[str, str]) -> None:
        done = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", stdin=subprocess.DEVNULL, env=env
        )
        body = Text(done.stdout)
        if done.stderr:
            body.append(done.stderr, style="red" if done.returncode else "dim")
        title = f"devbox {shlex.join(args)} (exit {done.returncode})"
        self.call_from_thread(self.push_screen, Output(title, body))
        self.call_from_thread(self.action_refresh)

    def action_help(self) -> None:
        rows = render.help_rows(
            (b.key_display or b.key, b.description)
            for b in self.BINDINGS
            if isinstance(b, Binding) and self.check_action(b.action.split("(")[0], ())
        )
        self.push_screen(Help(rows))

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"
