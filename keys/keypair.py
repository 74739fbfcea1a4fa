"""Ed25519 key pairs in OpenSSH format: the user's login key and each box's host key."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from devbox import paths
from devbox.errors import DevboxError, UsageError
from devbox.files import atomic_write, locked
from devbox.users import owner_name

# cryptography is imported inside the functions that need it: `devbox ls` and `--help` stay fast.


@dataclass(frozen=True)
class KeyPair:
    private_openssh: bytes
    public_line: str  # "ssh-ed25519 AAAA... comment", as it goes into authorized_keys


@dataclass(frozen=True)
class Identity:
    """The key the user logs in with: a private key file and its public line."""

    private_path: Path
    public_line: str
    encrypted: bool = False  # passphrase-protected: devbox logs in through the user's ssh-agent


def generate_ed25519(comment: str) -> KeyPair:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return KeyPair(private, f"{public.decode()} {comment}".strip())


def public_key_blob(public_line: str) -> str:
    """'ssh-ed25519 AAAA...' without the comment: what known_hosts and comparisons use."""
    parts = public_line.split()
    return " ".join(parts[:2])


def ensure_user_key(path: Path | None = None) -> Identity:
    """Return devbox's own login key, creating it (0600, in a 0700 dir) on first use."""
    path = path or paths.user_key_path()
    pub = path.with_name(path.name + ".pub")
    try:
        paths.ensure_private_dir(path.parent)
        with locked(path):
            if not path.exists():
                pair = generate_ed25519(f"devbox-{owner_name()}@{socket.gethostname()}")
                atomic_write(path, pair.private_openssh, 0o600)
                atomic_write(pub, pair.public_line + "\n", 0o644)
            elif not pub.exists():
                atomic_write(pub, _public_line_from_private(path) + "\n", 0o644)
        return Identity(path, pub.read_text().strip())
    except OSError as exc:
        where = exc.filename or path.parent
        raise DevboxError(
            f"cannot set up devbox's key in {path.parent}: {where}: {exc.strerror or exc}",
            "make it writable, or point XDG_CONFIG_HOME at a directory of yours",
        ) from None


def load_identity(path: Path) -> Identity:
    """Use the user's own key (`--identity PATH`), checked before anything is created.

    A passphrase-protected key works only through a running ssh-agent (devbox never asks for
    passphrases), so without one it is refused up front with the fix.
    """
    path = path.expanduser().absolute()
    if not path.is_file():
        raise UsageError(f"identity file {path} does not exist", "pass the private key file to --identity")
    encrypted = _is_encrypted(path)
    if encrypted and not os.environ.get("SSH_AUTH_SOCK"):
        raise UsageError(
            f"{path} is passphrase-protected and no ssh-agent is running",
            f"start one and add the key (`eval $(ssh-agent)`; `ssh-add {path}`), or omit --identity",
        )
    pub = path.with_name(path.name + ".pub")
    if pub.is_file():
        return Identity(path, pub.read_text().strip(), encrypted)
    return Identity(path, _public_line_from_private(path), encrypted)


def _load_private(path: Path):
    """The key in `path` (OpenSSH or PEM format); None when it is passphrase-protected."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    data = path.read_bytes()
    for load in (serialization.load_ssh_private_key, serialization.load_pem_private_key):
        try:
            return load(data, password=None)
        except TypeError:
            return None  # cryptography's way of saying "needs a password"
        except (ValueError, UnsupportedAlgorithm):
            continue
    raise UsageError(
        f"{path} is not a private key devbox can read",
        "pass an OpenSSH or PEM private key (ed25519, ecdsa or rsa; not a security-key -sk key)",
    )


def _is_encrypted(path: Path) -> bool:
    return _load_private(path) is None


def _public_line_from_private(path: Path) -> str:
    from cryptography.hazmat.primitives import serialization

    key = _load_private(path)
    if key is None:
        raise UsageError(f"cannot read the public key of encrypted {path}", f"save it as {path}.pub")
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return public.decode()
