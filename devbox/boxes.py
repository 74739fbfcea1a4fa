"""Box lifecycle: up, start, stop, restart, rm, ls. The CLI and the TUI both call these."""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from devbox import (
    __version__,
    allocation,
    deps,
    gpus,
    interrupts,
    network,
    paths,
    sshclient,
    sshconfig,
    trust,
    vscode,
)
from devbox.allocation import RUNNING_STATES
from devbox.engine import Engine, L, Listed, describe_error
from devbox.errors import DevboxError, NotFoundError, UsageError
from devbox.hosts import LOCAL, LOCAL_HOST, Host, HostResult, across
from devbox.image import build_base, ensure_image, remove_builds
from devbox.keys import known_hosts
from devbox.keys.keypair import Identity, KeyPair, ensure_user_key, generate_ed25519, load_identity
from devbox.spec import READY_TIMEOUT_S, BoxSpec, env_digest

if TYPE_CHECKING:
    from docker.models.containers import Container

Progress = Callable[[str], None]
T = TypeVar("T")
# Below Linux's ephemeral range (32768+), so outgoing connections don't squat a stopped box's port.
PORT_RANGE = range(20000, 32000)
# Docker counts threads too; DataLoader workers with many threads each need room.
PIDS_LIMIT = 16384
# How long another `up` may take from creating a box to starting it (it copies files in between);
# a box never started that is older is one a failed `up` left.
SETTING_UP_S = 30


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
    image: str
    workdir: str
    volume: str
    container: str
    container_id: str
    identity: str  # the user's own key (--identity), or "" for devbox's key
    host: str = LOCAL  # the devbox host it runs on
    jump: str = ""  # that host's ssh destination ("" for the local engine)
    networks: tuple[str, ...] = ()  # the Docker networks it is attached to
    started: str = ""  # when it last started (Docker's ISO time), "" if never
    mounts: tuple[str, ...] = ()  # the user's bind mounts, SRC:DST[:ro]
    memory: int = 0  # limits in bytes / CPUs; 0: none
    cpus: float = 0.0
    shm_size: int = 0
    ports: tuple[str, ...] = ()  # forwarded by its ssh entry: "PORT" or "PORT:LOCAL"

    @property
    def isolated(self) -> bool:
        """Whether no other box can reach it: only on devbox's isolated network (boxes made by
        earlier devbox versions sit on Docker's default bridge)."""
        return self.networks == (network.NAME,)

    @property
    def running(self) -> bool:
        return self.status in RUNNING_STATES

    @property
    def alias(self) -> str:
        return sshconfig.host_alias(self.name)

    def to_json(self) -> dict[str, object]:
        """What `devbox ls --json` prints for scripts."""
        return {
            "name": self.name,
            "owner": self.owner,
            "status": self.status,
            "user": self.user,
            "uid": self.uid,
            "gid": self.gid,
            "gpus": list(self.gpus),
            "port": self.port,
            "host": self.host,
            "ssh_alias": self.alias,
            "image": self.image,
            "workdir": self.workdir,
            "volume": self.volume,
            "container": self.container,
            "ports": list(self.ports),
        }

    @classmethod
    def from_container(cls, c: Container, host: Host = LOCAL_HOST) -> Box:
        networks = ((c.attrs.get("NetworkSettings") or {}).get("Networks") or {}).keys()
        return cls._of(c.labels, c.status, c.name, c.id, host, tuple(sorted(networks)), _runtime(c.attrs))

    @classmethod
    def from_listed(cls, c: Listed, host: Host = LOCAL_HOST) -> Box:
        """A box as Docker's list shows it, without when it started and its limits (left empty:
        only an inspect reports them). A listing of every box then takes one call."""
        return cls._of(c.labels, c.status, c.name, c.id, host, c.networks, {"mounts": _binds(c.mounts)})

    @classmethod
    def _of(
        cls,
        lb: dict[str, str],
        status: str,
        container: str,
        container_id: str,
        host: Host,
        networks: tuple[str, ...],
        runtime: dict[str, object],
    ) -> Box:
        try:
            return cls(
                name=lb[L("name")],
                owner=lb[L("owner")],
                user=lb[L("user")],
                uid=int(lb[L("uid")]),
                gid=int(lb[L("gid")]),
                status=status,
                port=int(lb[L("port")]),
                gpus=gpus.parse_label(lb.get(L("gpus"), "")),
                image=lb.get(L("image"), ""),
                workdir=lb.get(L("workdir"), ""),
                volume=lb.get(L("volume"), ""),
                container=container,
                container_id=container_id,
                identity=lb.get(L("identity"), ""),
                host=host.name,
                jump=host.jump,
                networks=networks,
                ports=tuple(p for p in lb.get(L("ports"), "").split(",") if p),
                **runtime,
            )
        except (KeyError, ValueError):
            raise DevboxError(
                f"container {container} has damaged devbox labels",
                f"remove it with `devbox rm {lb.get(L('name'), '')}` (its home volume is kept)"
                if lb.get(L("name")) and lb.get(L("owner"))
                else f"remove it with `docker rm -f {container}`",
            ) from None


