"""Who is running devbox: the box owner on a shared engine, and the login user inside boxes."""

from __future__ import annotations

import os
import pwd
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class LoginUser:
    name: str
    uid: int
    gid: int


def owner_name() -> str:
    """Who owns a box on a shared engine: the local account name."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid{os.getuid()}"


def local_user() -> LoginUser:
    """The login user mirrors the person running devbox, so files on mounts stay theirs.

    Root gets an ordinary `dev` user (UID/GID 1000): the box never allows root logins.
    """
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        return LoginUser("dev", 1000, 1000)
    name = owner_name()
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", name):
        name = "dev"
    return LoginUser(name, uid, gid)
