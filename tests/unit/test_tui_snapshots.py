"""How `devbox tui` looks: SVG snapshots (pytest-textual-snapshot) of the main screens at 80×24
and 200×50, dark and light, from a fixed fleet and a frozen clock so every run draws the same.

After a deliberate change of looks: `pytest tests/unit/test_tui_snapshots.py --snapshot-update`,
then look at the new SVGs before committing them.
"""

from __future__ import annotations

import pytest
from devbox.tui import app as tui_app
from devbox.tui import render

from devbox import allocation, gpus
from devbox.boxes import Box
from devbox.hosts import LOCAL_HOST, Host
from devbox.jobs import Job
from devbox.overview import HostView

from .conftest import make_box

NOW = 1_790_000_000.0  # a fixed "now": uptimes, job times and "updated Ns ago" never drift
H100 = "NVIDIA H100 80GB HBM3"


class FrozenClock:
    @staticmethod
    def time() -> float:
        return NOW


def _started(seconds_ago: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(NOW - seconds_ago, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _box(name: str, owner: str, gpu: tuple[str, ...], status: str = "running", up: float = 3700) -> Box:
    return make_box(
        name,
        owner,
        status=status,
        port=20001,
        gpus=gpu,
        image="pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
        workdir=f"/home/{owner}/proj",
        started=_started(up) if status == "running" else "",
        mounts=(f"/data/{owner}:/workspace/data:ro",),
        memory=64 << 30,
        cpus=16.0,
        shm_size=8 << 30,
    )


def _job(name: str, state: str, code: int | None, started_ago: float, last: str) -> Job:
    ended = None if state == "running" else NOW - 10
    return Job(
        "train", name, state, ("python", "train.py"), "", ("0", "1"), NOW - started_ago, ended, code, "", last
    )


def fleet() -> list[HostView]:
    inv = gpus.Inventory(
        tuple(
            gpus.Gpu(i, f"GPU-{i:04x}", H100, used, 81559, util, False)
            for i, used, util in ((0, 42379, 97), (1, 61000, 88), (2, 18213, 41), (3, 4, 0))
        ),
        (
            gpus.GpuProcess("GPU-0000", 48121, "python", 42370),
            gpus.GpuProcess("GPU-0002", 51877, "python3", 18204),
        ),
    )
    report = allocation.GpuReport(
        inv, {"0": "ana/train", "1": "ana/train", "2": "bo/eval"}, {48121: "ana/train"}, True
    )
    boxes = (
        _box("train", "ana", ("0", "1")),
        _box("notebook", "ana", (), status="exited"),
        _box("eval", "bo", ("2",), up=86400 * 2 + 60),
    )
    jobs = {
        "train": (
            _job("prep", "exited", 0, 4000, "wrote 1.2M shards"),
            _job("train", "running", None, 3605, "epoch 12/90 loss 0.4137 lr 3e-4"),
        )
    }
    local = HostView(LOCAL_HOST, "ana", boxes, report, "", jobs, {}, None, NOW - 1)
    down = HostView(Host("gpu2", "ana@gpu2.lab"), error="no answer within 25 s", taken_at=NOW)
    return [local, down]


def _log(_host, _box, _job) -> bytes:
    return b"".join(f"epoch {i}/90 loss {1 / (i + 1):.4f}\n".encode() for i in range(1, 13))


@pytest.fixture(autouse=True)
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "time", FrozenClock)
    monkeypatch.setattr(tui_app, "time", FrozenClock)


def make_app(theme: str = "textual-dark") -> tui_app.DevboxApp:
    views = {v.host.name: v for v in fleet()}
    targets = [v.host for v in views.values()]
    app = tui_app.DevboxApp(targets, interval=3600, look=lambda h: views[h.name], read_log=_log)
    app.theme = theme
    return app


async def _settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.2)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=["80x24", "200x50"])
@pytest.mark.parametrize("theme", ["textual-dark", "textual-light"], ids=["dark", "light"])
def test_main_screen(snap_compare, size: tuple[int, int], theme: str) -> None:
    assert snap_compare(make_app(theme), terminal_size=size, run_before=_settle)


@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=["80x24", "200x50"])
def test_new_box_form_with_held_gpus_disabled(snap_compare, size: tuple[int, int]) -> None:
    async def open_form(pilot) -> None:
        await _settle(pilot)
        await pilot.press("n")
        await pilot.pause(0.3)

    assert snap_compare(make_app(), terminal_size=size, run_before=open_form)


def test_help_screen_lists_the_keys(snap_compare) -> None:
    async def open_help(pilot) -> None:
        await _settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.3)

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=open_help)