def _runtime(attrs: dict) -> dict[str, object]:
    """What Docker reports about a box beyond its labels: start time, bind mounts, limits."""
    host_config = attrs.get("HostConfig") or {}
    started = str((attrs.get("State") or {}).get("StartedAt") or "")
    return {
        "started": "" if started.startswith("0001-") else started,
        "mounts": _binds(attrs.get("Mounts") or ()),
        "memory": int(host_config.get("Memory") or 0),
        "cpus": int(host_config.get("NanoCpus") or 0) / 1e9,
        "shm_size": int(host_config.get("ShmSize") or 0),
    }


def _binds(mounts: Iterable[dict]) -> tuple[str, ...]:
    """The user's bind mounts, SRC:DST[:ro], from Docker's mounts (an inspect's or a list's)."""
    return tuple(
        f"{m.get('Source')}:{m.get('Destination')}" + ("" if m.get("RW", True) else ":ro")
        for m in mounts
        if m.get("Type") == "bind"
    )


@dataclass(frozen=True)
class UpResult:
    box: Box
    created: bool
    ssh: sshconfig.IncludeResult | None  # None when devbox's ssh config could not be written
    vscode: vscode.SettingsResult | None
    warning: str | None = None  # the box is up, but something around it needs the user's hand


def container_name(owner: str, name: str) -> str:
    """`devbox-<owner>.<name>`: box names have no '.', so no two (owner, name) pairs share one."""
    safe_owner = "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "_.-" else "_" for ch in owner)
    return f"devbox-{safe_owner}.{name}"


def identity_of(box: Box) -> Identity:
    """The key this client logs in to `box` with, loaded (see key_path_of)."""
    path = key_path_of(box)
    return ensure_user_key() if path == paths.user_key_path() else load_identity(path)


def key_path_of(box: Box) -> Path:
    """The file of the key this client logs in to `box` with, not read.

    The last `up` wrote it into the box's ssh config block (it may have switched keys since
    the box was created: labels cannot change); the creation label is the fallback.
    """
    path = next((e.identity_file for e in sshconfig.read_entries() if e.alias == box.alias), None)
    if path is None:
        path = Path(box.identity) if box.identity else paths.user_key_path()
    return path


def list_boxes(engine: Engine, owner: str | None = None, *, brief: bool = False) -> list[Box]:
    """The owner's boxes (everyone's when owner is None), sorted by owner then name; `brief`: as
    Docker's list shows them (Box.from_listed), in one engine call instead of one more per box.

    Containers with damaged labels are left out rather than failing the whole listing.
    """
    make = Box.from_listed if brief else Box.from_container
    found = []
    for c in engine.listed(owner) if brief else engine.boxes(owner=owner):
        with contextlib.suppress(DevboxError):
            found.append(make(c, engine.host))
    return sorted(found, key=lambda b: (b.owner, b.name))


def list_hosts(targets: list[Host], *, all_owners: bool = False) -> list[HostResult[list[Box]]]:
    """Boxes on each host, asked concurrently; a host that fails is an error result (raised when it
    is the only one)."""

    def work(engine: Engine) -> list[Box]:
        return list_boxes(engine, None if all_owners else engine.owner, brief=True)

    return across(targets, work, raise_if_single=True)


def get_box(engine: Engine, name: str, owner: str | None = None) -> Box:
    return Box.from_container(_container(engine, name, owner or engine.owner), engine.host)


