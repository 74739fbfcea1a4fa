"""Box lifecycle: up, start, stop, restart, rm, ls. The CLI and the TUI both call these."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

from devbox import __version__, allocation, gpus, paths, sshclient, sshconfig, vscode
from devbox.allocation import RUNNING_STATES
from devbox.engine import Engine, L, describe_error
from devbox.errors import DevboxError, NotFoundError, UsageError
from devbox.image import ensure_image
from devbox.keys import known_hosts
from devbox.keys.keypair import Identity, generate_ed25519
from devbox.spec import BoxSpec, owner_name

if TYPE_CHECKING:
    from docker.models.containers import Container

Progress = Callable[[str], None]
READY_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Box:
    """A box as Docker's labels and state describe it."""

    name: str
    owner: str
    user: str
    uid: int
    gid: int
    status: str
    port: int
    gpus: tuple[str, ...]
    gpu_request: str
    image: str
    workdir: str
    volume: str
    container: str
    container_id: str
    identity: str

    @property
    def running(self) -> bool:
        return self.status in RUNNING_STATES

    @property
    def alias(self) -> str:
        return sshconfig.host_alias(self.name)

    @property
    def target(self) -> sshclient.Target:
        return sshclient.Target(self.alias, self.port, self.user)

    @classmethod
    def from_container(cls, c: Container) -> Box:
        lb = c.labels
        return cls(
            name=lb[L("name")],
            owner=lb.get(L("owner"), "?"),
            user=lb.get(L("user"), "?"),
            uid=int(lb.get(L("uid"), "0")),
            gid=int(lb.get(L("gid"), "0")),
            status=c.status,
            port=int(lb.get(L("port"), "0")),
            gpus=gpus.parse_label(lb.get(L("gpus"), "")),
            gpu_request=lb.get(L("gpu-request"), "none"),
            image=lb.get(L("image"), ""),
            workdir=lb.get(L("workdir"), ""),
            volume=lb.get(L("volume"), ""),
            container=c.name,
            container_id=c.id,
            identity=lb.get(L("identity"), ""),
        )


@dataclass(frozen=True)
class UpResult:
    box: Box
    created: bool
    built: bool
    ssh: sshconfig.IncludeResult


def container_name(owner: str, name: str) -> str:
    safe_owner = "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in owner)
    return f"devbox-{safe_owner}-{name}"


def list_boxes(engine: Engine, owner: str | None = None) -> list[Box]:
    """The owner's boxes (everyone's when owner is None), sorted by owner then name."""
    boxes = [Box.from_container(c) for c in engine.boxes(owner=owner)]
    return sorted(boxes, key=lambda b: (b.owner, b.name))


def get_box(engine: Engine, name: str, owner: str | None = None) -> Box:
    return Box.from_container(_container(engine, name, owner or owner_name()))


def _container(engine: Engine, name: str, owner: str) -> Container:
    found = engine.boxes(owner=owner, name=name)
    if not found:
        raise NotFoundError(
            f"no box named {name!r}", "`devbox ls` lists your boxes; `devbox up NAME` creates one"
        )
    return found[0]


# ---------------------------------------------------------------- up


def up(
    engine: Engine,
    spec: BoxSpec,
    identity: Identity,
    *,
    identity_label: str = "",
    keep_on_failure: bool = False,
    ssh_config: Path | None = None,
    progress: Progress = lambda _line: None,
    timeout: float = READY_TIMEOUT_S,
) -> UpResult:
    """Create (or start) the box described by `spec`; return once a key login works."""
    owner = owner_name()
    existing = engine.boxes(owner=owner, name=spec.name)
    if existing:
        return _up_existing(engine, spec, existing[0], identity, ssh_config, progress, timeout)

    layer = ensure_image(engine, spec.image, progress)
    host_key = generate_ed25519(f"devbox-{spec.name}")
    created: list[Callable[[], None]] = []  # undo steps, run in reverse on failure
    try:
        container = _create_and_start(
            engine, spec, owner, layer.tag, identity, host_key, identity_label, created
        )
        box = Box.from_container(container)
        known_hosts.pin(box.alias, host_key.public_line)
        created.append(lambda: known_hosts.unpin(box.alias))
        progress(f"Waiting for sshd in {spec.name}")
        _wait_ready(engine, box, identity, timeout)
    except BaseException:
        if keep_on_failure:
            progress("Keeping what was created (--keep-on-failure); `devbox rm --purge` cleans it up")
        else:
            for undo in reversed(created):
                with contextlib.suppress(Exception):
                    undo()
        raise
    include = _publish_ssh_entry(box, ssh_config)
    return UpResult(get_box(engine, spec.name, owner), created=True, built=layer.built, ssh=include)


