"""Drives `devbox tui` with Textual's Pilot as the ordinary test user, against the real engine.

Run by tests/e2e/test_tui_e2e.py as `python tui_pilot.py SCENARIO [ARG...]` under runuser (so the
app sees that user's boxes, keys and ssh config, never root's); prints one JSON object of what the
screen showed. Not a test module: pytest does not collect it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from devbox.tui import render
from devbox.tui.app import DevboxApp

from devbox import hosts, overview


class Recorder(DevboxApp):
    """The real app, noting every notification so the test can read what a person was told."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.told: list[str] = []

    def notify(self, message, *args, **kwargs) -> None:  # type: ignore[override]
        self.told.append(str(message))
        super().notify(message, *args, **kwargs)


def rows(app: DevboxApp) -> list[list[str]]:
    table = app.query_one("#boxes")
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def job_rows(app: DevboxApp) -> list[list[str]]:
    table = app.query_one("#jobs")
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def state_of(app: DevboxApp, name: str) -> str | None:
    return next((r[3] for r in rows(app) if r[1] == name), None)


async def until(pilot, check, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await pilot.pause(0.2)
    app = pilot.app
    views = {v.host.name: [v.error, time.time() - v.taken_at] for v in app.views}
    waiting = sorted(app._loading)
    raise SystemExit(
        json.dumps({"timeout": what, "rows": rows(app), "told": app.told, "views": views, "waiting": waiting})
    )


async def select(pilot, name: str) -> None:
    await until(pilot, lambda: state_of(pilot.app, name) is not None, what=f"row {name}")
    table = pilot.app.query_one("#boxes")
    index = next(i for i, r in enumerate(rows(pilot.app)) if r[1] == name)
    table.move_cursor(row=index)
    table.focus()
    await pilot.pause(0.1)


def panels(app: DevboxApp) -> dict[str, object]:
    found = app.selected()
    return {
        "rows": rows(app),
        "jobs": job_rows(app),
        "gpus": render.gpu_panel(app.views).plain,
        "details": render.details(*found).plain if found else "",
        "status": render.status_line(app.views),
        "told": app.told,
        "hosts": {v.host.name: v.reachable for v in app.views},
    }


async def see(pilot, name: str) -> dict[str, object]:
    await select(pilot, name)
    await until(pilot, lambda: bool(pilot.app.views), what="first refresh")
    return panels(pilot.app)


async def form(pilot, bad: str, good: str) -> dict[str, object]:
    await until(pilot, lambda: bool(pilot.app.views), what="first refresh")
    await pilot.press("n")
    # Wait on what the screen shows, not on fixed pauses: the CI machine is busy.
    await until(pilot, lambda: type(pilot.app.screen).__name__ == "NewBoxScreen", what="form")
    screen = pilot.app.screen
    name = screen.query_one("#name")
    name.value = bad
    name.focus()
    await pilot.press("enter")
    await until(
        pilot, lambda: str(screen.query_one("#form-error").render()).strip() != "", what="inline error"
    )
    inline = str(screen.query_one("#form-error").render())
    still_open = pilot.app.screen is screen
    name.value = good
    gpu = screen.query_one("#gpu-1")
    gpu.focus()
    await pilot.press("space")
    await until(pilot, lambda: gpu.value is True, what="GPU 1 ticked")
    name.focus()
    await pilot.press("enter")
    await until(pilot, lambda: state_of(pilot.app, good) == "running", what=f"{good} running")
    await until(pilot, lambda: any(f"{good} is up" in t for t in pilot.app.told), what=f"{good} up done")
    return {"inline": inline, "form_stayed_open": still_open, **panels(pilot.app)}


async def act(pilot, name: str) -> dict[str, object]:
    seen = []
    await select(pilot, name)
    # Stopping ends the box's jobs: it asks first, and `n` leaves the box running.
    await pilot.press("x")
    await until(pilot, lambda: type(pilot.app.screen).__name__ == "Confirm", what="stop asked")
    await pilot.press("n")
    await until(pilot, lambda: type(pilot.app.screen).__name__ == "Screen", what="stop declined")
    await pilot.pause(1.5)  # a refresh, which would show a stop had one begun
    seen.append(state_of(pilot.app, name))
    await pilot.press("x")
    await until(pilot, lambda: type(pilot.app.screen).__name__ == "Confirm", what="stop asked again")
    await pilot.press("y")
    await until(pilot, lambda: state_of(pilot.app, name) == "exited", what="stopped")
    seen.append(state_of(pilot.app, name))
    await select(pilot, name)
    await pilot.press("s")
    await until(pilot, lambda: state_of(pilot.app, name) == "running", what="started")
    seen.append(state_of(pilot.app, name))
    await select(pilot, name)
    await pilot.press("d")
    await pilot.pause(0.3)
    await pilot.press("y")
    await until(pilot, lambda: state_of(pilot.app, name) is None, what="removed")
    seen.append(None)
    return {"states": seen, **panels(pilot.app)}


async def job(pilot, name: str, job_name: str, final: str) -> dict[str, object]:
    await select(pilot, name)
    states: list[str] = []

    def note() -> bool:
        for row in job_rows(pilot.app):
            if row[0] == job_name and (not states or states[-1] != row[1]):
                states.append(row[1])
        return final in states

    await until(pilot, note, what=f"job {job_name} {final}")
    await pilot.pause(1.5)  # one log poll
    log = "\n".join(str(line) for line in pilot.app.query_one("#log").lines)
    return {"states": states, "log": log, **panels(pilot.app)}


async def refused(pilot, name: str) -> dict[str, object]:
    await select(pilot, name)
    await pilot.press("x")
    await pilot.press("d")
    await pilot.pause(0.5)
    return {"screen": type(pilot.app.screen).__name__, **panels(pilot.app)}


async def readonly(pilot, name: str) -> dict[str, object]:
    await select(pilot, name)
    await pilot.press("x")
    await pilot.press("n")
    await pilot.pause(1.0)
    footer = " ".join(b.binding.description for b in pilot.app.active_bindings.values() if b.binding.show)
    return {"screen": type(pilot.app.screen).__name__, "footer": footer, **panels(pilot.app)}


async def _worst_lag(seconds: float, tick: float = 0.005) -> float:
    """The longest the event loop (where keys are handled) was kept from running, in seconds."""
    loop = asyncio.get_running_loop()
    worst, end = 0.0, loop.time() + seconds
    while loop.time() < end:
        start = loop.time()
        await asyncio.sleep(tick)
        worst = max(worst, loop.time() - start - tick)
    return worst


async def lag(pilot, seconds: str) -> dict[str, object]:
    """The benchmark: worst input delay while refreshing every `interval`, against the idle app."""
    app = pilot.app
    await until(pilot, lambda: app.refreshes >= 1, what="first refresh")
    for timer in list(app._timers):  # the idle floor: no refreshes at all
        timer.pause()
    idle = await _worst_lag(float(seconds) / 2)
    for timer in list(app._timers):
        timer.resume()
    first = app.refreshes
    busy = await _worst_lag(float(seconds))
    return {"idle_s": idle, "busy_s": busy, "refreshes": app.refreshes - first, "boxes": len(rows(app))}


async def unreachable(pilot, flaky: str, live: str) -> dict[str, object]:
    """Both hosts answer; the test freezes `flaky` (after READY on stdout); it must turn
    unreachable while `live` keeps refreshing and keys keep working."""
    app = pilot.app

    def answering(name: str) -> bool:
        view = app._views.get(name)
        return view is not None and view.reachable

    await until(pilot, lambda: answering(flaky) and answering(live), what="both hosts answering")
    os.write(1, b"READY\n")  # past Textual, which holds print() output while the app runs
    live_stamps: set[float] = set()

    def flaky_down() -> bool:
        live_stamps.add(app._views[live].taken_at)
        return not answering(flaky)

    await pilot.pause(0.5)
    await pilot.press("slash")  # the screen takes keys while a host hangs
    filter_opened = bool(app.query_one("#filter").display)
    await pilot.press("escape")
    await until(pilot, flaky_down, timeout=90, what=f"{flaky} unreachable")
    while_hanging = len(live_stamps)
    after: set[float] = set()
    await until(
        pilot, lambda: len(after.add(app._views[live].taken_at) or after) >= 3, what=f"{live} refreshing"
    )
    return {
        **panels(app),
        "filter_opened": filter_opened,
        "live_updates_while_hanging": while_hanging,
        "live_updates_after": len(after),
    }


async def command(pilot, line: str) -> dict[str, object]:
    """A `:` command typed as is; what the app shows for it."""
    await until(pilot, lambda: bool(pilot.app.views), what="first refresh")
    await pilot.press("colon")
    await until(pilot, lambda: type(pilot.app.screen).__name__ == "Prompt", what="prompt")
    pilot.app.screen.query_one("#prompt-input").value = line
    await pilot.press("enter")
    await until(pilot, lambda: type(pilot.app.screen).__name__ != "Prompt", what="prompt closed")
    await until(
        pilot,
        lambda: type(pilot.app.screen).__name__ == "Output" or bool(pilot.app.told),
        what="the command's output or a notice",
    )
    screen = pilot.app.screen
    title = str(screen.query_one("#output-title").render()) if type(screen).__name__ == "Output" else ""
    return {"screen": type(screen).__name__, "title": title, **panels(pilot.app)}


SCENARIOS = {
    "command": command,
    "unreachable": unreachable,
    "lag": lag,
    "see": see,
    "form": form,
    "act": act,
    "job": job,
    "refused": refused,
    "readonly": readonly,
}


async def main(scenario: str, args: list[str]) -> None:
    targets = hosts.listed(hosts.load())
    # A short per-host deadline where the test waits for one to pass.
    timeout = {"host_timeout": 4.0} if scenario == "unreachable" else {}
    app = Recorder(targets, readonly=scenario in ("readonly", "lag"), interval=1.0, **timeout)
    async with app.run_test(size=(160, 50)) as pilot:
        result = await SCENARIOS[scenario](pilot, *args)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    assert overview  # the core module the app reads from must import for the driver too
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
