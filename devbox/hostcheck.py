"""`devbox host check` and `devbox host trust`: is a server usable, and do we know its key.

A check is one line: what was looked at, whether it is fine, and the fix when it is not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from devbox import allocation
from devbox.engine import Engine, describe_error
from devbox.errors import DevboxError, UsageError
from devbox.hosts import Host

if TYPE_CHECKING:
    from devbox.boxes import Box
from devbox.tunnel import HostKeyUnknown, Tunnel, fingerprints

OK, WARN, FAIL = "ok", "warn", "fail"
LOW_DISK_GIB = 20


@dataclass(frozen=True)
class Check:
    what: str  # "ssh", "docker", "nvidia runtime", "gpus", "disk"
    status: str  # OK, WARN or FAIL
    detail: str
    fix: str = ""


def check(host: Host, ssh_config: Path | None = None) -> list[Check]:
    """Reachability, Docker, NVIDIA runtime, GPUs and free disk of `host`, stopping at the first
    check the others depend on."""
    checks: list[Check] = []
    if not host.is_local:
        tunnel = Tunnel.for_host(host.name, host.ssh_target, ssh_config)
        started = time.monotonic()
        try:
            login = tunnel.open(fresh=True)  # a check logs in, whatever a master remembers
        except UsageError:
            raise  # bad input here (a setting), not a fact about the host
        except DevboxError as exc:
            return [Check("ssh", FAIL, exc.message, exc.hint or "")]
        ms = (time.monotonic() - started) * 1000
        checks.append(
            Check("ssh", OK, f"{host.destination}: logged in as {login.name} (uid {login.uid}), {ms:.0f} ms")
        )
    try:
        engine = Engine.connect(host, ssh_config=ssh_config)
        version = engine.client.version()
    except DevboxError as exc:
        return [*checks, Check("docker", FAIL, exc.message, exc.hint or "")]
    checks.append(
        Check("docker", OK, f"Docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')})")
    )
    checks.append(_runtime(engine))
    checks.append(_gpus(engine))
    checks.append(_disk(engine))
    return checks


def _runtime(engine: Engine) -> Check:
    try:
        support = allocation.docker_gpu_support(engine)
    except Exception as exc:  # the probe container failing in some new way must not end the check
        return Check("nvidia runtime", WARN, f"could not tell: {describe_error(exc)}")
    if support is True:
        return Check("nvidia runtime", OK, "Docker can pass GPUs to containers")
    if support is False:
        return Check(
            "nvidia runtime",
            FAIL,
            "Docker cannot pass GPUs to containers",
            "install the NVIDIA Container Toolkit",
        )
    return Check(
        "nvidia runtime", WARN, "could not tell yet (no devbox image on this engine)", "run `devbox up` once"
    )


def _gpus(engine: Engine) -> Check:
    try:
        inv = allocation.inventory(engine, required=True)
    except DevboxError as exc:
        return Check("gpus", WARN, exc.message, exc.hint or "")
    assert inv is not None
    held = allocation.held_gpus(engine, inv)
    names = sorted({g.name for g in inv.gpus})
    return Check("gpus", OK, f"{len(inv.gpus)} × {', '.join(names) or '-'}; {len(held)} held by boxes")


def _disk(engine: Engine) -> Check:
    root = str(engine.client.info().get("DockerRootDir") or "/var/lib/docker")
    try:
        free_gib = _free_gib(engine, root)
    except DevboxError as exc:
        return Check("disk", WARN, f"free space under {root} unknown: {exc.message}")
    if free_gib < LOW_DISK_GIB:
        return Check(
            "disk",
            WARN,
            f"{free_gib:.0f} GiB free under {root}",
            "images and boxes need room: prune or grow it",
        )
    return Check("disk", OK, f"{free_gib:.0f} GiB free under {root}")


def _free_gib(engine: Engine, path: str) -> float:
    # df runs where the data root is; its POSIX output is the same everywhere.
    out = engine.run_on_host(["df", "-Pk", path]) if engine.tunnel else _local_df(path)
    fields = out.strip().splitlines()[-1].split()
    try:
        return int(fields[3]) / 1024 / 1024
    except (IndexError, ValueError):
        raise DevboxError(f"unexpected df output: {out.strip()[:100]}") from None


def _local_df(path: str) -> str:
    import shutil

    try:
        free = shutil.disk_usage(path).free
    except OSError as exc:
        raise DevboxError(exc.strerror or str(exc)) from None
    return f"Filesystem 1K-blocks Used Available\nlocal 0 0 {free // 1024}\n"


# ---------------------------------------------------------------- trust


@dataclass(frozen=True)
class TrustResult:
    fingerprints: tuple[str, ...]
    recorded_in: Path | None  # None: the key was known already


def trust(host: Host, confirm: Callable[[list[str]], bool], ssh_config: Path | None = None) -> TrustResult:
    """Record the server's host key in the user's known_hosts when `confirm` (shown the
    fingerprints) says yes. A known key is left as it is; a changed key is refused."""
    if host.is_local:
        raise UsageError("the local engine has no host key to trust", "name a host from `devbox host ls`")
    tunnel = Tunnel.for_host(host.name, host.ssh_target, ssh_config)
    try:
        tunnel.open()
        return TrustResult((), None)
    except HostKeyUnknown:
        pass
    lines = tunnel.scan_host_key()
    shown = fingerprints(lines)
    if not confirm(shown):
        raise DevboxError(f"{host.name}'s host key was not recorded", "run again and confirm, or pass --yes")
    path = tunnel.record_host_key(lines)
    tunnel.open()  # proves the recorded key is the one OpenSSH now accepts
    return TrustResult(tuple(shown), path)


# ---------------------------------------------------------------- doctor


def doctor(host: Host, box: str | None = None, ssh_config: Path | None = None) -> list[Check]:
    """Everything between this machine and its boxes: the host checks, devbox's files here, and
    each box's sshd answering with its pinned key (the one box `box`, or all of yours there)."""
    checks = check(host, ssh_config)
    checks += _client_files(ssh_config)
    if any(c.status == FAIL and c.what in ("ssh", "docker") for c in checks):
        return checks
    engine = Engine.connect(host, ssh_config=ssh_config)
    from devbox import boxes

    targets = [boxes.get_box(engine, box)] if box else boxes.list_boxes(engine, engine.owner)
    checks += [_box_login(engine, b) for b in targets]
    checks += [_box_isolation(b) for b in targets]
    return checks


