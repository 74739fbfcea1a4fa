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

HOST_KEY_PUB = "/etc/devbox/ssh_host_ed25519_key.pub"
AUTHORIZED_KEYS = "/etc/devbox/authorized_keys"


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
    ever trusting the network: both files come through the Docker API.
    """
    host_pub = _read(container, HOST_KEY_PUB)
    known_hosts.pin(alias, host_pub.decode().strip())
    updated = authorized_keys.with_key(_read(container, AUTHORIZED_KEYS).decode(), identity.public_line)
    if updated is not None:
        container.put_archive("/etc/devbox", _tar({"authorized_keys": (updated, 0o644)}))


def _read(container: Container, path: str) -> bytes:
    import docker

    try:
        stream, _stat = container.get_archive(path)
    except docker.errors.APIError as exc:
        raise DevboxError(
            f"cannot read {path} from {container.name}: it is not a devbox or it is damaged",
            "recreate it: `devbox rm NAME` then `devbox up NAME` (the home volume is kept)",
        ) from exc
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.next()
        extracted = tar.extractfile(member) if member else None
        if extracted is None:
            raise DevboxError(f"{path} in {container.name} is not a file")
        return extracted.read()


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
