"""Talking to a Docker engine: connection, finding boxes by label, and an engine-wide lock.

Docker's labels are the source of truth for which boxes exist; every front end goes through here.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from devbox.errors import DevboxError

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
    client: docker.DockerClient
    url: str

    @classmethod
    def connect(cls, host: str | None = None) -> Engine:
        """Connect to DOCKER_HOST (or `host`) and check it answers."""
        import docker

        try:
            client = docker.DockerClient(base_url=host) if host else docker.from_env()
            client.ping()
        except docker.errors.DockerException as exc:
            where = host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
            raise DevboxError(
                f"cannot reach the Docker engine at {where}: {_why_unreachable(exc)}",
                "start Docker (or dockerd), check DOCKER_HOST, and that your user is in the docker group",
            ) from None
        return cls(client, client.api.base_url)

    @property
    def is_local(self) -> bool:
        return self.url.startswith(("http+unix://", "unix://", "npipe://", "http+docker://localhost"))

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
        """Run a command on the engine's host (for nvidia-smi): local engines only for now."""
        from devbox.gpus import local_runner

        if not self.is_local:
            raise DevboxError(
                f"cannot run {args[0]} on the engine host {self.url}", "run devbox on that host"
            )
        return local_runner(args)

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
