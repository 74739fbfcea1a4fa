"""devbox's own known_hosts: one pinned host key per box alias, written before the first connection.

Entries are keyed by the ssh HostKeyAlias (`devbox-<name>`), not host:port, so a box keeps its
identity whatever port it gets and OpenSSH and paramiko check the same line.
"""

from __future__ import annotations

from pathlib import Path

from devbox.keys.keypair import public_key_blob

from devbox import paths
from devbox.files import atomic_write, locked


def _path(path: Path | None) -> Path:
    path = path or paths.known_hosts_path()
    paths.ensure_private_dir(path.parent)
    return path


def _lines_without(path: Path, alias: str) -> list[str]:
    if not path.exists():
        return []
    return [ln for ln in path.read_text().splitlines() if ln.split(" ", 1)[0] != alias]


def pin(alias: str, public_line: str, path: Path | None = None) -> None:
    """Make `public_line`'s key the only key trusted for `alias`."""
    path = _path(path)
    with locked(path):
        lines = _lines_without(path, alias) + [f"{alias} {public_key_blob(public_line)}"]
        atomic_write(path, "\n".join(lines) + "\n", 0o600)


def unpin(alias: str, path: Path | None = None) -> None:
    path = _path(path)
    with locked(path):
        if path.exists():
            lines = _lines_without(path, alias)
            atomic_write(path, "".join(ln + "\n" for ln in lines), 0o600)


def lookup(alias: str, path: Path | None = None) -> str | None:
    """The pinned 'ssh-ed25519 AAAA...' for `alias`, or None."""
    path = path or paths.known_hosts_path()
    if not path.exists():
        return None
    for ln in path.read_text().splitlines():
        host, _, key = ln.partition(" ")
        if host == alias:
            return key.strip()
    return None
