"""What the TUI's panels show, as plain data and rich Text: no widgets here, so tests can check
the words a person sees without a terminal."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime

from rich.text import Text

from devbox.boxes import Box
from devbox.gpus import Gpu
from devbox.jobs import Job
from devbox.overview import HostView

BOX_COLUMNS = ("HOST", "NAME", "OWNER", "STATE", "GPUS", "SSH", "UP", "JOBS")
JOB_COLUMNS = ("JOB", "STATE", "TIME", "LAST LINE")
BAR_WIDTH = 12
# Data-centre GPUs slow themselves down at around 85-90 °C (each one's "GPU Slowdown Temp" in
# `nvidia-smi -q`): a GPU this hot is worth a glance before its job gets slower.
HOT_C = 85


def box_key(view: HostView, box: Box) -> str:
    """A row's identity across refreshes (host, owner and name), so the cursor stays on it."""
    return f"{view.host.name}\x1f{box.owner}\x1f{box.name}"


def split_key(key: str) -> tuple[str, str, str]:
    host, owner, name = key.split("\x1f")
    return host, owner, name


def matches(view: HostView, box: Box, needle: str) -> bool:
    """The `/` filter: a case-blind substring of host, name, owner, state, image or GPUs."""
    if not needle:
        return True
    hay = " ".join((view.host.name, box.name, box.owner, box.status, box.image, ",".join(box.gpus)))
    return needle.lower() in hay.lower()


def box_cells(view: HostView, box: Box, now: float | None = None) -> tuple[Text, ...]:
    """One row of the boxes table; other people's boxes dimmed."""
    running = view.running_jobs(box)
    cells = (
        view.host.name,
        box.name,
        box.owner,
        box.status,
        ",".join(box.gpus) or "-",
        box.alias,
        uptime(box, now) if box.running else "-",
        "-" if running is None else str(running),
    )
    style = "" if view.mine(box) else "dim"
    state_style = "green" if box.running else "yellow" if box.status in ("created", "exited") else "red"
    return tuple(
        Text(cell, style=f"{style} {state_style}".strip() if i == 3 else style)
        for i, cell in enumerate(cells)
    )


def unreachable_cells(view: HostView) -> tuple[Text, ...]:
    return (
        Text(view.host.name, style="bold red"),
        Text("-"),
        Text("-"),
        Text("unreachable", style="bold red"),
        *(Text("-") for _ in BOX_COLUMNS[4:]),
    )


def uptime(box: Box, now: float | None = None) -> str:
    started = parse_time(box.started)
    return span((now or time.time()) - started) if started else "-"


def parse_time(stamp: str) -> float | None:
    """Docker's RFC 3339 time (nanoseconds, Z) as epoch seconds."""
    if not stamp:
        return None
    head, _, frac = stamp.rstrip("Z").partition(".")
    try:
        base = datetime.fromisoformat(head + "+00:00").timestamp()
    except ValueError:
        return None
    digits = "".join(ch for ch in frac if ch.isdigit())[:6]
    return base + (int(digits) / 10 ** len(digits) if digits else 0.0)


def span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def job_cells(job: Job, now: float | None = None) -> tuple[Text, ...]:
    style = {"running": "green", "exited": "" if job.exit_code == 0 else "red"}.get(job.state, "yellow")
    return (
        Text(job.name),
        Text(job.describe(), style=style),
        Text(span(job.duration(now))),
        Text(job.last_line[:200]),
    )


def bar(used: int | None, total: int | None, width: int = BAR_WIDTH) -> Text:
    """A meter such as `████▌░░░░░░░`; unknown values read n/a."""
    if used is None or not total:
        return Text("n/a".ljust(width), style="dim")
    fraction = max(0.0, min(1.0, used / total))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")
    style = "red" if fraction > 0.9 else "yellow" if fraction > 0.6 else "green"
    return Text(text.ljust(width, "░")[:width], style=style)


def gpu_panel(views: Sequence[HostView]) -> Text:
    """Per host: each GPU's model, memory bar, utilization, temperature and power where reported,
    holder; then flagged processes."""
    # One line per GPU, cut rather than wrapped: a narrow terminal still reads as a table.
    out = Text(no_wrap=True, overflow="ellipsis")
    for view in views:
        out.append(f"{view.host.name}", style="bold")
        if not view.reachable:
            out.append(f"  unreachable: {view.error}\n", style="red")
            continue
        if view.gpus is None:
            out.append(f"  no GPUs: {view.gpu_note}\n", style="dim")
            continue
        inv = view.gpus.inventory
        model = inv.gpus[0].name if inv.gpus else "no GPUs"
        out.append(f"  {len(inv.gpus)}× {model}\n", style="bold")
        for gpu, sensors in zip(inv.gpus, _sensor_cells(inv.gpus), strict=True):
            out.append_text(_gpu_line(view, gpu, sensors))
        for flag in view.flagged():
            where = f"GPU {flag.gpu}" if flag.gpu is not None else "a GPU"
            out.append(f" ⚠ {where} pid {flag.pid} {flag.process}: {flag.why}\n", style="yellow")
    return out


