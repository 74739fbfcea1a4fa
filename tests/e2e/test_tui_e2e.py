"""`devbox tui` end to end, as an ordinary user: Textual's Pilot against the real engine (through
tests/e2e/tui_pilot.py, run under runuser), and one run in a real terminal (tmux) for what a
person sees."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import User, make_user

PILOT = Path(__file__).with_name("tui_pilot.py")


def pilot(user: User, scenario: str, *args: str, timeout: float = 300) -> dict:
    proc = user.run(
        str(Path(user.env["DEVBOX_VENV"]) / "bin" / "python"), str(PILOT), scenario, *args, timeout=timeout
    )
    assert proc.returncode == 0, (
        f"{scenario} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def box(user: User, name: str) -> Iterator[str]:
    user.ok("up", name, "--gpus", "0")
    yield name
    user.devbox("rm", name, "--purge")


def test_a_box_made_through_the_core_shows_with_its_gpu_holder_and_details(user: User, box: str) -> None:
    seen = pilot(user, "see", box)
    row = next(r for r in seen["rows"] if r[1] == box)
    assert row[:6] == ["local", box, user.name, "running", "0", f"devbox-{box}"]
    assert row[7] == "0"  # jobs running: none yet, and known (it is my box)
    assert "NVIDIA H100 80GB HBM3" in seen["gpus"]
    assert f"{user.name}/{box}" in seen["gpus"]
    # GPU 0 of the fake host runs pid 48121 outside any box: flagged.
    assert "GPU 0 pid 48121 python: outside devbox" in seen["gpus"]
    assert f"ssh devbox-{box}" in seen["details"]
    assert "shm 8g" in seen["details"]
    assert seen["status"].startswith("devbox · local updated")


def test_the_new_box_form_rejects_a_bad_name_inline_then_creates_a_real_box(
    user: User, client, name: str
) -> None:
    try:
        seen = pilot(user, "form", "Bad Name!", name)
        assert "box name" in seen["inline"].lower() or "name" in seen["inline"].lower()
        assert "Bad Name!" in seen["inline"]
        assert seen["form_stayed_open"] is True
        row = next(r for r in seen["rows"] if r[1] == name)
        assert row[3] == "running" and row[4] == "1"
        found = client.containers.list(filters={"label": f"devbox.name={name}"})
        assert found and found[0].labels["devbox.gpus"] == "1"
        assert user.ssh(f"devbox-{name}", "true").returncode == 0
    finally:
        user.devbox("rm", name, "--purge")


def test_stop_start_and_remove_act_on_the_real_container_and_keep_the_home_volume(
    user: User, client, name: str
) -> None:
    user.ok("up", name)
    seen = pilot(user, "act", name)
    assert seen["states"] == ["running", "exited", "running", None]
    assert not client.containers.list(all=True, filters={"label": f"devbox.name={name}"})
    volumes = client.volumes.list(filters={"label": f"devbox.name={name}"})
    assert volumes, "remove must keep the home volume unless asked"
    for v in volumes:
        v.remove(force=True)


def test_a_jobs_state_change_and_its_log_appear(user: User, box: str) -> None:
    user.ok("run", box, "--name", "train", "--", "sh", "-c", "echo epoch-1; sleep 4; echo done-now; exit 3")
    seen = pilot(user, "job", box, "train", "exited 3")
    assert seen["states"][0] == "running"
    assert seen["states"][-1] == "exited 3"
    assert "epoch-1" in seen["log"] and "done-now" in seen["log"]


def test_acting_on_a_colleagues_box_is_refused_and_shown_dimmed(
    user: User, colleague: User, client, name: str
) -> None:
    colleague.ok("up", name)
    seen = pilot(user, "refused", name)
    assert any(f"belongs to {colleague.name}" in t for t in seen["told"])
    assert seen["screen"] != "ConfirmRemove"
    assert client.containers.list(filters={"label": f"devbox.name={name}"})[0].status == "running"


def test_a_typed_command_holding_markup_is_shown_as_text_and_a_follower_is_refused(user: User) -> None:
    # `[/oops]` parsed as markup ended the app with a MarkupError (and exit 0).
    seen = pilot(user, "command", "jobs [/oops]")
    assert seen["screen"] == "Output"
    assert "devbox jobs '[/oops]' (exit " in seen["title"]
    # A command that runs until stopped would run unseen and hold up quitting: refused, said why.
    seen = pilot(user, "command", "logs somebox train -f")
    assert seen["screen"] == "Screen"
    assert any("runs until stopped" in t for t in seen["told"])


def test_readonly_offers_no_actions_and_changes_nothing(user: User, client, box: str) -> None:
    seen = pilot(user, "readonly", box)
    assert seen["screen"] == "Screen"
    assert "Stop" not in seen["footer"] and "New" not in seen["footer"]
    assert "Quit" in seen["footer"] and "Refresh" in seen["footer"]
    assert client.containers.list(filters={"label": f"devbox.name={box}"})[0].status == "running"


# ---------------------------------------------------------------- a real terminal


def test_in_a_real_terminal_it_shows_box_gpu_and_holder_acts_on_a_key_and_q_restores(
    env, client, name: str
) -> None:
    user = make_user(env)
    socket = f"devbox-tui-{name}"
    tmux_as = user.argv(drop=("COLUMNS",))
    try:
        user.ok("up", name, "--gpus", "2")
        # The shell prints a marker after the app exits: proof the terminal came back.
        inner = "devbox tui --interval 1; echo TUI-EXITED-$?; sleep 60"
        started = subprocess.run(
            [
                *tmux_as,
                "tmux",
                "-L",
                socket,
                "new-session",
                "-d",
                "-s",
                "tui",
                "-x",
                "120",
                "-y",
                "40",
                inner,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=user.home,
        )
        assert started.returncode == 0, started.stderr

        def tmux(*a: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*tmux_as, "tmux", "-L", socket, *a], capture_output=True, text=True, timeout=30
            )

        def screen() -> str:
            return tmux("capture-pane", "-p", "-t", "tui").stdout

        def wait_for(text: str, timeout: float = 60) -> str:
            deadline = time.monotonic() + timeout
            shown = ""
            while time.monotonic() < deadline:
                shown = screen()
                if text in shown:
                    return shown
                time.sleep(0.3)
            raise AssertionError(f"{text!r} never appeared; the screen:\n{shown}")

        wait_for(name)
        shown = wait_for("H100")
        assert f"{user.name}/{name}" in shown  # the holder of GPU 2
        assert "running" in shown
        tmux("send-keys", "-t", "tui", "?")
        wait_for("Keys")
        tmux("send-keys", "-t", "tui", "Escape")
        time.sleep(0.5)
        # Enter opens a shell in the selected box (the table used to take the key for itself).
        tmux("send-keys", "-t", "tui", "Enter")
        time.sleep(2)
        tmux("send-keys", "-t", "tui", "echo IN-BOX-$((6*7))", "Enter")
        wait_for("IN-BOX-42")
        tmux("send-keys", "-t", "tui", "exit", "Enter")
        wait_for("H100")  # back in the TUI
        tmux("send-keys", "-t", "tui", "x")  # stop the (only, selected) box, once confirmed
        wait_for(f"Stop {name}?")
        tmux("send-keys", "-t", "tui", "y")
        deadline = time.monotonic() + 60
        while (
            client.containers.list(all=True, filters={"label": f"devbox.name={name}"})[0].status != "exited"
        ):
            assert time.monotonic() < deadline, screen()
            time.sleep(0.5)
        wait_for("exited")
        tmux("send-keys", "-t", "tui", "q")
        after = wait_for("TUI-EXITED-0")
        # The alternate screen is gone: the table is no longer on the terminal.
        assert "OWNER" not in after and "H100" not in after
    finally:
        subprocess.run([*tmux_as, "tmux", "-L", socket, "kill-server"], capture_output=True, timeout=30)
        user.devbox("rm", name, "--purge")
        shutil.rmtree(user.home, ignore_errors=True)
