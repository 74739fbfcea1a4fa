"""Which box holds which GPU on an engine, and taking GPUs without colliding with anyone.

Holders come from Docker labels of running boxes (any owner). Choosing, claiming (creating the
labelled container) and starting happen under one engine-wide lock, so concurrent `up`/`start`
runs — of one user or of several, from one client or several — never end up on the same GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devbox import gpus
from devbox.engine import Engine, L, Listed, describe_error
from devbox.errors import DevboxError, GpuBusyError

if TYPE_CHECKING:
    from docker.models.containers import Container

    from devbox.spec import BoxSpec

RUNNING_STATES = ("running", "restarting", "paused")
LOCK = "gpus"


def inventory(engine: Engine, required: bool) -> gpus.Inventory | None:
    """The engine host's GPUs; None when it has no nvidia-smi and the caller can do without."""
    try:
        return gpus.read_inventory(engine.run_on_host)
    except DevboxError:
        if required:
            raise
        return None


def _holder(c: Container | Listed) -> str:
    return f"{c.labels.get(L('owner'), '?')}/{c.labels[L('name')]}"


def held_gpus(engine: Engine, inv: gpus.Inventory | None, exclude: str | None = None) -> dict[str, str]:
    """GPU index → 'owner/name' of the running box holding it (any owner); a GPU shared with
    --share-gpus names every box on it, sorted."""
    held: dict[str, list[str]] = {}
    for c in engine.listed():
        if c.status not in RUNNING_STATES or c.id == exclude:
            continue
        label = c.labels.get(L("gpus"), "")
        ids = [str(i) for i in inv.indices()] if label == gpus.ALL and inv else gpus.parse_label(label)
        for gpu in ids:
            held.setdefault(gpu, []).append(_holder(c))
    return {gpu: ", ".join(sorted(holders)) for gpu, holders in held.items()}


def choose(engine: Engine, spec: BoxSpec) -> tuple[str, ...]:
    """The device IDs `spec` gets; call with the engine lock held. Raises naming the holders."""
    if spec.gpus.kind == "none":
        return ()
    # Plain indices work on a host without nvidia-smi (the user may know better than the
    # inventory); `all`, UUIDs and counts need to know what is there.
    inv = inventory(engine, required=spec.gpus.kind != "indices")
    held = {} if spec.share_gpus else held_gpus(engine, inv)
    if spec.gpus.kind == "count":
        assert inv is not None
        return gpus.pick_free(inv, held, spec.gpus.gpu_count)
    wanted = gpus.resolve(spec.gpus, inv)
    refuse_conflicts(wanted, held)
    return wanted


def refuse_conflicts(wanted: tuple[str, ...], held: dict[str, str]) -> None:
    conflicts = gpus.find_conflicts(wanted, held)
    if conflicts:
        raise gpus.conflict_error(conflicts)


def start_checked(
    engine: Engine, container: Container, share: bool, progress: Callable[[str], None] | None = None
) -> None:
    """Start a stopped box unless another running box took its GPUs meanwhile. `progress` hears
    who holds the engine lock when this has to wait for it."""
    import docker

    name = container.labels[L("name")]
    with engine.lock(LOCK, container.attrs["Config"]["Image"], on_wait=progress):
        wanted = gpus.parse_label(container.labels.get(L("gpus"), ""))
        if wanted and not share and container.labels.get(L("share-gpus")) != "1":
            inv = inventory(engine, required=False)
            if wanted == (gpus.ALL,) and inv:
                wanted = tuple(str(i) for i in inv.indices())
            try:
                refuse_conflicts(wanted, held_gpus(engine, inv, exclude=container.id))
            except GpuBusyError as exc:
                raise _start_refusal(exc, name) from None
        try:
            container.start()
        except docker.errors.APIError as exc:
            raise DevboxError(
                f"cannot start {name}: {describe_error(exc)}",
                "if its port is taken by another program, recreate the box (`devbox rm` then `devbox up`)",
            ) from None
        try:
            refuse_if_outraced(engine, container, share=share)
        except GpuBusyError as exc:
            container.stop(timeout=5)
            raise _start_refusal(exc, name) from None


def _start_refusal(exc: GpuBusyError, name: str) -> GpuBusyError:
    """A stopped box keeps the GPUs it was made with: the hint offers only what `start` can do
    (`up`'s --gpus and --gpu-count would not apply)."""
    return GpuBusyError(
        exc.message,
        f"wait until they are free (stop the box holding them if it is yours), "
        f"or share them: `devbox start {name} --share-gpus`",
    )


