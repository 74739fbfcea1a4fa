"""BoxSpec: the validated description of a box, built from flags before any engine call."""

from __future__ import annotations

import math
import os
import pwd
import re
from dataclasses import dataclass
from pathlib import Path

from devbox.errors import UsageError
from devbox.gpus import GpuSelection

NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# Docker understands b, k, m and g suffixes only.
_SIZE_RE = re.compile(r"\d+(\.\d+)?[bkmg]?", re.IGNORECASE)
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DEFAULT_SHM = "8g"  # PyTorch DataLoader workers share tensors through /dev/shm; Docker's 64m breaks them.


@dataclass(frozen=True)
class Mount:
    source: str  # absolute host path
    target: str  # absolute path in the box
    read_only: bool = False

    def __str__(self) -> str:
        return f"{self.source}:{self.target}:{'ro' if self.read_only else 'rw'}"


@dataclass(frozen=True)
class LoginUser:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class BoxSpec:
    name: str
    image: str
    user: LoginUser
    gpus: GpuSelection
    share_gpus: bool = False
    mounts: tuple[Mount, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    shm_size: str = DEFAULT_SHM
    memory: str | None = None
    cpus: float | None = None
    workdir: str | None = None
    sudo: bool = True

    @property
    def home(self) -> str:
        return f"/home/{self.user.name}"

    def fingerprint(self) -> dict[str, object]:
        """The options that shape the container; a second `up` with other values must recreate it."""
        return {
            "image": self.image,
            "user": [self.user.name, self.user.uid, self.user.gid],
            "gpus": str(self.gpus),
            "mounts": sorted(str(m) for m in self.mounts),
            "env": sorted(f"{k}={v}" for k, v in self.env),
            "shm_size": self.shm_size,
            "memory": self.memory,
            "cpus": self.cpus,
            "workdir": self.workdir,
            "sudo": self.sudo,
        }


def validate_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise UsageError(
            f"invalid box name {name!r}",
            "use 1-63 lowercase letters, digits and '-', starting with a letter or digit",
        )
    return name


def default_name(cwd: Path | None = None) -> str:
    """The current directory's name, made valid (`My_Project` → `my-project`)."""
    raw = (cwd or Path.cwd()).name.lower()
    name = re.sub(r"[^a-z0-9-]+", "-", raw).strip("-")[:63].rstrip("-")
    return name or "box"


def parse_mount(text: str) -> Mount:
    parts = text.split(":")
    mode = "rw"
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        mode = parts.pop()
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise UsageError(f"invalid --mount {text!r}", "use SRC:DST[:ro|rw], e.g. ~/data:/workspace/data:ro")
    source = os.path.expanduser(parts[0])
    if not os.path.isabs(source):
        raise UsageError(
            f"mount source {parts[0]!r} is not an absolute path", "use an absolute path or ~/..."
        )
    if not os.path.exists(source):
        raise UsageError(f"mount source {source} does not exist", "create it first or fix the path")
    if not parts[1].startswith("/"):
        raise UsageError(f"mount target {parts[1]!r} is not an absolute path", "e.g. /workspace/data")
    return Mount(os.path.normpath(source), os.path.normpath(parts[1]), mode == "ro")


def parse_env(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not _ENV_NAME_RE.fullmatch(key):
        raise UsageError(f"invalid --env {text!r}", "use NAME=VALUE")
    if key.startswith("DEVBOX_"):
        raise UsageError(f"--env {key} is reserved for devbox", "pick another variable name")
    return key, value


def parse_size(text: str, flag: str) -> str:
    if not _SIZE_RE.fullmatch(text):
        raise UsageError(f"invalid {flag} {text!r}", "use a size such as 512m, 8g or 16G")
    return text.lower()


def parse_cpus(value: float) -> float:
    # Docker counts in billionths of a CPU, and 0 would mean "no limit": refuse what rounds to it.
    if not math.isfinite(value) or value < 0.01:
        raise UsageError(f"invalid --cpus {value}", "use a positive number such as 4 or 0.5")
    return value


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


def owner_name() -> str:
    """Who owns a box on a shared engine: the local account name."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid{os.getuid()}"