def _container(engine: Engine, name: str, owner: str) -> Container:
    found = engine.boxes(owner=owner, name=name)
    if not found:
        raise _no_box(name)
    return found[0]


def _no_box(name: str) -> NotFoundError:
    hint = "`devbox ls` lists your boxes; `devbox up NAME` creates one"
    return NotFoundError(f"no box named {name!r}", hint)


def _refuse_name_elsewhere(engine: Engine, name: str) -> None:
    """Box names are one namespace on this machine (`ssh devbox-NAME`): a box of that name on
    another host keeps it."""
    alias = sshconfig.host_alias(name)
    other = next((e for e in sshconfig.read_entries() if e.alias == alias), None)
    if other is not None and other.proxy_jump != engine.host.jump:
        where = other.proxy_jump or "the local engine"
        raise UsageError(
            f"you already have a box named {name!r} on {where}",
            f"pick another name, or remove that one first (`devbox rm {name}`)",
        )


# ---------------------------------------------------------------- up


def up(
    engine: Engine,
    spec: BoxSpec,
    identity: Identity,
    *,
    given: Collection[str] | None = None,
    keep_on_failure: bool = False,
    ssh_config: Path | None = None,
    progress: Progress = lambda _line: None,
    timeout: float = READY_TIMEOUT_S,
) -> UpResult:
    """Create (or start) the box described by `spec`; return once a key login works.

    For an existing box only the options in `given` (fingerprint keys; None = all) must match,
    so a bare `up NAME` starts a box whatever it was created with.
    """
    sshconfig.host_alias(spec.name)  # an unusable DEVBOX_HOST_PREFIX is refused before anything exists
    owner = engine.owner
    existing = engine.boxes(owner=owner, name=spec.name)
    if not existing:
        _refuse_name_elsewhere(engine, spec.name)
    if spec.build is not None:
        # Before comparing with an existing box: a changed Dockerfile is a changed image.
        spec = replace(spec, image=build_base(engine, spec.build, owner, spec.name, progress))
    if existing:
        return _up_existing(engine, spec, existing[0], identity, given, ssh_config, progress, timeout)

    if engine.login is not None and engine.login.uid == 0:
        progress(
            f"devbox: you log in to {engine.host.name} as root; "
            f"the box user is {spec.user.name} (uid {spec.user.uid})"
        )
    # Read-only here: an impossible or taken GPU request is refused before a layer is built; the
    # choice that counts is made again under the lock.
    allocation.choose(engine, spec)
    layer = ensure_image(engine, spec.image, progress)
    host_key = generate_ed25519(f"devbox-{spec.name}")
    deps.preload("paramiko")  # for the readiness login, while Docker creates and starts the box
    undo: list[Callable[[], None]] = []  # run in reverse if anything below fails
    try:
        container = _create_and_start(engine, spec, owner, layer.tag, identity, host_key, undo, progress)
        box = Box.from_container(container, engine.host)
        known_hosts.pin(box.alias, host_key.public_line)
        undo.append(lambda: known_hosts.unpin(box.alias))
        progress(f"Waiting for sshd in {spec.name}")
        _wait_ready(engine, box, identity, timeout)
    except BaseException as exc:
        if keep_on_failure:
            progress("Keeping what was created (--keep-on-failure); `devbox rm --purge` cleans it up")
            raise
        if _undone(undo) or not isinstance(exc, DevboxError):
            raise
        # The engine stopped answering (a link gone): what this run made may still be there.
        raise DevboxError(
            f"{exc.message}; {spec.name} may be left half made on {engine.host.name}",
            f"once it answers, `devbox up {spec.name}` finishes it or `devbox rm {spec.name}` removes it",
        ) from None
    include, settings, warning = _publish(box, ssh_config, identity, spec.ports)
    return UpResult(box, True, include, settings, warning)  # as inspected once it started


def _undone(undo: list[Callable[[], None]]) -> bool:
    """Run a failed `up`'s undo steps, newest first, each whatever the others do; all worked?"""
    done = True
    for step in reversed(undo):
        try:
            step()
        except Exception:
            done = False
    return done


