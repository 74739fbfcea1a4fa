"""Talking to a Docker engine: connection, finding boxes by label, and an engine-wide lock.

Docker's labels are the source of truth for which boxes exist; every front end goes through here.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from devbox.errors import DevboxError

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

LABEL_PREFIX = "devbox."
LOCK_STALE_S = 120.0


def L(key: str) -> str:  # noqa: N802 - short on purpose: label names are spelled out wherever used
    """The full Docker label name for a devbox key: L("gpus") == "devbox.gpus"."""
    return LABEL_PREFIX + key  # a lock older than this belongs to a devbox run that died


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
            where = host or os.environ.get("DOCKER_HOST") or "the local Docker engine"
            raise DevboxError(
                f"cannot reach {where}: {describe_error(exc)}",
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
        return self.client.containers.list(all=True, filters={"label": filters})

    def run_on_host(self, args: list[str]) -> str:
        """Run a command on the engine's host (for nvidia-smi): local engines only for now."""
        if not self.is_local:
            raise DevboxError(
                f"cannot run {args[0]} on the engine host {self.url}", "run devbox on that host"
            )
        proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            detail = (proc.stdout + proc.stderr).strip().splitlines()
            raise DevboxError(f"{args[0]} failed: {detail[0] if detail else f'exit {proc.returncode}'}")
        return proc.stdout

    @contextlib.contextmanager
    def lock(self, name: str, image: str, timeout: float = 90.0) -> Iterator[None]:
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
                    f"if no other devbox is running, remove it: docker rm {cname}",
                )
            time.sleep(0.1)
        try:
            yield
        finally:
            with contextlib.suppress(docker.errors.NotFound):
                holder.remove(force=True)

    def _break_stale_lock(self, cname: str) -> None:
        from datetime import UTC, datetime

        import docker

        try:
            created = self.client.api.inspect_container(cname)["Created"]
        except docker.errors.NotFound:
            return
        # Docker's timestamps carry nanoseconds; fromisoformat takes at most microseconds.
        stamp = datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00")
        if (datetime.now(UTC) - stamp).total_seconds() > LOCK_STALE_S:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_container(cname, force=True)


def describe_error(exc: Exception) -> str:
    """A docker/requests exception as one readable line."""
    text = getattr(exc, "explanation", None) or str(exc)
    return " ".join(str(text).split())[:300]
