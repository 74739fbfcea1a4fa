"""What makes a box trust its user and the user trust the box: the files in /etc/devbox.

They travel through the Docker API (put_archive/get_archive), never host paths, so the same code
works against a remote engine. Access to that API is already the root of trust for a box, which
is why a user who lost their devbox config dir can be let back in through it.
"""

from __future__ import annotations

import io
import tarfile
from importlib import resources
from string import Template
from typing import TYPE_CHECKING

from devbox.errors import DevboxError
from devbox.keys import authorized_keys, known_hosts
from devbox.keys.keypair import Identity, KeyPair

if TYPE_CHECKING:
    from docker.models.containers import Container

CONF_DIR = "/etc/devbox"
HOST_KEY_PUB = f"{CONF_DIR}/ssh_host_ed25519_key.pub"
AUTHORIZED_KEYS = f"{CONF_DIR}/authorized_keys"


def sshd_config(user: str) -> str:
    template = (resources.files("devbox.images") / "sshd_config.in").read_text()
    return Template(template).substitute(user=user)


def session_script() -> bytes:
    """What sshd runs for every session (sshd_config's ForceCommand)."""
    return (resources.files("devbox.images") / "session.sh").read_bytes()


def payload(user: str, identity: Identity, host_key: KeyPair) -> bytes:
    """/etc/devbox as a tar: sshd_config and its session script, the box's host key, authorized_keys."""
    return _tar(
        {
            "devbox/sshd_config": (sshd_config(user).encode(), 0o644),
            "devbox/session.sh": (session_script(), 0o755),
            "devbox/ssh_host_ed25519_key": (host_key.private_openssh, 0o600),
            "devbox/ssh_host_ed25519_key.pub": (host_key.public_line.encode() + b"\n", 0o644),
            "devbox/authorized_keys": (authorized_keys.render([identity.public_line]), 0o644),
        },
        directory="devbox",
    )


def refresh(container: Container, alias: str, identity: Identity) -> None:
    """Re-pin the box's host key from the box itself and authorize `identity` in it.

    Lets a user back in after losing ~/.config/devbox or switching keys (--identity), without
    ever trusting the network: both files come through the Docker API, in one read of their
    folder (each read of a running container's files costs the engine tens of milliseconds).
    """
    files = _read(container, CONF_DIR, (HOST_KEY_PUB, AUTHORIZED_KEYS))
    known_hosts.pin(alias, files[HOST_KEY_PUB].decode().strip())
    updated = authorized_keys.with_key(files[AUTHORIZED_KEYS].decode(), identity.public_line)
    if updated is not None:
        container.put_archive(CONF_DIR, _tar({"authorized_keys": (updated, 0o644)}))


def _read(container: Container, folder: str, paths: tuple[str, ...]) -> dict[str, bytes]:
    """The files `paths` in `folder` of the container, read through one archive of the folder."""
    import docker

    try:
        stream, _stat = container.get_archive(folder)
    except docker.errors.APIError as exc:
        raise DevboxError(
            f"cannot read {folder} from {container.name}: it is not a devbox or it is damaged",
            "recreate it: `devbox rm NAME` then `devbox up NAME` (the home volume is kept)",
        ) from exc
    parent = folder.rstrip("/").rpartition("/")[0]
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        for member in tar:
            path = f"{parent}/{member.name}"
            if path in paths and member.isfile():
                found[path] = tar.extractfile(member).read()  # type: ignore[union-attr]
    for path in paths:
        if path not in found:
            raise DevboxError(
                f"{path} in {container.name} is missing or not a file",
                "recreate it: `devbox rm NAME` then `devbox up NAME` (the home volume is kept)",
            )
    return found


def _tar(files: dict[str, tuple[bytes, int]], directory: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        if directory:
            d = tarfile.TarInfo(directory)
            d.type, d.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(d)
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