def _up_existing(
    engine: Engine,
    spec: BoxSpec,
    container: Container,
    identity: Identity,
    given: Collection[str] | None,
    ssh_config: Path | None,
    progress: Progress,
    timeout: float,
) -> UpResult:
    try:
        recorded = json.loads(container.labels.get(L("spec"), "{}"))
    except json.JSONDecodeError:
        recorded = {}
    wanted = spec.fingerprint()
    recorded["env"] = sorted(_digested(e) for e in recorded.get("env") or [])
    keys = wanted.keys() if given is None else [k for k in wanted if k in given]
    differs = sorted(k for k in keys if json.dumps(recorded.get(k)) != json.dumps(wanted[k]))
    if differs:
        changes = ", ".join(f"{k} {_show(recorded.get(k))} → {_show(wanted[k])}" for k in differs)
        raise UsageError(
            f"box {spec.name!r} already exists with other options ({changes})",
            f"to change them: `devbox rm {spec.name}` then `devbox up` again (the home volume is kept); "
            f"to just start it: `devbox up {spec.name}`",
        )
    if container.status == "created":
        container = _once_started(engine, container, spec.name)
    box = Box.from_container(container, engine.host)
    if not (box.running and _still_trusted(engine, box, identity)):
        trust.refresh(container, box.alias, identity)
        if not box.running:
            progress(f"Starting {spec.name}")
            allocation.start_checked(engine, container, share=spec.share_gpus, progress=progress)
        _wait_ready(engine, box, identity, timeout)
        box = get_box(engine, spec.name)  # as it is now it runs (a box that ran is as it was listed)
    # Ports asked for now replace the ones it was made with (they live in the ssh entry only); a
    # spec compared whole (a project file's) has exactly its ports, none included.
    ports = spec.ports if given is None or spec.ports else None
    include, settings, warning = _publish(box, ssh_config, identity, ports)
    return UpResult(box, False, include, settings, warning)


def _once_started(engine: Engine, container: Container, name: str) -> Container:
    """A box never started and made moments ago is another `up` still setting it up: wait until
    that run has started it (so concurrent `up`s of one name all end with that box), reloaded.
    Older, it is one a failed `up --keep-on-failure` left, returned as it is."""
    import docker

    deadline = time.monotonic() + SETTING_UP_S - engine.age(container.attrs["Created"])
    while container.status == "created" and time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            container.reload()
        except docker.errors.NotFound:
            raise _raced(name) from None  # that run failed and removed it
    return container


def _digested(entry: str) -> str:
    """A recorded --env entry as fingerprints keep them now: boxes made before recorded K=V itself."""
    key, _, value = entry.partition("=")
    return entry if value.startswith("sha256:") else f"{key}=sha256:{env_digest(key, value)}"


def _show(value: object) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "none"
    return "none" if value is None else str(value)


def _create_and_start(
    engine: Engine,
    spec: BoxSpec,
    owner: str,
    image: str,
    identity: Identity,
    host_key: KeyPair,
    undo: list[Callable[[], None]],
    progress: Progress,
) -> Container:
    import docker

    # Choosing GPUs, creating the box (which claims them in labels) and starting it happen under
    # one engine-wide lock, so concurrent `up`s of any user never take the same GPU. Docker keeps
    # the rest apart by itself (see _needs_lock), so a box without GPUs skips the lock's cost.
    have_network = network.existing(engine)
    lock = engine.lock(allocation.LOCK, image, on_wait=progress) if _needs_lock(spec, have_network) else None
    with lock or contextlib.nullcontext():
        # Under the lock, a box made since up() looked is seen here; without it, Docker's 409 on
        # the create below says the same.
        if lock is not None and engine.boxes(owner=owner, name=spec.name):
            raise _raced(spec.name)
        volume, made = _ensure_volume(engine, owner, spec.name)
        drop_volume = partial(engine.client.api.remove_volume, volume, force=True)
        if made:
            undo.append(drop_volume)
        net = network.NAME if have_network else network.ensure(engine)
        device_ids = allocation.choose(engine, spec)
        identity_label = "" if identity.private_path == paths.user_key_path() else str(identity.private_path)
        for attempt in range(3):
            args = _create_args(spec, owner, volume, _free_port(engine), device_ids, identity_label, net)
            create = partial(engine.client.containers.create, image, **args)
            raced = _raced(spec.name)
            try:
                # A signal held until the box is on the undo list: one taken while the request
                # was out would leave a box made by this run that nothing removes.
                with interrupts.deferred():
                    container = _docker_call(f"create {spec.name}", create, conflict=raced)
                    undo.append(partial(container.remove, force=True))
            except DevboxError as exc:
                # The run that won the name makes its box on this volume: it is that box's home,
                # not ours to remove, even if this run made it a moment ago.
                if exc is raced and made:
                    undo.remove(drop_volume)
                raise
            files = trust.payload(spec.user.name, identity, host_key)
            _docker_call(f"set up {spec.name}", partial(container.put_archive, "/etc", files))
            try:
                container.start()
                allocation.refuse_if_outraced(engine, container)
                break
            except docker.errors.APIError as exc:
                # Another program took the port between our probe and Docker's bind: take another.
                taken = "already allocated" in str(exc) or "address already in use" in str(exc)
                if attempt == 2 or not taken:
                    raise _start_error(spec.name, exc) from None
                _docker_call(f"remove {spec.name} to retry", undo[-1])
                undo.pop()
    container.reload()
    return container