def refuse_if_outraced(engine: Engine, container: Container, share: bool = False) -> None:
    """Call right after starting `container`: if a running box that started first holds one of its
    GPUs, this one lost a race it should never have been in (a lock wrongly broken, a client
    without the lock) and backs off with GpuBusyError. The first one started keeps the GPU.
    A box made to share its GPUs, or started with `share` (`start --share-gpus`), races no one."""
    mine = set(gpus.parse_label(container.labels.get(L("gpus"), "")))
    if not mine or share or container.labels.get(L("share-gpus")) == "1":
        return
    my_start = _started(engine, container.id)
    rivals = {}
    for c in engine.listed():
        if c.id == container.id or c.status not in RUNNING_STATES or c.labels.get(L("share-gpus")) == "1":
            continue
        theirs = set(gpus.parse_label(c.labels.get(L("gpus"), "")))
        # "all" (a box made without an inventory) overlaps every GPU.
        overlap = theirs if theirs and gpus.ALL in mine | theirs else mine & theirs
        if overlap and (_started(engine, c.id), c.id) < (my_start, container.id):
            rivals.update(dict.fromkeys(sorted(overlap), _holder(c)))
    if rivals:
        raise gpus.conflict_error(rivals)


def _started(engine: Engine, container_id: str) -> str:
    # RFC 3339 in UTC from one engine: such strings sort as the times do, to the nanosecond.
    return str(engine.client.api.inspect_container(container_id)["State"].get("StartedAt") or "")


@dataclass(frozen=True)
class GpuReport:
    """What `devbox gpus` shows: the inventory, who holds what, and whose processes run where."""

    inventory: gpus.Inventory
    holders: dict[str, str]  # GPU index → owner/name
    pid_owners: dict[int, str]  # host PID → owner/name, for GPU processes inside boxes
    docker_gpus: bool | None  # can this engine pass GPUs to containers? None: could not tell

    def foreign_processes(self) -> list[gpus.GpuProcess]:
        """GPU processes no devbox owns: someone training outside devbox."""
        return [p for p in self.inventory.processes if p.pid not in self.pid_owners]

    def to_json(self) -> dict[str, object]:
        """`devbox gpus --json`: the inventory, each process's box (null: not a devbox), Docker's support."""
        data = gpus.inventory_to_json(self.inventory, self.holders)
        rows: list[dict[str, Any]] = data["gpus"]  # type: ignore[assignment]
        for gpu in rows:
            for proc in gpu["processes"]:
                proc["box"] = self.pid_owners.get(proc["pid"])
        data["docker_gpus"] = self.docker_gpus
        return data


def report(engine: Engine, *, probe: bool = True) -> GpuReport:
    """The host's GPUs and holders. `probe=False` skips the throwaway container that tests
    Docker's GPU support (a screen refreshing every few seconds must not start containers)."""
    inv = inventory(engine, required=True)
    assert inv is not None
    # Whose processes they are takes a `top` per running box: only worth asking when some run.
    owners = _box_pids(engine) if inv.processes else {}
    return GpuReport(inv, held_gpus(engine, inv), owners, docker_gpu_support(engine, probe=probe))


def _box_pids(engine: Engine) -> dict[int, str]:
    """Host PIDs of every process in running boxes (Docker's `top` reports host PIDs)."""
    import docker

    owners: dict[int, str] = {}
    for c in engine.listed():
        if c.status != "running":
            continue
        with contextlib.suppress(docker.errors.APIError):
            top = engine.client.api.top(c.id, ps_args="-eo pid")
            for row in top.get("Processes") or []:
                owners[int(row[0])] = _holder(c)
    return owners


def docker_gpu_support(engine: Engine, *, probe: bool = True) -> bool | None:
    """Whether the engine can start a container with `--gpus` (NVIDIA runtime hook or runtime present)."""
    import docker

    info = engine.client.info()
    if "nvidia" in (info.get("Runtimes") or {}):
        return True
    if not probe:
        return None
    # devbox's own layer images: known to have `true`, and to be meant to run here.
    images = engine.client.images.list(name="devbox-layer")
    if not images:
        return None
    # The only reliable test: start a throwaway container that asks for every GPU.
    from docker.types import DeviceRequest

    probe = engine.client.containers.create(
        images[0].id,
        entrypoint=["true"],
        device_requests=[DeviceRequest(driver="nvidia", count=-1, capabilities=[["gpu"]])],
        labels={L("probe"): "gpus"},
    )
    try:
        probe.start()
        return True
    except docker.errors.APIError as exc:
        return False if "could not select device driver" in str(exc) else None
    finally:
        probe.remove(force=True)
