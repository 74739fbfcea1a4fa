"""Who is running devbox: the box owner on a shared engine, and the login user inside boxes."""

from __future__ import annotations

import os
import pwd
import re
from dataclasses import dataclass

_LOGIN_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class LoginUser:
    name: str
    uid: int
    gid: int


def owner_name() -> str:
    """Who owns a box on the local engine: the local account name."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid{os.getuid()}"


def box_user(name: str, uid: int, gid: int) -> LoginUser:
    """The box's login user for an account on the engine's host, so files on mounts stay theirs.

    Root gets an ordinary `dev` user (UID/GID 1000): the box never allows root logins. Names a
    box's passwd cannot hold become `dev`, keeping the UID/GID.
    """
    if uid == 0:
        return LoginUser("dev", 1000, 1000)
    return LoginUser(name if is_login_name(name) else "dev", uid, gid)


# The image's own system accounts: the entrypoint replaces an account of the login's name, and
# replacing one of these would break what runs as it (sshd's privilege separation, for one).
_SYSTEM_NAMES = frozenset(
    [
        "root",
        "daemon",
        "bin",
        "sys",
        "sync",
        "games",
        "man",
        "lp",
        "mail",
        "news",
        "uucp",
        "proxy",
        "www-data",
        "backup",
        "list",
        "irc",
        "gnats",
        "nobody",
        "_apt",
        "sshd",
        "messagebus",
        "systemd-network",
        "systemd-resolve",
        "systemd-timesync",
        "syslog",
        "uuidd",
    ]
)


def is_login_name(name: str) -> bool:
    """Whether a box's passwd can hold `name` as its login's name."""
    return bool(_LOGIN_RE.fullmatch(name))


def is_system_name(name: str) -> bool:
    return name in _SYSTEM_NAMES


def local_user() -> LoginUser:
    """The login user for a box on this machine's engine: the person running devbox."""
    return box_user(owner_name(), os.getuid(), os.getgid())