def _up_existing(
    engine: Engine,
    spec: BoxSpec,
    container: Container,
    identity: Identity,
    ssh_config: Path | None,
    progress: Progress,
    timeout: float,
) -> UpResult:
    recorded = json.loads(container.labels.get(L("spec"), "{}"))
    wanted = spec.fingerprint()
    differs = sorted(k for k in wanted if json.dumps(recorded.get(k)) != json.dumps(wanted[k]))
    if differs:
        changes = ", ".join(f"{k}: {recorded.get(k)} → {wanted[k]}" for k in differs)
        raise UsageError(
            f"box {spec.name!r} already exists with different options ({changes})",
            f"recreate it with `devbox rm {spec.name}` then `devbox up` (the home volume is kept), "
            f"or run `devbox up {spec.name}` without changing options",
        )
    box = Box.from_container(container)
    if not box.running:
        progress(f"Starting {spec.name}")
        allocation.start_checked(engine, container, share=spec.share_gpus)
    _wait_ready(engine, box, identity, timeout)
    include = _publish_ssh_entry(box, ssh_config)
    return UpResult(get_box(engine, spec.name), created=False, built=False, ssh=include)


def _create_and_start(
    engine: Engine,
    spec: BoxSpec,
    owner: str,
    image: str,
    identity: Identity,
    host_key,
    identity_label: str,
    created: list[Callable[[], None]],
) -> Container:
    import docker

    volume_name = f"{container_name(owner, spec.name)}-home"
    _ensure_volume(engine, volume_name, owner, spec.name, created)
    # GPUs are chosen, claimed (labels) and started under one engine-wide lock, so concurrent
    # `up`s of any user on this engine can never pick the same GPU.
    with engine.lock("gpus", image):
        device_ids = allocation.choose(engine, spec)
        for attempt in range(3):
            port = _free_port(engine)
            container = engine.client.containers.create(
                image, **_create_args(spec, owner, volume_name, port, device_ids, identity_label)
            )
            created.append(lambda c=container: c.remove(force=True))
            container.put_archive("/etc", _payload(spec, identity, host_key))
            try:
                container.start()
                break
            except docker.errors.APIError as exc:
                # Another process took the port between our probe and Docker's bind: try another one.
                if attempt == 2 or "already allocated" not in str(exc) and "in use" not in str(exc):
                    raise DevboxError(f"cannot start {spec.name}: {describe_error(exc)}") from None
                created.pop()()
    container.reload()
    return container


def _ensure_volume(
    engine: Engine, volume: str, owner: str, name: str, created: list[Callable[[], None]]
) -> None:
    import docker

    try:
        engine.client.volumes.get(volume)
    except docker.errors.NotFound:
        vol = engine.client.volumes.create(volume, labels={L("name"): name, L("owner"): owner})
        created.append(lambda: vol.remove(force=True))


def _create_args(
    spec: BoxSpec, owner: str, volume: str, port: int, device_ids: tuple[str, ...], identity_label: str
) -> dict[str, object]:
    from docker.types import DeviceRequest, Mount

    env = {
        "DEVBOX_USER": spec.user.name,
        "DEVBOX_UID": str(spec.user.uid),
        "DEVBOX_GID": str(spec.user.gid),
        "DEVBOX_SUDO": "1" if spec.sudo else "0",
        **dict(spec.env),
    }
    requests = []
    if spec.gpus.kind == "all":
        requests = [DeviceRequest(driver="nvidia", count=-1, capabilities=[["gpu"]])]
    elif device_ids:
        requests = [DeviceRequest(driver="nvidia", device_ids=list(device_ids), capabilities=[["gpu"]])]
    else:
        # A default nvidia runtime would otherwise hand every GPU of the host to a GPU-less box.
        env["NVIDIA_VISIBLE_DEVICES"] = "void"
    mounts = [Mount(spec.home, volume, type="volume")] + [
        Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in spec.mounts
    ]
    labels = {
        L("name"): spec.name,
        L("owner"): owner,
        L("user"): spec.user.name,
        L("uid"): str(spec.user.uid),
        L("gid"): str(spec.user.gid),
        L("gpus"): "all"
        if spec.gpus.kind == "all" and not device_ids
        else gpus.format_device_ids(device_ids),
        L("gpu-request"): str(spec.gpus),
        L("share-gpus"): "1" if spec.share_gpus else "0",
        L("port"): str(port),
        L("image"): spec.image,
        L("workdir"): spec.workdir or spec.home,
        L("volume"): volume,
        L("identity"): identity_label,
        L("version"): __version__,
        L("spec"): json.dumps(spec.fingerprint(), sort_keys=True),
    }
    args: dict[str, object] = {
        "name": container_name(owner, spec.name),
        "hostname": spec.name,
        "labels": labels,
        "environment": env,
        # 127.0.0.1 only, and a fixed host port so ssh config entries survive restarts.
        "ports": {"22/tcp": ("127.0.0.1", port)},
        "mounts": mounts,
        "device_requests": requests,
        "restart_policy": {"Name": "unless-stopped"},
        "shm_size": spec.shm_size,
        "init": True,
        "detach": True,
    }
    if spec.workdir:
        args["working_dir"] = spec.workdir
    if spec.memory:
        args["mem_limit"] = spec.memory
    if spec.cpus:
        args["nano_cpus"] = int(spec.cpus * 1e9)
    return args


