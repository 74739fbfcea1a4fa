"""devbox's own known_hosts: one pinned host key per box alias, written before the first connection.

Entries are keyed by the ssh HostKeyAlias (`devbox-<name>`), not host:port, so a box keeps its
identity whatever port it gets and OpenSSH and paramiko check the same line.
"""

from __future__ import annotations

import re
from pathlib import Path

from devbox.keys.keypair import public_key_blob

from devbox import paths
from devbox.errors import DevboxError
from devbox.files import atomic_write, locked

_LINE_RE = re.compile(r"[!-~]+ [A-Za-z0-9@.-]+ [A-Za-z0-9+/=]+")


def _path(path: Path | None) -> Path:
    path = path or paths.known_hosts_path()
    try:
        paths.ensure_private_dir(path.parent)
    except OSError as exc:
        raise DevboxError(
            f"cannot create {path.parent}: {exc.strerror or exc}",
            "make it writable, or point XDG_CONFIG_HOME at a directory of yours",
        ) from None
    return path


def _entries(path: Path) -> list[str]:
    """The well-formed lines (`alias keytype base64`); anything else (a damaged or binary file)
    is dropped, so the next write repairs the file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DevboxError(f"cannot read {path}: {exc.strerror or exc}") from None
    return [ln for ln in raw.decode("utf-8", "replace").splitlines() if _LINE_RE.fullmatch(ln)]


def _lines_without(path: Path, alias: str) -> list[str]:
    return [ln for ln in _entries(path) if ln.split(" ", 1)[0] != alias]


def _write(path: Path, lines: list[str]) -> None:
    try:
        atomic_write(path, "".join(ln + "\n" for ln in lines), 0o600)
    except OSError as exc:
        raise DevboxError(f"cannot write {path}: {exc.strerror or exc}", "check that it is yours") from None


def pin(alias: str, public_line: str, path: Path | None = None) -> None:
    """Make `public_line`'s key the only key trusted for `alias`."""
    path = _path(path)
    with locked(path):
        _write(path, _lines_without(path, alias) + [f"{alias} {public_key_blob(public_line)}"])


def unpin(alias: str, path: Path | None = None) -> None:
    path = _path(path)
    with locked(path):
        if path.exists():
            _write(path, _lines_without(path, alias))


def lookup(alias: str, path: Path | None = None) -> str | None:
    """The pinned 'ssh-ed25519 AAAA...' for `alias`, or None."""
    for ln in _entries(path or paths.known_hosts_path()):
        host, _, key = ln.partition(" ")
        if host == alias:
            return key.strip()
    return None