def _gpu_line(view: HostView, gpu: Gpu, sensors: Text) -> Text:
    """` 0 ████▌░░░░░ 41/80G  97% 61°C 612/700W alice/train`: memory bar, memory, utilization,
    `sensors` (from _sensor_cells), holder."""
    assert view.gpus is not None
    holder = view.gpus.holders.get(str(gpu.index), "")
    line = Text(f"{gpu.index:>2} ")
    line.append_text(bar(gpu.memory_used_mib, gpu.memory_total_mib, 10))
    line.append(f" {_gib(gpu.memory_used_mib)}/{_gib(gpu.memory_total_mib)}G".ljust(9))
    pct = "n/a" if gpu.utilization_pct is None else f"{gpu.utilization_pct}%"
    line.append(f"{pct:>4} ", style="bold" if (gpu.utilization_pct or 0) > 50 else "")
    line.append_text(sensors)
    mine = any(h.split("/")[0] == view.me for h in holder.split(", ")) if holder else False
    line.append(holder or "free", style="bold" if mine else "" if holder else "dim")
    line.append("\n")
    return line


def _sensor_cells(gpus: Sequence[Gpu]) -> list[Text]:
    """Each GPU's `61°C 612/700W `, padded so one host's columns line up; a column no GPU of the
    host reports is left out, so a host without sensors reads as before."""
    temps = ["" if g.temperature_c is None else f"{g.temperature_c}°C" for g in gpus]
    powers = [_power(g) for g in gpus]
    temp_width, power_width = max(map(len, temps), default=0), max(map(len, powers), default=0)
    cells = []
    for gpu, temp, power in zip(gpus, temps, powers, strict=True):
        cell = Text()
        if temp_width:
            cell.append(temp.rjust(temp_width), style="bold red" if (gpu.temperature_c or 0) >= HOT_C else "")
            cell.append(" ")
        if power_width:
            cell.append(f"{power.rjust(power_width)} ")
        cells.append(cell)
    return cells


def _power(gpu: Gpu) -> str:
    """`612/700W` in whole watts, `612W` without a limit, "" when neither is reported."""
    if gpu.power_draw_w is None and gpu.power_limit_w is None:
        return ""
    draw = "?" if gpu.power_draw_w is None else f"{gpu.power_draw_w:.0f}"
    return f"{draw}W" if gpu.power_limit_w is None else f"{draw}/{gpu.power_limit_w:.0f}W"


def _gib(mib: int | None) -> str:
    return "?" if mib is None else str(round(mib / 1024))


def _forward(port: str) -> str:
    box, _, local = port.partition(":")
    return f"{box} → 127.0.0.1:{local or box}"


def details(view: HostView, box: Box) -> Text:
    """The selected box: where it runs, what it is made of, how to reach it."""
    out = Text()
    rows = [
        ("box", f"{box.name} on {view.host.name}"),
        ("owner", box.owner + ("" if view.mine(box) else "  (not yours: view only)")),
        ("state", box.status + (f", up {uptime(box)}" if box.running else "")),
        ("image", box.image or "-"),
        ("gpus", ",".join(box.gpus) or "none"),
        ("mounts", "\n         ".join(box.mounts) or "-"),
        ("limits", resources(box)),
        ("workdir", box.workdir or "-"),
        ("ssh", f"ssh {box.alias}"),
    ]
    if box.ports:  # as made: `up --port` may have changed the entry since (`devbox ssh-config NAME`)
        rows.append(("ports", "  ".join(_forward(p) for p in box.ports)))
    for label, value in rows:
        out.append(f"{label:<8} ", style="bold")
        out.append(f"{value}\n")
    return out


def resources(box: Box) -> str:
    parts = [
        f"memory {_bytes(box.memory)}" if box.memory else "memory -",
        f"cpus {box.cpus:g}" if box.cpus else "cpus -",
        f"shm {_bytes(box.shm_size)}" if box.shm_size else "shm -",
    ]
    return ", ".join(parts)


def _bytes(n: int) -> str:
    for unit, size in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}b"


def status_line(views: Sequence[HostView], now: float | None = None) -> str:
    """'devbox · local ✓ 2s ago · gpu1 unreachable' — how fresh each host's data is."""
    now = now or time.time()
    parts = []
    for view in views:
        age = span(now - view.taken_at) if view.taken_at else "?"
        parts.append(f"{view.host.name} {'updated ' + age + ' ago' if view.reachable else 'unreachable'}")
    return "devbox · " + " · ".join(parts) if parts else "devbox · loading…"


def log_lines(text: str, needle: str = "") -> list[str]:
    """A job log's lines, only those holding `needle` when searching."""
    lines = text.splitlines()
    return [line for line in lines if needle.lower() in line.lower()] if needle else lines


def help_rows(bindings: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(key, what it does) for the `?` screen, each key once, in the order they are bound."""
    seen: set[str] = set()
    rows = []
    for key, description in bindings:
        if description and key not in seen:
            seen.add(key)
            rows.append((key, description))
    return rows