def _needs_lock(spec: BoxSpec, have_network: bool) -> bool:
    """Whether creating this box needs the engine lock: only what Docker cannot keep apart does.

    GPUs are chosen by reading other boxes' labels, and Docker allows two networks of one name.
    The rest it guards itself: a container name exists once (the second create of a box gets 409,
    see _raced), and a port chosen by two runs at once is bound by one start, the other's start
    failing and choosing again (_create_and_start's retry).
    """
    return spec.gpus.kind != "none" or not have_network


def _raced(name: str) -> DevboxError:
    return DevboxError(f"box {name!r} was just created by another devbox run", "run `devbox up` again")


def _docker_call(what: str, call: Callable[[], T], conflict: DevboxError | None = None) -> T:
    """Run one Docker call; its refusal becomes one line (exit 2 when Docker blames the input),
    `conflict` when Docker answers 409 (a name taken)."""
    import docker

    try:
        return call()
    except docker.errors.APIError as exc:
        if conflict is not None and exc.status_code == 409:
            raise conflict from None
        kind = UsageError if exc.is_client_error() else DevboxError
        raise kind(f"cannot {what}: {describe_error(exc)}") from None


def _start_error(name: str, exc: Exception) -> DevboxError:
    text = describe_error(exc)
    if "could not select device driver" in text:
        return DevboxError(
            f"cannot start {name}: Docker on this host cannot pass GPUs to containers",
            "install the NVIDIA Container Toolkit, or create the box without --gpus; `devbox gpus` checks",
        )
    return DevboxError(f"cannot start {name}: {text}")


def _ensure_volume(engine: Engine, owner: str, name: str) -> tuple[str, bool]:
    """The box's home volume, and whether this call created it (else this owner's box of this
    name had one)."""
    import docker

    volume = f"{container_name(owner, name)}.home"
    try:
        labels = engine.client.volumes.get(volume).attrs.get("Labels") or {}
    except docker.errors.NotFound:
        _docker_call(
            f"create the home volume {volume}",
            lambda: engine.client.volumes.create(volume, labels=_volume_labels(owner, name)),
        )
        return volume, True
    except docker.errors.APIError as exc:
        raise DevboxError(f"cannot inspect the home volume {volume}: {describe_error(exc)}") from None
    if (labels.get(L("owner")), labels.get(L("name"))) != (owner, name):
        raise DevboxError(
            f"volume {volume} exists but does not belong to {owner}'s box {name}",
            "pick another box name, or ask the volume's owner",
        )
    return volume, False


def _volume_labels(owner: str, name: str) -> dict[str, str]:
    return {L("name"): name, L("owner"): owner}


