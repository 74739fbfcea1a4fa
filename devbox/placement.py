"""Placement: which host gets a box when the user says `--host auto`.

Every host is asked at once; a host fits when it has enough GPUs no running box holds. The best
fit has the fewest GPUs held, then the most free GPU memory. Allocation then happens under that
host's own engine lock exactly as for `--host NAME`; if another client took the GPUs meanwhile,
the next candidate is tried.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devbox import allocation, gpus
from devbox.boxes import UpResult, up
from devbox.engine import Engine
from devbox.errors import GpuBusyError, UsageError
from devbox.hosts import Host, HostResult, across, box_host, load
from devbox.keys.keypair import Identity
from devbox.spec import BoxSpec, HostFacts

SURVEY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Survey:
    """One host's GPUs as placement sees them."""

    total: int
    free: int
    held: int
    free_memory_mib: int  # unused memory on the free GPUs


@dataclass(frozen=True)
class Placed:
    result: UpResult
    host: Host
    why: str  # why this host: "3 of 4 GPUs free, 150 GiB free"
    skipped: tuple[str, ...]  # "gpu1: only 1 of 2 GPUs free", one per host passed over


def survey(engine: Engine) -> Survey:
    inv = allocation.inventory(engine, required=True)
    assert inv is not None
    held = allocation.held_gpus(engine, inv)
    free = [] if gpus.ALL in held else [g for g in inv.gpus if str(g.index) not in held]
    memory = sum((g.memory_total_mib or 0) - (g.memory_used_mib or 0) for g in free)
    return Survey(len(inv.gpus), len(free), len(inv.gpus) - len(free), memory)


def needed(spec: BoxSpec) -> int | None:
    """GPUs the box needs free on one host; None for `all` (every GPU of the host)."""
    if spec.gpus.kind == "count":
        return spec.gpus.gpu_count
    if spec.gpus.kind == "all":
        return None
    raise UsageError("--host auto needs --gpu-count N or --gpus all", "or name a host with --host NAME")


def rank(
    results: Sequence[HostResult[Survey]], count: int | None
) -> tuple[list[HostResult[Survey]], list[str]]:
    """Hosts that fit, best first, and one line per host that does not, saying why."""
    fits: list[HostResult[Survey]] = []
    skipped: list[str] = []
    for r in results:
        s = r.value
        if s is None:
            skipped.append(f"{r.host.name}: unreachable ({r.error})")
        elif count is None and (s.held or not s.total):
            skipped.append(
                f"{r.host.name}: {s.held} of {s.total} GPUs held (--gpus all needs every one free)"
            )
        elif count is not None and s.free < count:
            skipped.append(f"{r.host.name}: only {s.free} of {s.total} GPUs free")
        else:
            fits.append(r)
    fits.sort(key=lambda r: (r.value.held, -r.value.free_memory_mib, r.host.name) if r.value else ())
    return fits, skipped


def describe(s: Survey) -> str:
    return f"{s.free} of {s.total} GPUs free, {s.free_memory_mib / 1024:.0f} GiB free GPU memory"


def up_anywhere(
    hosts: Sequence[Host],
    make_spec: Callable[[HostFacts], BoxSpec],
    identity: Identity,
    *,
    ssh_config: Path | None = None,
    progress: Callable[[str], None] = lambda _line: None,
    **up_options: Any,
) -> Placed:
    """Create the box on the best host that fits; raises GpuBusyError naming why each host failed.

    `up_options` go to boxes.up as they are.
    """
    request = make_spec(HostFacts.unchecked())  # the name and GPU request: the same for every host
    home = box_host(load(), request.name)
    if home is not None:
        # The box exists already: `up` starts it where it is.
        engine = Engine.connect(home, ssh_config=ssh_config)
        result = up(
            engine,
            make_spec(engine.facts()),
            identity,
            ssh_config=ssh_config,
            progress=progress,
            **up_options,
        )
        return Placed(result, home, "the box is there already", ())
    count = needed(request)
    progress(f"Asking {len(hosts)} host(s) for free GPUs")
    fits, skipped = rank(across(hosts, survey, timeout=SURVEY_TIMEOUT_S, ssh_config=ssh_config), count)
    for r in fits:
        assert r.engine is not None and r.value is not None
        progress(f"Trying {r.host.name}: {describe(r.value)}")
        spec = make_spec(r.engine.facts())
        try:
            result = up(r.engine, spec, identity, ssh_config=ssh_config, progress=progress, **up_options)
        except GpuBusyError as exc:
            # Another client won the race for these GPUs: its lock was first. Try the next host.
            skipped.append(f"{r.host.name}: taken meanwhile ({exc.message})")
            continue
        return Placed(result, r.host, describe(r.value), tuple(skipped))
    want = "every GPU free" if count is None else f"{count} free GPU(s)"
    raise GpuBusyError(f"no host has {want}: " + "; ".join(skipped), "wait for GPUs, or add a host")
