"""What the TUI's panels say, from HostViews built by hand: bars, spans, flags, freshness."""

from __future__ import annotations

import time

from devbox.tui import render

from devbox import allocation, gpus, overview
from devbox.boxes import Box
from devbox.hosts import LOCAL_HOST, Host
from devbox.overview import HostView

from .conftest import make_box

H100 = "NVIDIA H100 80GB HBM3"


def _box(name: str, owner: str = "ana", status: str = "running", gpu: tuple[str, ...] = ("0",)) -> Box:
    return make_box(
        name,
        owner,
        status=status,
        port=20001,
        gpus=gpu,
        image="ubuntu:24.04",
        workdir="/home/ana",
        started="2026-01-01T00:00:00.123456789Z",
        mounts=("/data:/workspace/data:ro",),
        memory=64 << 30,
        cpus=8.0,
        shm_size=8 << 30,
    )


def _report(processes: tuple[gpus.GpuProcess, ...] = (), pid_owners: dict[int, str] | None = None):
    inv = gpus.Inventory(
        (
            gpus.Gpu(0, "GPU-aaaa", H100, 40960, 81920, 97, False),
            gpus.Gpu(1, "GPU-bbbb", H100, 0, 81920, 0, False),
        ),
        processes,
    )
    return allocation.GpuReport(inv, {"0": "ana/train"}, pid_owners or {}, None)


def test_my_boxes_are_plain_and_a_colleagues_dimmed_with_unknown_jobs() -> None:
    mine, theirs = _box("train"), _box("eval", owner="bo")
    view = HostView(LOCAL_HOST, "ana", (mine, theirs), jobs={"train": ()}, taken_at=time.time())
    my_cells = render.box_cells(view, mine, now=render.parse_time(mine.started) + 3700)
    their_cells = render.box_cells(view, theirs)
    assert [c.plain for c in my_cells] == [
        "local",
        "train",
        "ana",
        "running",
        "0",
        "devbox-train",
        "1h01m",
        "0",
    ]
    assert "dim" not in str(my_cells[0].style)
    assert "dim" in str(their_cells[0].style)
    assert their_cells[7].plain == "-"  # jobs of someone else's box are not read


def test_gpu_panel_names_holders_and_flags_processes_outside_boxes_and_in_the_wrong_box() -> None:
    procs = (gpus.GpuProcess("GPU-aaaa", 11, "python", 100), gpus.GpuProcess("GPU-bbbb", 22, "python3", 50))
    report = _report(procs, {22: "ana/train"})
    view = HostView(LOCAL_HOST, "ana", (), gpus=report, taken_at=time.time())
    text = render.gpu_panel([view]).plain
    assert f"2× {H100}" in text
    assert " 0 " in text and "40/80G" in text and "97%" in text and "ana/train" in text
    assert "free" in text  # GPU 1
    assert "GPU 0 pid 11 python: outside devbox" in text
    assert "GPU 1 pid 22 python3: ana/train does not hold this GPU" in text


def _sensor_view(*cards: gpus.Gpu) -> HostView:
    report = allocation.GpuReport(gpus.Inventory(cards), {"0": "ana/train"}, {}, None)
    return HostView(LOCAL_HOST, "ana", (), gpus=report, taken_at=time.time())


def test_gpu_panel_shows_temperature_and_power_in_columns_that_line_up() -> None:
    view = _sensor_view(
        gpus.Gpu(0, "GPU-aaaa", H100, 40960, 81920, 97, False, 61, 612.47, 700.0),
        gpus.Gpu(1, "GPU-bbbb", H100, 0, 81920, 0, False, 31, 71.08, 700.0),
    )
    lines = render.gpu_panel([view]).plain.splitlines()
    assert lines[1] == " 0 █████░░░░░ 40/80G   97% 61°C 612/700W ana/train"
    assert lines[2] == " 1 ░░░░░░░░░░ 0/80G     0% 31°C  71/700W free"
    # Short enough that at 80 columns (a 26-column panel) the wrapped rest still fits one line.
    assert len("61°C 612/700W ana/train") <= 26


def test_gpu_panel_leaves_out_what_no_gpu_of_the_host_reports() -> None:
    laptop = gpus.Gpu(0, "GPU-aaaa", "NVIDIA GeForce RTX 3060 Laptop GPU", 1203, 6144, 12, None, 46)
    assert render.gpu_panel([_sensor_view(laptop)]).plain.splitlines()[1] == (
        " 0 ██░░░░░░░░ 1/6G     12% 46°C ana/train"
    )
    old_driver = gpus.Gpu(0, "GPU-aaaa", H100, 40960, 81920, 97, False)
    assert render.gpu_panel([_sensor_view(old_driver)]).plain.splitlines()[1] == (
        " 0 █████░░░░░ 40/80G   97% ana/train"
    )