def _create_args(
    spec: BoxSpec,
    owner: str,
    volume: str,
    port: int,
    device_ids: tuple[str, ...],
    identity_label: str,
    net: str = network.NAME,
) -> dict[str, object]:
    from docker.types import DeviceRequest, Mount

    env = {
        "DEVBOX_USER": spec.user.name,
        "DEVBOX_UID": str(spec.user.uid),
        "DEVBOX_GID": str(spec.user.gid),
        "DEVBOX_SUDO": "1" if spec.sudo else "0",
        "DEVBOX_WORKDIR": spec.workdir or "",
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
    # Labelled here too: were the volume removed between _ensure_volume and this create (a
    # concurrent `up` of the name that failed), Docker makes it again, and as devbox's.
    home = Mount(spec.home, volume, type="volume", labels=_volume_labels(owner, spec.name))
    mounts = [home] + [Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in spec.mounts]
    labels = {
        L("name"): spec.name,
        L("owner"): owner,
        L("user"): spec.user.name,
        L("uid"): str(spec.user.uid),
        L("gid"): str(spec.user.gid),
        # `all` without an inventory stays "all", which conflicts with every GPU.
        L("gpus"): gpus.format_device_ids(device_ids) or (gpus.ALL if spec.gpus.kind == "all" else ""),
        L("share-gpus"): "1" if spec.share_gpus else "0",
        L("port"): str(port),
        L("image"): spec.image,
        L("workdir"): spec.workdir or spec.home,
        L("volume"): volume,
        L("identity"): identity_label,
        # The ssh alias it is published under: `rm` cleans that one up even if DEVBOX_HOST_PREFIX
        # (or config.yaml's alias_prefix) has changed since.
        L("alias"): sshconfig.host_alias(spec.name),
        L("ports"): ",".join(spec.ports),
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
        # No box can reach another box (see network.py).
        "network": net,
        "mounts": mounts,
        "device_requests": requests,
        "restart_policy": {"Name": "unless-stopped"},
        "shm_size": spec.shm_size,
        "init": True,
        "detach": True,
    }
    # Least privilege, found by test: the root entrypoint needs CHOWN/DAC_OVERRIDE/FOWNER, sshd's
    # privilege separation SETUID/SETGID/SYS_CHROOT, pty logins AUDIT_WRITE. With sudo, KILL and
    # FSETID keep `sudo kill` and package installs working; without it nothing may gain privileges.
    caps = [
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "SETUID",
        "SETGID",
        "SYS_CHROOT",
        "AUDIT_WRITE",
        "NET_BIND_SERVICE",
    ]
    args["cap_drop"] = ["ALL"]
    args["cap_add"] = caps + (["KILL", "FSETID"] if spec.sudo else [])
    args["pids_limit"] = PIDS_LIMIT
    if not spec.sudo:
        args["security_opt"] = ["no-new-privileges"]
    if spec.workdir:
        args["working_dir"] = spec.workdir
    if spec.memory:
        args["mem_limit"] = spec.memory
    if spec.cpus:
        args["nano_cpus"] = int(spec.cpus * 1e9)
    return args


def _free_port(engine: Engine) -> int:
    """A port free on 127.0.0.1 now and not reserved by any other box (stopped boxes keep theirs)."""
    reserved = {c.labels.get(L("port")) for c in engine.listed()}
    for port in random.sample(PORT_RANGE, 200):
        if str(port) not in reserved and engine.port_free(port):
            return port
    raise DevboxError(f"no free port on 127.0.0.1 in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")


def _still_trusted(engine: Engine, box: Box, identity: Identity) -> bool:
    """Whether a running box takes `identity` and shows the host key pinned for it, tried with one
    login. Then `up` has nothing to re-read from the box (trust.refresh, an archive read that costs
    the engine more than the login); otherwise it re-pins and authorizes through the Docker API,
    as ever, and logs in again."""
    try:
        sshclient.connect(login_target(engine, box), identity, timeout=2.0).close()
    except Exception:  # any reason at all: the full path below finds and reports it
        return False
    return True


def login_target(engine: Engine, box: Box) -> sshclient.Target:
    """Where paramiko logs in to `box`: its port on the host's 127.0.0.1, through the server's master."""
    return sshclient.Target(box.alias, box.port, box.user, proxy=engine.proxy_command(box.port))


def _wait_ready(engine: Engine, box: Box, identity: Identity, timeout: float) -> None:
    import docker

    def why_dead() -> str | None:
        try:
            status = engine.client.containers.get(box.container_id).status
        except docker.errors.NotFound:
            return f"box {box.name} disappeared while starting"
        if status in ("running", "created"):
            return None
        return f"box {box.name} stopped while starting ({status})"

    try:
        sshclient.wait_ready(login_target(engine, box), identity, timeout, why_dead)
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


# ---------------------------------------------------------------- ssh config and VS Code


def ssh_entry(
    box: Box, identity_file: Path | None = None, ports: tuple[str, ...] | None = None
) -> sshconfig.HostEntry:
    """The OpenSSH block for `box`: its port, user, key (by default the one it has now, not read:
    a passphrase key is named as well without its agent), pinned known_hosts and port forwards
    (`ports`; by default those its entry has now, else those it was made with)."""
    return sshconfig.HostEntry(
        alias=box.alias,
        port=box.port,
        user=box.user,
        identity_file=identity_file or key_path_of(box),
        known_hosts=paths.known_hosts_path(),
        proxy_jump=box.jump,
        forwards=forwards_of(box) if ports is None else ports,
    )


def forwards_of(box: Box) -> tuple[str, ...]:
    """The ports the box's ssh entry forwards: a later `up --port` may have changed them since
    the box was made (they are not part of the container)."""
    with contextlib.suppress(DevboxError):
        for entry in sshconfig.read_entries():
            if entry.alias == box.alias and entry.port == box.port and entry.proxy_jump == box.jump:
                return entry.forwards
    return box.ports


def _publish(
    box: Box, ssh_config: Path | None, identity: Identity, ports: tuple[str, ...] | None = None
) -> tuple[sshconfig.IncludeResult | None, vscode.SettingsResult | None, str | None]:
    """Write the box's ssh entry and VS Code hint. The box is up by now: a failure here is a
    warning with the fix, never an error that leaves a running box behind a non-zero exit."""
    try:
        include = sshconfig.upsert(ssh_entry(box, identity.private_path, ports), user_config=ssh_config)
    except DevboxError as exc:
        return (
            None,
            None,
            (
                f"{box.name} is up, but its ssh entry could not be written: {exc.message}; "
                f"fix that, then `devbox ssh-config` writes it"
            ),
        )
    try:
        settings = _tell_vscode(box.alias)
    except (OSError, DevboxError) as exc:
        return include, None, f"VS Code settings were not updated: {exc}"
    return include, settings, None


def _tell_vscode(alias: str) -> vscode.SettingsResult | None:
    """Spare VS Code's "select the platform" prompt, where VS Code is installed."""
    settings = vscode.settings_path()
    if not settings.parent.is_dir():
        return None
    return vscode.ensure_remote_platform(alias, settings)


def sync_ssh(engine: Engine, ssh_config: Path | None = None) -> tuple[sshconfig.IncludeResult, list[Box]]:
    """Rewrite the blocks of this engine's host in devbox's ssh config from Docker's labels: one per
    box of this owner (other hosts' blocks stay)."""
    mine: list[Box] = []

    def entries() -> list[sshconfig.HostEntry]:
        # Called under the config's lock: a box whose `up` writes its block meanwhile is in this
        # list, or writes it after this sync; a list made before the lock could drop that block.
        mine.extend(list_boxes(engine, engine.owner, brief=True))
        return [ssh_entry(b, _synced_key(b)) for b in mine]

    result = sshconfig.sync(entries, scope=lambda e: e.proxy_jump == engine.host.jump, user_config=ssh_config)
    for b in mine:
        _tell_vscode(b.alias)
    return result, mine


def unpinned(found: list[Box]) -> list[str]:
    """Boxes no `up` has pinned a host key for on this machine (made from another laptop, say):
    a re-synced entry for one cannot log in until `devbox up NAME` pins its key and authorizes
    this machine's."""
    return sorted(b.name for b in found if known_hosts.lookup(b.alias) is None)


def _synced_key(box: Box) -> Path:
    """The key a re-synced block names: the box's own while its file is there, even one that
    cannot be read now (a passphrase key without its agent); a key gone from disk falls back to
    devbox's own, which `up` can re-authorize."""
    path = key_path_of(box)
    return path if path.is_file() else ensure_user_key().private_path


def sync_hosts(
    targets: list[Host], ssh_config: Path | None = None
) -> list[HostResult[tuple[sshconfig.IncludeResult, list[Box]]]]:
    """sync_ssh on each host; a host that does not answer keeps its blocks."""
    return across(
        targets, lambda engine: sync_ssh(engine, ssh_config), ssh_config=ssh_config, raise_if_single=True
    )


# ---------------------------------------------------------------- start / stop / restart / rm


def start(
    engine: Engine,
    name: str,
    *,
    share_gpus: bool = False,
    ssh_config: Path | None = None,
    timeout: float = READY_TIMEOUT_S,
    progress: Progress | None = None,
    on_warning: Progress | None = None,
) -> Box:
    """Start a stopped box (GPU conflicts checked) and wait until a key login works.

    `progress` hears who holds the engine lock if this waits for it; `on_warning` hears what
    went wrong around a box that is up (its ssh entry could not be written, say).
    """
    container = _container(engine, name, engine.owner)
    box = Box.from_container(container, engine.host)
    identity = identity_of(box)
    trust.refresh(container, box.alias, identity)
    if not box.running:
        allocation.start_checked(engine, container, share_gpus, progress)
    _wait_ready(engine, box, identity, timeout)
    _include, _settings, warning = _publish(box, ssh_config, identity)
    if warning and on_warning is not None:
        on_warning(warning)
    return get_box(engine, name)


def stop(engine: Engine, name: str) -> Box:
    container = _container(engine, name, engine.owner)
    _docker_call(f"stop {name}", lambda: container.stop(timeout=10))
    return get_box(engine, name)


def restart(
    engine: Engine,
    name: str,
    *,
    ssh_config: Path | None = None,
    timeout: float = READY_TIMEOUT_S,
    progress: Progress | None = None,
    on_warning: Progress | None = None,
) -> Box:
    """Restart in place: a running box keeps its GPUs throughout (no window for others to take them).
    A stopped box is started; `progress` and `on_warning` as for `start`."""
    container = _container(engine, name, engine.owner)
    if container.status not in RUNNING_STATES:
        return start(
            engine, name, ssh_config=ssh_config, timeout=timeout, progress=progress, on_warning=on_warning
        )
    with engine.lock(allocation.LOCK, container.attrs["Config"]["Image"], on_wait=progress):
        _docker_call(f"restart {name}", lambda: container.restart(timeout=10))
    box = get_box(engine, name)
    _wait_ready(engine, box, identity_of(box), timeout)
    return box


def rm(engine: Engine, name: str, *, purge: bool = False, ssh_config: Path | None = None) -> str:
    """Remove the box; its home volume stays unless `purge`. The ssh entry and pinned key go.

    Works on a box whose labels are damaged too (that is when people need it most). Returns the
    home volume's name.
    """
    import docker

    found = engine.listed(engine.owner, name)  # labels are all it needs: no inspect
    if not found:
        raise _no_box(name)
    container = found[0]
    volume = container.labels.get(L("volume")) or f"{container_name(engine.owner, name)}.home"
    _docker_call(f"remove {name}", lambda: engine.client.api.remove_container(container.id, force=True))
    # Local cleanup is best effort: the box is gone, and a stale entry is harmless.
    for alias in published_aliases(container.labels, engine.host.jump, name):
        with contextlib.suppress(OSError, DevboxError):
            sshconfig.remove(alias, user_config=ssh_config)
            known_hosts.unpin(alias)
            if vscode.settings_path().parent.is_dir():
                vscode.remove_remote_platform(alias)
    if purge:
        remove_builds(engine, engine.owner, name)
        try:
            engine.client.api.remove_volume(volume, force=True)  # one call: no look first
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise DevboxError(f"removed {name}, but not its home volume: {describe_error(exc)}") from None
    return volume


def published_aliases(labels: dict[str, str], jump: str, name: str) -> list[str]:
    """The ssh aliases this client may have published box `name` (with Docker `labels`, on the
    host reached through `jump`) under: the one recorded when it was made, any block of ours that
    reaches its port on that host, and the one the current prefix gives, each unless our block
    for that alias is another box's. The prefix may have changed since the box was made."""
    try:
        entries = sshconfig.read_entries()
    except DevboxError:
        entries = []
    port = labels.get(L("port"), "")

    def this_box(entry: sshconfig.HostEntry) -> bool:
        return str(entry.port) == port and entry.proxy_jump == jump and entry.alias.endswith(name)

    found = {e.alias for e in entries if this_box(e)}
    candidates = [labels.get(L("alias"), "")]
    with contextlib.suppress(UsageError):
        candidates.append(sshconfig.host_alias(name))
    for alias in filter(None, candidates):
        with contextlib.suppress(UsageError):
            sshconfig.host_alias(alias, prefix="")  # a damaged label names nothing ssh could use
            if all(this_box(e) for e in entries if e.alias == alias):
                found.add(alias)
    return sorted(found)
