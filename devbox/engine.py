"""Talking to a Docker engine: connection, finding boxes by label, and an engine-wide lock.

Docker's labels are the source of truth for which boxes exist; every front end goes through here.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from devbox import paths
from devbox.errors import DevboxError, UsageError
from devbox.hosts import LOCAL_HOST, Host
from devbox.spec import HostFacts
from devbox.tunnel import RemoteLogin, Tunnel
from devbox.users import LoginUser, box_user, local_user, owner_name

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

LABEL_PREFIX = "devbox."
# A lock older than this belongs to a devbox run that died (holders keep it for seconds);
# DEVBOX_LOCK_STALE_S overrides it, for admins and tests.
LOCK_STALE_S = 120.0


def L(key: str) -> str:  # noqa: N802 - short on purpose: label names are spelled out wherever used
    """The full Docker label name for a devbox key: L("gpus") == "devbox.gpus"."""
    return LABEL_PREFIX + key


@dataclass
class Engine:
    """A Docker engine and the host it runs on: this machine's, or a server's through its ssh master.

    Everything that differs between local and remote lives here (who we are on the host, running
    a command there, checking a path there, reaching a port on its 127.0.0.1), so the lifecycle
    code above it has one path for both.
    """

    client: docker.DockerClient
    url: str
    host: Host = LOCAL_HOST
    tunnel: Tunnel | None = None
    login: RemoteLogin | None = None

    @classmethod
    def connect(cls, host: Host = LOCAL_HOST, *, ssh_config: Path | None = None) -> Engine:
        """Connect to `host`'s engine (the local one: DOCKER_HOST) and check it answers."""
        if not host.is_local:
            return cls._connect_remote(host, ssh_config)
        import docker

        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        if not where.startswith(("unix://", "npipe://")):
            raise UsageError(
                f"DOCKER_HOST={where} is not a local engine",
                "devbox reaches servers over ssh itself: `devbox host add NAME user@server`, then --host",
            )
        try:
            client = docker.from_env()
            client.ping()
        except docker.errors.DockerException as exc:
            raise DevboxError(
                f"cannot reach the Docker engine at {where}: {_why_unreachable(exc)}",
                "start Docker (or dockerd), check DOCKER_HOST, and that your user is in the docker group",
            ) from None
        return cls(client, client.api.base_url)

    @classmethod
    def _connect_remote(cls, host: Host, ssh_config: Path | None) -> Engine:
        import docker

        tunnel = Tunnel.for_host(host.name, host.ssh_target, ssh_config)
        login = tunnel.open()
        remote = host.docker_socket or _socket_path(host.name, login.docker_host)
        local = tunnel.forward(remote)
        try:
            client = docker.DockerClient(base_url=f"unix://{local}", timeout=60)
            client.ping()
        except docker.errors.DockerException as exc:
            raise DevboxError(
                f"cannot reach the Docker engine on {host.name} ({remote} there): {describe_error(exc)}",
                f"check that Docker runs on {host.name} and that {login.name} is in its docker group",
            ) from None
        return cls(client, f"{host.name}:{remote}", host, tunnel, login)

    @property
    def is_local(self) -> bool:
        return self.host.is_local

    @property
    def owner(self) -> str:
        """Who owns boxes made through this engine: the account devbox runs as on its host."""
        return self.login.name if self.login else owner_name()

    def box_user(self) -> LoginUser:
        """The login user of boxes made here: the host account's name, UID and GID."""
        if self.login is None:
            return local_user()
        return box_user(self.login.name, self.login.uid, self.login.gid)

    def home(self) -> str:
        """The host account's home, for `~` in mount sources."""
        return self.login.home if self.login else str(paths.home())

    def facts(self) -> HostFacts:
        """What a BoxSpec needs from this host: its login, home and file system."""
        where = "" if self.is_local else f" on {self.host.name}"
        return HostFacts(self.box_user(), self.home(), self.path_exists, where)

    def path_exists(self, path: str) -> bool:
        if self.tunnel is None:
            return os.path.exists(path)
        done = self.tunnel.run(["test", "-e", path])
        if done.returncode not in (0, 1):
            raise self.tunnel.failure(done.stderr)
        return done.returncode == 0

    def port_free(self, port: int) -> bool:
        """Whether `port` looks free on the host's 127.0.0.1; a remote host cannot be probed from
        here, so Docker's own bind (and a retry on another port) decides there."""
        if self.tunnel is not None:
            return True
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    def proxy_command(self, port: int) -> str | None:
        """How this machine reaches the host's 127.0.0.1:`port`: None when it is this machine."""
        return self.tunnel.proxy_command("127.0.0.1", port) if self.tunnel else None

    def boxes(self, owner: str | None = None, name: str | None = None) -> list[Container]:
        """Every devbox container (stopped ones too), optionally one owner's or one name's."""
        filters = [f"{LABEL_PREFIX}name"]
        if owner is not None:
            filters.append(f"{LABEL_PREFIX}owner={owner}")
        if name is not None:
            filters.append(f"{LABEL_PREFIX}name={name}")
        # ignore_removed: a colleague's `rm` racing with this listing must not fail our command.
        return self.client.containers.list(all=True, filters={"label": filters}, ignore_removed=True)

    def run_on_host(self, args: list[str]) -> str:
        """Run a command (nvidia-smi) on the engine's host and return its stdout.

        FileNotFoundError when the program is not there, DevboxError when it fails.
        """
        from devbox.gpus import local_runner

        if self.tunnel is None:
            return local_runner(args)
        program = os.path.basename(args[0])
        done = self.tunnel.run(args)
        if done.returncode == 127:
            raise FileNotFoundError(program)
        if done.returncode == 255:
            raise self.tunnel.failure(done.stderr)
        if done.returncode != 0:
            why = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[0]
            raise DevboxError(
                f"{program} on {self.host.name} failed (exit {done.returncode}): {why}",
                f"check that the NVIDIA driver is loaded: run {program} on {self.host.name}",
            )
        return done.stdout

    @contextlib.contextmanager
    def lock(self, name: str, image: str, timeout: float = LOCK_STALE_S + 30) -> Iterator[None]:
        """An engine-wide mutex shared by every devbox client of this engine, local or remote.

        Container names are unique per engine, so creating a (never started) container with a
        fixed name is an atomic test-and-set that works across users and machines.
        """
        import docker

        cname = f"devbox-lock-{name}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                holder = self.client.containers.create(
                    image, name=cname, labels={f"{LABEL_PREFIX}lock": name}, entrypoint=["true"]
                )
                break
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise DevboxError(f"cannot take the engine lock {cname}: {describe_error(exc)}") from None
            self._break_stale_lock(cname)
            if time.monotonic() > deadline:
                raise DevboxError(
                    f"timed out waiting for the engine lock {cname}",
                    f"another devbox run holds it; if none is running, `docker rm {cname}` frees it",
                )
            time.sleep(0.1)
        try:
            yield
        finally:
            with contextlib.suppress(docker.errors.NotFound):
                holder.remove(force=True)

    def _break_stale_lock(self, cname: str) -> None:
        """Remove a lock left by a devbox run that died, judged by the engine's own clock."""
        import docker

        try:
            lock = self.client.api.inspect_container(cname)
            now = _parse_time(self.client.info()["SystemTime"])
        except docker.errors.NotFound:
            return
        stale_after = float(os.environ.get("DEVBOX_LOCK_STALE_S") or LOCK_STALE_S)
        if (now - _parse_time(lock["Created"])).total_seconds() > stale_after:
            # By ID, not name: if another waiter broke it first and took the lock anew, the new
            # holder's container has another ID and survives.
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_container(lock["Id"], force=True)