def test_gpu_panel_pads_a_gpu_missing_a_figure_and_shows_partial_power() -> None:
    view = _sensor_view(
        gpus.Gpu(0, "GPU-aaaa", H100, 0, 81920, 0, False, None, None, 700.0),
        gpus.Gpu(1, "GPU-bbbb", H100, 0, 81920, 0, False, 102, 655.1, None),
    )
    lines = render.gpu_panel([view]).plain.splitlines()
    assert lines[1].endswith("0%       ?/700W ana/train")
    assert lines[2].endswith("0% 102°C   655W free")


def test_a_hot_gpu_reads_red() -> None:
    hot = gpus.Gpu(0, "GPU-aaaa", H100, 0, 81920, 0, False, render.HOT_C, 650.0, 700.0)
    cool = gpus.Gpu(1, "GPU-bbbb", H100, 0, 81920, 0, False, render.HOT_C - 1, 650.0, 700.0)
    panel = render.gpu_panel([_sensor_view(hot, cool)])
    red = {panel.plain[span.start : span.end] for span in panel.spans if "red" in str(span.style)}
    assert red == {f"{render.HOT_C}°C"}


def test_a_process_in_the_box_that_holds_the_gpu_is_not_flagged() -> None:
    report = _report((gpus.GpuProcess("GPU-AAAA", 11, "python", 100),), {11: "ana/train"})
    assert overview.flagged_processes(report) == []


def test_unreachable_host_and_freshness_show_in_status_and_panel() -> None:
    now = time.time()
    up = HostView(LOCAL_HOST, "ana", taken_at=now - 3)
    down = HostView(Host("gpu1", "ana@gpu1"), error="no answer within 25 s", taken_at=now)
    assert render.status_line([up, down], now) == "devbox · local updated 3s ago · gpu1 unreachable"
    assert "gpu1  unreachable: no answer within 25 s" in render.gpu_panel([down]).plain
    assert [c.plain for c in render.unreachable_cells(down)][:4] == ["gpu1", "-", "-", "unreachable"]


def test_details_show_image_mounts_limits_and_ssh_command() -> None:
    box = _box("train")
    text = render.details(HostView(LOCAL_HOST, "ana", (box,)), box).plain
    assert "ubuntu:24.04" in text
    assert "/data:/workspace/data:ro" in text
    assert "memory 64g, cpus 8, shm 8g" in text
    assert "ssh devbox-train" in text


def test_a_colleagues_box_is_refused_before_any_engine_call() -> None:
    box = _box("eval", owner="bo")
    view = HostView(LOCAL_HOST, "ana", (box,))
    try:
        overview.refuse_foreign(view, box)
    except Exception as exc:  # noqa: BLE001 - the type is the point of the next line
        assert type(exc).__name__ == "UsageError"
        assert "belongs to bo" in str(exc.message)  # type: ignore[attr-defined]
    else:
        raise AssertionError("acting on bo's box was not refused")


def test_bars_spans_filter_and_log_search() -> None:
    assert render.bar(None, 100).plain.strip() == "n/a"
    assert render.bar(50, 100, 8).plain == "████░░░░"
    assert render.bar(100, 100, 4).plain == "████"
    assert [render.span(s) for s in (5, 65, 3700, 90000)] == ["5s", "1m05s", "1h01m", "1d01h"]
    assert render.parse_time("0001-01-01T00:00:00Z") is not None
    assert render.parse_time("garbage") is None
    view = HostView(LOCAL_HOST, "ana")
    assert render.matches(view, _box("train"), "TRA")
    assert not render.matches(view, _box("train"), "eval")
    assert render.log_lines("a\nepoch 1\nb\nEpoch 2", "epoch") == ["epoch 1", "Epoch 2"]
    assert render.help_rows([("q", "Quit"), ("q", "Quit again"), ("x", "")]) == [("q", "Quit")]


def test_find_locates_a_box_by_host_owner_and_name() -> None:
    a, b = _box("same"), _box("same", owner="bo")
    views = [HostView(LOCAL_HOST, "ana", (a, b))]
    assert overview.find(views, "local", "same", "bo") == (views[0], b)
    assert overview.find(views, "gpu1", "same", "bo") is None


def test_details_show_the_ports_a_box_forwards_and_where() -> None:
    view = HostView(LOCAL_HOST, "ana", (), None, "", {}, {}, None, 0.0)
    shown = render.details(view, make_box(ports=("8888", "6006:16006"))).plain
    assert "ports    8888 → 127.0.0.1:8888  6006 → 127.0.0.1:16006" in shown
    assert "ports" not in render.details(view, make_box()).plain