def _client_files(ssh_config: Path | None) -> list[Check]:
    from devbox import paths, sshconfig

    checks = []
    user_config = sshconfig.user_config_path(ssh_config)
    try:
        text = user_config.read_bytes().decode("utf-8", "surrogateescape")
    except OSError:
        text = ""
    if sshconfig.config_includes(text):
        checks.append(Check("ssh config", OK, f"{user_config} includes devbox's entries before any Host"))
    else:
        checks.append(
            Check(
                "ssh config",
                FAIL,
                f"{user_config} does not include devbox's entries (before any Host/Match)",
                f"add this line at its top: {sshconfig.include_line()}",
            )
        )
    for path, mode in (
        (paths.config_dir(), 0o700),
        (paths.user_key_path(), 0o600),
        (paths.known_hosts_path(), 0o600),
    ):
        if not path.exists():
            continue
        actual = path.stat().st_mode & 0o777
        if actual & ~mode:
            checks.append(
                Check("key files", FAIL, f"{path} is mode {actual:o}, not {mode:o}", f"chmod {mode:o} {path}")
            )
    if not any(c.what == "key files" for c in checks):
        checks.append(Check("key files", OK, f"{paths.config_dir()}: private"))
    return checks


def _box_isolation(box: Box) -> Check:
    from devbox import network

    what = f"box {box.name} network"
    if box.isolated:
        return Check(what, OK, f"on {network.NAME}: other boxes cannot reach it")
    return Check(
        what,
        WARN,
        f"on {', '.join(box.networks) or 'no network'}: other containers there can reach its sshd",
        f"`devbox rm {box.name}` then `devbox up {box.name} ...` moves it (the home volume is kept)",
    )


def _box_login(engine: Engine, box: Box) -> Check:
    from devbox import boxes, sshclient

    what = f"box {box.name}"
    if not box.running:
        return Check(what, WARN, f"{box.status}", f"`devbox start {box.name}`")
    try:
        sshclient.connect(boxes.login_target(engine, box), boxes.identity_of(box), timeout=10).close()
    except DevboxError as exc:
        return Check(what, FAIL, exc.message, exc.hint or f"`devbox up {box.name}` re-pins and re-authorizes")
    except Exception as exc:  # paramiko's many ways to say no
        return Check(
            what, FAIL, f"sshd did not accept a login: {describe_error(exc)}", f"`devbox restart {box.name}`"
        )
    return Check(what, OK, f"sshd on port {box.port} answers with its pinned key; login as {box.user} works")
