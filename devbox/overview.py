"""The fleet at a glance: every host's boxes, GPUs and jobs in one read.

`devbox tui` redraws from this every couple of seconds and `devbox ls --jobs` prints it, so both
front ends show the same facts. A host that does not answer is a view with an error, never an
exception: one dead server must not hide the others.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from devbox import allocation, hosts
from devbox.boxes import Box, list_boxes
from devbox.errors import DevboxError, UsageError

if TYPE_CHECKING:
    from devbox.engine import Engine
    from devbox.gpus import GpuProcess
    from devbox.hosts import Host
    from devbox.jobs import Job

# Job lists are one `docker exec` per box: a few at a time keeps a host with many boxes quick
# without flooding its engine.
JOB_READERS = 8


@dataclass(frozen=True)
class Flagged:
    """A GPU process in the wrong place: outside every box, or in a box that does not hold its GPU."""

    gpu: int | None  # index on the host; None when nvidia-smi named a GPU it did not list
    pid: int
    process: str
    box: str  # owner/name of the box it runs in, "" for none
    why: str


@dataclass(frozen=True)
class HostView:
    """One host as seen at `taken_at`: its boxes (everyone's), GPUs and my running boxes' jobs."""

    host: Host
    me: str = ""  # who devbox runs as on that host: the owner of "my" boxes
    boxes: tuple[Box, ...] = ()
    gpus: allocation.GpuReport | None = None
    gpu_note: str = ""  # why there is no GPU report (no driver, nvidia-smi failed)
    jobs: Mapping[str, tuple[Job, ...]] = field(default_factory=dict)  # box name → its jobs
    job_errors: Mapping[str, str] = field(default_factory=dict)  # box name → why its jobs are unknown
    error: str | None = None  # the host did not answer
    taken_at: float = 0.0

    @property
    def reachable(self) -> bool:
        return self.error is None

    def mine(self, box: Box) -> bool:
        return box.owner == self.me

    def running_jobs(self, box: Box) -> int | None:
        """How many of the box's jobs run; None when unknown (not mine, stopped, or unreadable)."""
        if box.name not in self.jobs or not self.mine(box):
            return None
        return sum(1 for j in self.jobs[box.name] if j.running)

    def flagged(self) -> list[Flagged]:
        return flagged_processes(self.gpus) if self.gpus else []


def look(
    targets: Sequence[Host],
    *,
    with_jobs: bool = True,
    timeout: float = hosts.FLEET_TIMEOUT_S,
    ssh_config: Path | None = None,
) -> list[HostView]:
    """Ask every host at once; each answers with a view or an error within `timeout`."""
    results = hosts.across(targets, lambda e: _view(e, with_jobs), timeout=timeout, ssh_config=ssh_config)
    now = time.time()
    return [r.value or HostView(r.host, error=r.error or "no answer", taken_at=now) for r in results]


def _view(engine: Engine, with_jobs: bool) -> HostView:
    me = engine.owner
    found = list_boxes(engine)
    report, note = _gpu_report(engine)
    jobs: dict[str, tuple[Job, ...]] = {}
    errors: dict[str, str] = {}
    if with_jobs:
        jobs, errors = _jobs_of(engine, [b for b in found if b.owner == me and b.running])
    return HostView(
        engine.host, me, tuple(_mine_first(found, me)), report, note, jobs, errors, None, time.time()
    )


def _mine_first(found: list[Box], me: str) -> list[Box]:
    return sorted(found, key=lambda b: (b.owner != me, b.owner, b.name))


def _gpu_report(engine: Engine) -> tuple[allocation.GpuReport | None, str]:
    try:
        return allocation.report(engine, probe=False), ""
    except DevboxError as exc:
        return None, exc.message


def _jobs_of(engine: Engine, running: list[Box]) -> tuple[dict[str, tuple[Job, ...]], dict[str, str]]:
    from devbox import jobs

    found: dict[str, tuple[Job, ...]] = {}
    errors: dict[str, str] = {}

    def read(box: Box) -> None:
        try:
            found[box.name] = tuple(jobs.list_jobs(engine, box))
        except DevboxError as exc:
            errors[box.name] = exc.message
        except Exception as exc:  # a box removed mid-read, an engine hiccup: that box only
            errors[box.name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    if running:
        with ThreadPoolExecutor(min(JOB_READERS, len(running))) as pool:
            list(pool.map(read, running))
    return found, errors


def flagged_processes(report: allocation.GpuReport) -> list[Flagged]:
    """Processes on a GPU outside any box, or inside a box that does not hold that GPU."""
    index_of = {g.uuid.lower(): g.index for g in report.inventory.gpus}
    flagged = []
    for proc in report.inventory.processes:
        gpu = index_of.get(proc.gpu_uuid.lower())
        box = report.pid_owners.get(proc.pid, "")
        why = _misplaced(proc, gpu, box, report.holders)
        if why:
            flagged.append(Flagged(gpu, proc.pid, proc.process_name, box, why))
    return flagged


def _misplaced(proc: GpuProcess, gpu: int | None, box: str, holders: Mapping[str, str]) -> str:
    if not box:
        return "outside devbox"
    held_by = holders.get(str(gpu), "") if gpu is not None else ""
    if box not in held_by.split(", "):
        return f"{box} does not hold this GPU" + (f" ({held_by} does)" if held_by else "")
    return ""


def refuse_foreign(view: HostView, box: Box) -> None:
    """devbox acts only on your own boxes; say so before asking the engine."""
    if not view.mine(box):
        raise UsageError(
            f"box {box.name} on {view.host.name} belongs to {box.owner}",
            f"ask {box.owner} to change it; devbox acts only on your own boxes",
        )


def find(views: Sequence[HostView], host: str, name: str, owner: str) -> tuple[HostView, Box] | None:
    """The view and box for (host, owner/name), if that host still lists it."""
    for view in views:
        for box in view.boxes if view.host.name == host else ():
            if box.name == name and box.owner == owner:
                return view, box
    return None
