"""Where devbox keeps its files, resolved from $HOME and the XDG variables at call time.

Paths are always absolute: OpenSSH expands `~` from the password database, not from $HOME, so
anything we write into an ssh config must already be resolved.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("HOME") or Path.home()).absolute()


def config_dir() -> Path:
    """$XDG_CONFIG_HOME/devbox (default ~/.config/devbox): user key, known_hosts, settings."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(home() / ".config")
    return Path(base).absolute() / "devbox"


def user_key_path() -> Path:
    return config_dir() / "id_ed25519"


def known_hosts_path() -> Path:
    return config_dir() / "known_hosts"


def ssh_dir() -> Path:
    return home() / ".ssh"


def ensure_private_dir(path: Path) -> Path:
    """Make sure only the owner can enter `path`. Missing parents are created 0700 too (a new
    ~/.ssh or ~/.config must not appear world-readable); existing parents are left alone."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
    if path.stat().st_mode & 0o777 != 0o700:
        path.chmod(0o700)
    return path