def _socket_path(host: str, docker_host: str) -> str:
    """The server's Docker socket: its login's DOCKER_HOST when that is a unix socket."""
    if not docker_host:
        return "/var/run/docker.sock"
    if docker_host.startswith("unix://"):
        return docker_host.removeprefix("unix://")
    raise DevboxError(
        f"DOCKER_HOST on {host} is {docker_host}, not a unix socket",
        f"name the socket: `devbox host add {host} DEST --docker-socket /path/to/docker.sock`",
    )


def _parse_time(stamp: str) -> datetime:
    """Docker's RFC 3339 timestamps: nanoseconds (fromisoformat takes at most micro), and `Z` or
    a local offset (`docker info`'s SystemTime is the daemon's local time)."""
    m = re.fullmatch(r"(.*?T[\d:]+)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", stamp.strip())
    if not m:
        raise DevboxError(f"unreadable time from the Docker engine: {stamp!r}")
    head, frac, zone = m.groups()
    return datetime.fromisoformat(f"{head}.{(frac or '0')[:6]}{'+00:00' if zone == 'Z' else zone}")


def _why_unreachable(exc: Exception) -> str:
    """docker-py buries the reason in nested requests errors; name the two everyone meets."""
    text = str(exc)
    if "FileNotFoundError" in text or "No such file" in text:
        return "no socket there (is the daemon running?)"
    if "PermissionError" in text or "Permission denied" in text:
        return "permission denied on the socket"
    return describe_error(exc)


def describe_error(exc: Exception) -> str:
    """A docker/requests exception as one readable line."""
    text = getattr(exc, "explanation", None) or str(exc)
    return " ".join(str(text).split())[:300]