def _payload(spec: BoxSpec, identity: Identity, host_key) -> bytes:
    """/etc/devbox as a tar: sshd_config, host key, authorized_keys.

    put_archive (not host files) so the same code works against a remote engine.
    """
    template = (resources.files("devbox.images") / "sshd_config.in").read_text()
    files = {
        "devbox/sshd_config": (Template(template).substitute(user=spec.user.name).encode(), 0o644),
        "devbox/ssh_host_ed25519_key": (host_key.private_openssh, 0o600),
        "devbox/ssh_host_ed25519_key.pub": (host_key.public_line.encode() + b"\n", 0o644),
        "devbox/authorized_keys": (identity.public_line.encode() + b"\n", 0o644),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        d = tarfile.TarInfo("devbox")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(d)
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _free_port(engine: Engine) -> int:
    """A port free on 127.0.0.1 now and not reserved by any other box (stopped boxes keep theirs)."""
    reserved = {c.labels.get(L("port")) for c in engine.boxes()}
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if str(port) not in reserved:
            return port
    raise DevboxError("could not find a free port on 127.0.0.1")


def _wait_ready(engine: Engine, box: Box, identity: Identity, timeout: float) -> None:
    import docker

    def why_dead() -> str | None:
        try:
            status = engine.client.containers.get(box.container_id).status
        except docker.errors.NotFound:
            return f"box {box.name} disappeared while starting"
        return (
            None if status in ("running", "created") else f"box {box.name} stopped while starting ({status})"
        )

    try:
        sshclient.wait_ready(box.target, identity, timeout, why_dead)
    except DevboxError as exc:
        try:
            log = _log_tail(engine.client.containers.get(box.container_id))
        except docker.errors.NotFound:
            raise exc from None
        raise DevboxError(exc.message, exc.hint or f"its log ends: {log}") from None


def _log_tail(container: Container, lines: int = 5) -> str:
    text = container.logs(tail=lines * 4).decode(errors="replace")
    # A crash-looping box repeats itself; show each distinct line once, newest last.
    distinct = list(dict.fromkeys(ln.strip() for ln in text.splitlines() if ln.strip()))
    return " | ".join(distinct[-lines:]) or "(empty)"


def ssh_entry(box: Box) -> sshconfig.HostEntry:
    """The OpenSSH block for `box`: its port, user, key and pinned known_hosts."""
    return sshconfig.HostEntry(
        alias=box.alias,
        port=box.port,
        user=box.user,
        identity_file=Path(box.identity) if box.identity else paths.user_key_path(),
        known_hosts=paths.known_hosts_path(),
    )


def _publish_ssh_entry(box: Box, ssh_config: Path | None) -> sshconfig.IncludeResult:
    result = sshconfig.upsert(ssh_entry(box), user_config=ssh_config)
    _tell_vscode(box.alias)
    return result


def _tell_vscode(alias: str) -> vscode.SettingsResult | None:
    """Spare VS Code's "select the platform" prompt, where VS Code is installed."""
    settings = vscode.settings_path()
    if not settings.parent.is_dir():
        return None
    return vscode.ensure_remote_platform(alias, settings)


def sync_ssh(engine: Engine, ssh_config: Path | None = None) -> tuple[sshconfig.IncludeResult, list[Box]]:
    """Rewrite devbox's ssh config from Docker's labels: one block per box of this owner."""
    mine = list_boxes(engine, owner_name())
    result = sshconfig.sync([ssh_entry(b) for b in mine], user_config=ssh_config)
    for b in mine:
        _tell_vscode(b.alias)
    return result, mine


# ---------------------------------------------------------------- start / stop / restart / rm


def start(
    engine: Engine,
    name: str,
    identity: Identity,
    *,
    share_gpus: bool = False,
    ssh_config: Path | None = None,
    timeout: float = READY_TIMEOUT_S,
) -> Box:
    container = _container(engine, name, owner_name())
    box = Box.from_container(container)
    if not box.running:
        allocation.start_checked(engine, container, share_gpus)
    _wait_ready(engine, box, identity, timeout)
    _publish_ssh_entry(box, ssh_config)
    return get_box(engine, name)


def stop(engine: Engine, name: str) -> Box:
    container = _container(engine, name, owner_name())
    container.stop(timeout=10)
    return get_box(engine, name)


def restart(engine: Engine, name: str, identity: Identity, *, timeout: float = READY_TIMEOUT_S) -> Box:
    stop(engine, name)
    return start(engine, name, identity, timeout=timeout)


def rm(engine: Engine, name: str, *, purge: bool = False, ssh_config: Path | None = None) -> Box:
    """Remove the box; its home volume stays unless `purge`. The ssh entry and pinned key go."""
    import docker

    container = _container(engine, name, owner_name())
    box = Box.from_container(container)
    container.remove(force=True)
    sshconfig.remove(box.alias, user_config=ssh_config)
    known_hosts.unpin(box.alias)
    if vscode.settings_path().parent.is_dir():
        vscode.remove_remote_platform(box.alias)
    if purge and box.volume:
        try:
            engine.client.volumes.get(box.volume).remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise DevboxError(f"removed {name}, but not its home volume: {describe_error(exc)}") from None
    return box
