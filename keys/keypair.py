"""Ed25519 key pairs in OpenSSH format: the user's login key and each box's host key."""

from __future__ import annotations

import base64
import os
import shlex
import socket
import struct
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
    devbox_key: bool = False  # devbox's own key, not one the user passed with --identity


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
    """Return devbox's own login key, creating it (0600, in a 0700 dir) on first use.

    Its `.pub` is devbox's file too: a missing one, or one that is not the private key's public
    half (the box would be given a key nobody can log in with), is written again from the key.
    """
    path = path or paths.user_key_path()
    pub = path.with_name(path.name + ".pub")
    try:
        paths.ensure_private_dir(path.parent)
        with locked(path):
            if not path.exists():
                pair = generate_ed25519(f"devbox-{owner_name()}@{socket.gethostname()}")
                atomic_write(path, pair.private_openssh, 0o600)
                atomic_write(pub, pair.public_line + "\n", 0o644)
            else:
                _repair_pub(path, pub)
        return Identity(path, _read_pub(pub), devbox_key=True)
    except OSError as exc:
        where = exc.filename or path.parent
        raise DevboxError(
            f"cannot set up devbox's key in {path.parent}: {where}: {exc.strerror or exc}",
            "make it writable, or point XDG_CONFIG_HOME at a directory of yours",
        ) from None


def _repair_pub(path: Path, pub: Path) -> None:
    """Write devbox's `.pub` again from its private key when it is missing or another key's."""
    try:
        derived = _derived_public_line(path, _load_private(path))
    except UsageError:
        raise DevboxError(
            f"devbox's key {path} is not a private key devbox can read",
            f"move it and {pub.name} away: devbox makes a new key, and `devbox up` gives it to each box",
        ) from None
    if derived is None:
        if not pub.exists():
            raise UsageError(f"cannot read the public key of encrypted {path}", f"save it as {pub}")
        return  # an encrypted key in PEM format: its .pub cannot be checked
    if not pub.exists() or public_key_blob(_read_pub(pub)) != derived:
        atomic_write(pub, derived + "\n", 0o644)


def load_identity(path: Path) -> Identity:
    """Use the user's own key (`--identity PATH`), checked before anything is created.

    A passphrase-protected key works only through a running ssh-agent (devbox never asks for
    passphrases), so without one it is refused up front with the fix. A `.pub` beside the key
    that is not its public half is refused too: the box would accept only that other key.
    """
    path = path.expanduser().absolute()
    if not path.exists():
        raise UsageError(f"identity file {path} does not exist", "pass the private key file to --identity")
    if not path.is_file():
        raise UsageError(f"identity file {path} is not a file", "pass the private key file to --identity")
    try:
        key = _load_private(path)
    except OSError as exc:
        raise UsageError(
            f"cannot read identity file {path}: {exc.strerror or exc}", "pass a private key file of yours"
        ) from None
    _check_private_mode(path)
    encrypted = key is None
    if encrypted and not os.environ.get("SSH_AUTH_SOCK"):
        raise UsageError(
            f"{path} is passphrase-protected and no ssh-agent is running",
            f"start one and add the key (`eval $(ssh-agent)`; `ssh-add {path}`), or omit --identity",
        )
    derived = _derived_public_line(path, key)
    pub = path.with_name(path.name + ".pub")
    if pub.is_file():
        line = _read_pub(pub)
        if derived is not None and public_key_blob(line) != derived:
            raise UsageError(
                f"{pub} does not match {path}",
                f"regenerate it with `ssh-keygen -y -f {shlex.quote(str(path))} > {shlex.quote(str(pub))}`",
            )
        return Identity(path, line, encrypted)
    if derived is None:
        raise UsageError(f"cannot read the public key of encrypted {path}", f"save it as {path}.pub")
    return Identity(path, derived, encrypted)


def _check_private_mode(path: Path) -> None:
    """Refuse a key of the user's with any group or other permission: OpenSSH ignores it (its login
    would fail where devbox's own, through paramiko, works), by the same rule ssh applies."""
    st = path.stat()
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        raise UsageError(
            f"{path} is open to others (mode {st.st_mode & 0o777:o}), so ssh will not use it",
            f"`chmod 600 {shlex.quote(str(path))}`",
        )


def _read_pub(pub: Path) -> str:
    """A .pub file's line; bytes that are not text make it a line that matches no key."""
    return pub.read_bytes().decode(errors="replace").strip()


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


def _public_line(key) -> str:
    """'type base64' of a loaded private key, as ssh-keygen -y prints it (without a comment)."""
    from cryptography.hazmat.primitives import serialization

    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return public.decode()


def _derived_public_line(path: Path, key) -> str | None:
    """The public line of `key`, the private key loaded from `path` (None: it is encrypted); None
    when it is encrypted in a format that does not carry its public key in the clear (PEM)."""
    return _public_line(key) if key is not None else _openssh_public_line(path.read_bytes())


_OPENSSH_BEGIN = b"-----BEGIN OPENSSH PRIVATE KEY-----"
_OPENSSH_END = b"-----END OPENSSH PRIVATE KEY-----"


def _openssh_public_line(data: bytes) -> str | None:
    """'type base64' of the public key an OpenSSH-format key file holds in the clear, even when
    its private part is passphrase-protected; None for other formats (PEM) or a damaged file."""
    start, end = data.find(_OPENSSH_BEGIN), data.find(_OPENSSH_END)
    if start < 0 or end < start:
        return None
    try:
        raw = base64.b64decode(b"".join(data[start + len(_OPENSSH_BEGIN) : end].split()), validate=True)
        magic = b"openssh-key-v1\0"
        if not raw.startswith(magic):
            return None
        pos = len(magic)
        for _ in range(3):  # cipher name, KDF name, KDF options
            pos += 4 + struct.unpack_from(">I", raw, pos)[0]
        pos += 4  # the number of keys: one in every file ssh-keygen writes
        (size,) = struct.unpack_from(">I", raw, pos)
        blob = raw[pos + 4 : pos + 4 + size]
        (kind_size,) = struct.unpack_from(">I", blob)
        kind = blob[4 : 4 + kind_size].decode("ascii")
    except (ValueError, struct.error):  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None
    if len(blob) != size or not kind:
        return None
    return f"{kind} {base64.b64encode(blob).decode()}"
