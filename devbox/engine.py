"""Talking to a Docker engine: connection, finding boxes by label, and an engine-wide lock.

Docker's labels are the source of truth for which boxes exist; every front end goes through here.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devbox import paths
from devbox.errors import DevboxError, UsageError
from devbox.hosts import LOCAL_HOST, Host
from devbox.spec import HostFacts, local_access
from devbox.tunnel import RemoteLogin, Tunnel
from devbox.users import LoginUser, box_user, local_user, owner_name

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

LABEL_PREFIX = "devbox."
# The lock lives while its holder keeps talking: the holder sends a byte on the lock container's
# stdin every LOCK_BEAT_S, and the container exits when LOCK_SILENCE_S pass without one or stdin
# closes. So a killed holder frees it at once, and one the engine cannot see die (a laptop that
# dropped off the network, a stopped process) within seconds. Holders keep it for seconds
# (choosing GPUs, creating and starting one container); LOCK_MAX_HOLD_S caps even a live one.
LOCK_BEAT_S = 1.0
LOCK_SILENCE_S = 8
LOCK_MAX_HOLD_S = 60
LOCK_WAIT_S = 90.0
# A lock container that was created but never started within this long belongs to a dead run.
LOCK_UNSTARTED_S = 5.0
_LOCK_SCRIPT = f'while [ -n "$(timeout {LOCK_SILENCE_S} head -c 1)" ]; do :; done'


def L(key: str) -> str:  # noqa: N802 - short on purpose: label names are spelled out wherever used
    """The full Docker label name for a devbox key: L("gpus") == "devbox.gpus"."""
    return LABEL_PREFIX + key


@dataclass(frozen=True)
class Listed:
    """A container as Docker's list reports it: its ID, state (running, exited, …) and labels, its
    name, and the networks and mounts it has (as an inspect gives them; not its start time or limits)."""

    id: str
    status: str
    labels: dict[str, str]
    name: str = ""
    networks: tuple[str, ...] = ()
    mounts: tuple[dict, ...] = ()

    @classmethod
    def of(cls, row: dict) -> Listed:
        names = row.get("Names") or [""]
        networks = ((row.get("NetworkSettings") or {}).get("Networks") or {}).keys()
        return cls(
            row["Id"],
            str(row.get("State") or ""),
            dict(row.get("Labels") or {}),
            names[0].lstrip("/"),
            tuple(sorted(networks)),
            tuple(row.get("Mounts") or ()),
        )


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
            client = docker.from_env()  # asks the engine's API version: it answers, or this fails
        except docker.errors.DockerException as exc:
            raise DevboxError(
                f"cannot reach the Docker engine at {where}: {_why_unreachable(exc)}",
                "start Docker (or dockerd), check DOCKER_HOST, and that your user is in the docker group",
            ) from None
        _one_pool(client, "the Docker engine", "check that Docker still runs here")
        return cls(client, client.api.base_url)

    @classmethod
    def _connect_remote(cls, host: Host, ssh_config: Path | None) -> Engine:
        import docker

        tunnel = Tunnel.for_host(host.name, host.ssh_target, ssh_config)
        login = tunnel.open()
        remote = host.docker_socket or _socket_path(host.name, login.docker_host)
        local = tunnel.forward(remote)
        link, hint = f"the connection to {host.name}", _LINK_HINT.format(host=host.name)
        try:
            client = docker.DockerClient(base_url=f"unix://{local}", timeout=60)  # asks its API version
        except docker.errors.DockerException as exc:
            if _link_lost(exc):  # the ssh link dropped, not Docker's doing
                raise _lost(link, exc, hint) from None
            raise DevboxError(
                f"cannot reach the Docker engine on {host.name} ({remote} there): {describe_error(exc)}",
                f"check that Docker runs on {host.name} and that {login.name} is in its docker group",
            ) from None
        _one_pool(client, link, hint)
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
        return HostFacts(
            self.box_user(),
            self.home(),
            self.path_exists,
            where,
            self.path_access,
            HostFacts.unowned_dir_check(self.tunnel),
        )

    def path_access(self, path: str, write: bool) -> bool:
        """Whether the host login may read `path` (a directory: also enter it), and write it too
        when `write`: devbox never hands a box more than its user has on the host."""
        if self.tunnel is None:
            return local_access(path, write)
        test = 'test -r "$1" && { test ! -d "$1" || test -x "$1"; } && { test "$2" = r || test -w "$1"; }'
        done = self.tunnel.run(["sh", "-c", test, "sh", path, "w" if write else "r"])
        if done.returncode not in (0, 1):
            raise self.tunnel.failure(done.stderr)
        return done.returncode == 0

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
        # ignore_removed: a colleague's `rm` racing with this listing must not fail our command.
        return self.client.containers.list(
            all=True, filters={"label": _box_filters(owner, name)}, ignore_removed=True
        )

    def listed(self, owner: str | None = None, name: str | None = None) -> list[Listed]:
        """Every devbox container (optionally one owner's or one name's) as Docker's list shows
        it: one call, where boxes() inspects each container too (a round trip each on a server).
        For what reads only labels, state, networks and mounts: GPUs held, ports taken, listings."""
        rows = self.client.api.containers(all=True, filters={"label": _box_filters(owner, name)})
        return [Listed.of(r) for r in rows]

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
    def lock(
        self,
        name: str,
        image: str,
        *,
        wait: float = LOCK_WAIT_S,
        on_wait: Callable[[str], None] | None = None,
    ) -> Iterator[None]:
        """An engine-wide mutex shared by every devbox client of this engine, local or remote.

        Container names are unique per engine, so creating a container with a fixed name is an
        atomic test-and-set that works across users and machines. The lock container reads its
        stdin, attached to this process's connection, and exits (removing itself) on EOF or when
        this process stops sending its heartbeat. So a dead holder's lock frees itself at once, a
        silent one within seconds, and no client ever has to judge another's lock by age.
        """
        cname = f"devbox-lock-{name}"
        deadline = time.monotonic() + wait
        while True:
            held = self._try_lock(cname, name, image)
            if held is not None:
                break
            holder = self._lock_holder(cname)
            if time.monotonic() > deadline:
                raise DevboxError(
                    f"timed out after {wait:g} s waiting for the engine lock{holder}",
                    "another devbox run is choosing GPUs there; try again in a moment",
                )
            if on_wait is not None and holder:
                on_wait(f"Waiting for the engine lock{holder}")
                on_wait = None  # once: the holder is named, and the spinner shows we wait
            time.sleep(0.2)
        container, sock = held
        stop = threading.Event()
        beat = threading.Thread(target=_heartbeat, args=(sock, stop), name=f"{cname}-beat", daemon=True)
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join(timeout=LOCK_BEAT_S * 2)
            with contextlib.suppress(OSError):
                sock.close()
            # EOF on its stdin already ends the lock container, which removes itself; removing it
            # too frees the name for waiters sooner, and the holder need not wait for that.
            threading.Thread(
                target=self._remove_quietly, args=(container.id, True), name=f"{cname}-free", daemon=True
            ).start()

    def _try_lock(self, cname: str, name: str, image: str) -> tuple[Container, Any] | None:
        """Take the lock: the container and the attached stdin that keeps it alive; None if taken."""
        import docker

        who = f"{owner_name()}@{socket.gethostname()} pid {os.getpid()}"
        try:
            container = self.client.containers.create(
                image,
                name=cname,
                labels={L("lock"): name, L("lock-holder"): who},
                # `$(...)` is empty on EOF and on silence alike; coreutils and busybox both have
                # timeout and head -c.
                entrypoint=["timeout", str(LOCK_MAX_HOLD_S), "sh", "-c", _LOCK_SCRIPT],
                stdin_open=True,  # docker-py sets StdinOnce with it: EOF when we go
                auto_remove=True,
                network_disabled=True,
            )
        except docker.errors.ImageNotFound as exc:
            raise DevboxError(
                f"cannot take the engine lock {cname}: {describe_error(exc)}",
                "that image is gone from the engine; `devbox up` with the box's --image builds it again",
            ) from None
        except docker.errors.APIError as exc:
            # 409: the name is taken, someone holds the lock. 404: a waiter removed our new container
            # as a dead run's before docker-py read it back (see below): it is gone, try again.
            if exc.status_code in (404, 409):
                return None
            raise DevboxError(f"cannot take the engine lock {cname}: {describe_error(exc)}") from None
        sock = None
        try:
            sock = self.client.api.attach_socket(container.id, params={"stdin": 1, "stream": 1})
            container.start()
        except docker.errors.APIError as exc:
            self._discard(container.id, sock)
            # Until it starts, our lock container looks like one a dead run left behind, and other
            # waiters remove those: attaching or starting then fails with 404 (gone) or 409
            # (marked for removal). It was never ours to hold: try again, like any waiter.
            if exc.status_code in (404, 409):
                return None
            raise DevboxError(f"cannot take the engine lock {cname}: {describe_error(exc)}") from None
        except BaseException:
            self._discard(container.id, sock)
            raise
        return container, sock

    def _discard(self, container_id: str, sock: Any) -> None:
        """Give up a lock container we created but could not start."""
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        self._remove_quietly(container_id)

    def _lock_holder(self, cname: str) -> str:
        """' held by WHO for N s' for a live lock; a dead one is removed (by ID: a waiter that got
        there first may have taken the lock anew under the same name) and '' returned."""
        import docker

        try:
            lock = self.client.api.inspect_container(cname)
        except docker.errors.NotFound:
            return ""
        state = lock.get("State") or {}
        age = self.age(lock["Created"])
        if state.get("Running"):
            who = (lock.get("Config") or {}).get("Labels", {}).get(L("lock-holder"), "another devbox run")
            return f" held by {who} for {max(age, 0):.0f} s"
        if state.get("Status") != "created" or age > LOCK_UNSTARTED_S:
            self._remove_quietly(lock["Id"])
        return ""

    def age(self, stamp: str) -> float:
        """Seconds since Docker's timestamp `stamp`, by the engine's clock (a server's clock need
        not agree with this machine's)."""
        return (_parse_time(self.client.info()["SystemTime"]) - _parse_time(stamp)).total_seconds()

    def _remove_quietly(self, container_id: str, background: bool = False) -> None:
        """Remove a container that may be gone already or being removed by another client
        (`background`: any failure too is left to the container's own auto-removal)."""
        import docker

        try:
            self.client.api.remove_container(container_id, force=True)
        except docker.errors.APIError as exc:
            if exc.status_code not in (404, 409) and not background:
                raise
        except Exception:
            if not background:
                raise


def _heartbeat(sock: Any, stop: threading.Event) -> None:
    """Keep the lock: one byte on its stdin each beat, until `stop` or the connection fails."""
    raw = getattr(sock, "_sock", sock)  # docker-py hands back a SocketIO over the unix socket
    while True:
        try:
            raw.sendall(b"x")
        except OSError:
            return
        if stop.wait(LOCK_BEAT_S):
            return


_LINK_HINT = "check the link (`devbox host check {host}`), then run it again"


def _one_pool(client: docker.DockerClient, link: str, hint: str) -> None:
    """Keep one connection to the engine alive across calls. docker-py keys its connection pools by
    each request's whole URL, so nearly every call opened a connection of its own: for a server,
    through its ssh master, a channel opened (one round trip more) per call.

    A connection lost mid-command (`link`: what was lost) is one DevboxError line with `hint`,
    wherever the call was made: requests' own error is no Docker error, and reached the user as
    an internal one."""
    import requests

    adapter = client.api.get_adapter(client.api.base_url)
    pooled, send = adapter.get_connection, adapter.send
    adapter.get_connection = lambda _url, proxies=None: pooled(client.api.base_url, proxies)

    def checked_send(*args: Any, **kwargs: Any) -> Any:
        try:
            return send(*args, **kwargs)
        except requests.exceptions.ConnectionError as exc:
            raise _lost(link, exc, hint) from None

    adapter.send = checked_send


def _link_lost(exc: BaseException) -> bool:
    import requests

    return isinstance(exc.__context__, requests.exceptions.ConnectionError)


def _lost(link: str, exc: Exception, hint: str) -> DevboxError:
    return DevboxError(f"lost {link}: {describe_error(exc)}", hint)


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


def _box_filters(owner: str | None, name: str | None) -> list[str]:
    filters = [f"{LABEL_PREFIX}name"]
    if owner is not None:
        filters.append(f"{LABEL_PREFIX}owner={owner}")
    if name is not None:
        filters.append(f"{LABEL_PREFIX}name={name}")
    return filters
