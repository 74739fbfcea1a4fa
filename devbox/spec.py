"""BoxSpec: the validated description of a box, built from flags before any engine call."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from devbox import gpus, users
from devbox.errors import UsageError
from devbox.gpus import GpuSelection
from devbox.users import LoginUser, local_user

if TYPE_CHECKING:
    from devbox.tunnel import Tunnel

NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# Docker understands b, k, m and g suffixes only.
_SIZE_RE = re.compile(r"\d+(\.\d+)?[bkmg]?", re.IGNORECASE)
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
READY_TIMEOUT_S = 90.0  # how long up/start wait for a key login before giving up
DEFAULT_IMAGE = "ubuntu:24.04"
DEFAULT_SHM = "8g"  # PyTorch DataLoader workers share tensors through /dev/shm; Docker's 64m breaks them.


@dataclass(frozen=True)
class Mount:
    source: str  # absolute host path
    target: str  # absolute path in the box
    read_only: bool = False

    def __str__(self) -> str:
        return f"{self.source}:{self.target}:{'ro' if self.read_only else 'rw'}"


def local_access(path: str, write: bool) -> bool:
    """Whether this process may read `path` (a directory: list and enter it), and write it if `write`."""
    mode = os.R_OK | (os.W_OK if write else 0) | (os.X_OK if os.path.isdir(path) else 0)
    return os.access(path, mode)


def local_unowned_dir(path: str) -> bool:
    """Whether `path` (symlinks followed, as Docker does) is a directory this login does not own.

    Root owns everything in effect: it can read all of it on the host anyway."""
    uid = os.getuid()
    return os.path.isdir(path) and uid != 0 and os.stat(path).st_uid != uid


# `sh -c` text for a host reached through a tunnel: exit 0 when $1 is a directory the login does
# not own, 1 otherwise; the same rule as local_unowned_dir.
_UNOWNED_DIR_TEST = 'test -d "$1" && test "$(id -u)" != 0 && ! test -O "$1"'


@dataclass(frozen=True)
class HostFacts:
    """What a spec needs from the host the box goes on: its login, home and file system."""

    user: LoginUser
    home: str  # the login's home there, for `~` in mount sources
    exists: Callable[[str], bool] | None = os.path.exists  # None: mount sources are checked later
    where: str = ""  # " on gpu1", for messages about a remote host
    # access(path, write): whether the host login may read path (a directory: list and enter it),
    # and also write it when `write`. None: not checked (the host cannot be asked).
    access: Callable[[str, bool], bool] | None = None
    # unowned_dir(path): whether path is a directory the host login does not own; root in a box
    # with sudo could read everything under it. None: not checked.
    unowned_dir: Callable[[str], bool] | None = None

    @classmethod
    def local(cls) -> HostFacts:
        return cls(local_user(), os.path.expanduser("~"), access=local_access, unowned_dir=local_unowned_dir)

    @staticmethod
    def unowned_dir_check(tunnel: Tunnel | None) -> Callable[[str], bool]:
        """The `unowned_dir` check for an engine's host: this machine's without a tunnel, else one
        run on the host through `tunnel` (an ssh failure raises its DevboxError)."""
        if tunnel is None:
            return local_unowned_dir

        def unowned_dir(path: str) -> bool:
            done = tunnel.run(["sh", "-c", _UNOWNED_DIR_TEST, "sh", path])
            if done.returncode not in (0, 1):
                raise tunnel.failure(done.stderr)
            return done.returncode == 0

        return unowned_dir

    @classmethod
    def unchecked(cls) -> HostFacts:
        """For validating flags before the host is known: nothing is looked up on any host."""
        return cls(local_user(), "/", exists=None)


_PORT = re.compile(r"[0-9]{1,5}")  # ASCII digits only, and short enough that int() is always cheap
PORTS_HINT = "e.g. 8888, or \"6006:16006\" for the box's 6006 on this machine's 16006"


def parse_port(text: str) -> str:
    """A forwarded port, PORT (in the box, and the same on this machine) or PORT:LOCAL, as "PORT" or
    "PORT:LOCAL" (only when the two differ); UsageError otherwise."""
    numbers = text.split(":")
    if len(numbers) > 2 or not all(_PORT.fullmatch(n) and 1 <= int(n) <= 65535 for n in numbers):
        raise UsageError(f"{text!r} is not a port", PORTS_HINT)
    box, local = (str(int(n)) for n in (numbers * 2)[:2])
    return box if box == local else f"{box}:{local}"


def parse_ports(texts: Iterable[str]) -> tuple[str, ...]:
    """`ports:` or the --port flags: each as parse_port gives it, in order, repeats dropped. Two that
    would take the same port on this machine are a UsageError: ssh would forward only the first."""
    ports: dict[str, None] = {}
    local: dict[str, str] = {}  # port on this machine → the entry that takes it
    for text in texts:
        port = parse_port(text)
        taken = local.setdefault(port.rpartition(":")[2], port)
        if taken != port:
            raise UsageError(
                f"{taken!r} and {port!r} both forward to port {port.rpartition(':')[2]} on this machine",
                'give one of them another local port, e.g. "6006:16006"',
            )
        ports[port] = None
    return tuple(ports)


def forward_ports(port: str) -> tuple[int, int]:
    """(port in the box, port on this machine) of one parse_port entry."""
    box, _, local = port.partition(":")
    return int(box), int(local or box)


@dataclass(frozen=True)
class Build:
    """A Dockerfile built on the box's host into the box's base image (context sent from here)."""

    dockerfile: str  # absolute paths on this machine
    context: str
    args: tuple[str, ...] = ()  # NAME=VALUE

    @classmethod
    def checked(cls, dockerfile: str, context: str | None = None, args: Sequence[str] = ()) -> Build:
        file = Path(dockerfile).expanduser().resolve()
        folder = Path(context).expanduser().resolve() if context else file.parent
        if not file.is_file():
            raise UsageError(f"Dockerfile {str(file)!r} does not exist", "check the path given to --build")
        if not folder.is_dir():
            raise UsageError(f"build context {str(folder)!r} is not a folder", "check --build-context")
        for arg in args:
            name, eq, _ = arg.partition("=")
            if not eq or not name or any(c.isspace() for c in name):
                raise UsageError(f"--build-arg {arg!r} is not NAME=VALUE", "e.g. --build-arg CUDA=12.4")
        return cls(str(file), str(folder), tuple(args))


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
    # Not in the fingerprint: they shape the ssh entry, not the container.
    ports: tuple[str, ...] = ()
    # With a build, `image` is what it was built into (set when built, on the box's host).
    build: Build | None = None

    @property
    def home(self) -> str:
        return f"/home/{self.user.name}"

    def fingerprint(self) -> dict[str, object]:
        """The options that shape the container; a second `up` with other values must recreate it.

        It is stored in a label every docker-group user can read, so --env values appear only as
        a digest: enough to tell that one changed, not what it is.
        """
        return {
            "image": self.image,
            "user": [self.user.name, self.user.uid, self.user.gid],
            "gpus": str(self.gpus),
            "mounts": sorted(str(m) for m in self.mounts),
            "env": sorted(f"{k}=sha256:{env_digest(k, v)}" for k, v in self.env),
            "shm_size": self.shm_size,
            "memory": self.memory,
            "cpus": self.cpus,
            "workdir": self.workdir,
            "sudo": self.sudo,
        }


def env_digest(key: str, value: str) -> str:
    """A digest of one --env variable for labels; the prefix keeps it apart from other sha256 uses."""
    import hashlib  # here: loading OpenSSL is 3 ms of a command's start, and few commands digest

    return hashlib.sha256(f"devbox.env\0{key}\0{value}".encode()).hexdigest()


def validate_image(image: str) -> str:
    if not image.strip():
        raise UsageError("the image name is empty", "pass --image IMAGE, or unset an empty DEVBOX_IMAGE")
    return image


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


def parse_mount(text: str, facts: HostFacts | None = None, *, sudo: bool = False) -> Mount:
    """SRC:DST[:ro|rw]; `~` in SRC is the home of the login on the box's host, where SRC must exist.

    With `sudo` (root in the box) a directory source must be the login's own: root there reads
    everything under it, files the login could not. from_flags passes the box's own setting.
    """
    facts = facts or HostFacts.local()
    parts = text.split(":")
    mode = "rw"
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        mode = parts.pop()
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise UsageError(f"invalid --mount {text!r}", "use SRC:DST[:ro|rw], e.g. ~/data:/workspace/data:ro")
    source = parts[0]
    if source == "~" or source.startswith("~/"):
        source = os.path.join(facts.home, source[2:])
    if not os.path.isabs(source):
        raise UsageError(
            f"mount source {parts[0]!r} is not an absolute path", "use an absolute path or ~/..."
        )
    if not parts[1].startswith("/"):
        raise UsageError(f"mount target {parts[1]!r} is not an absolute path", "e.g. /workspace/data")
    source = os.path.normpath(source)
    if facts.exists is not None and not facts.exists(source):
        raise UsageError(
            f"mount source {source} does not exist{facts.where}", "create it first or fix the path"
        )
    # Root in the box (sudo) reads and writes whatever is mounted: mount only what the user could.
    if facts.access is not None and not facts.access(source, False):
        raise UsageError(
            f"you cannot read mount source {source}{facts.where}",
            "devbox mounts only what you can read yourself; fix its permissions or mount a copy",
        )
    if mode == "rw" and facts.access is not None and not facts.access(source, True):
        raise UsageError(
            f"you cannot write mount source {source}{facts.where}",
            f"mount it read-only ({parts[0]}:{parts[1]}:ro) or fix its permissions",
        )
    if sudo and facts.unowned_dir is not None and facts.unowned_dir(source):
        raise UsageError(
            f"--mount {parts[0]}: you do not own {source}{facts.where}, "
            "and root in the box (sudo) could read everything under it",
            "mount a directory you own, or add --no-sudo",
        )
    return Mount(source, os.path.normpath(parts[1]), mode == "ro")


def parse_user(name: str) -> str:
    """--user NAME (devcontainer.json's remoteUser): a name the box's login can take; from_flags
    keeps the server login's UID/GID with it, so files on mounts stay theirs."""
    if name == "root":
        raise UsageError("--user root: a box never allows root logins", "log in as yourself; sudo gives root")
    if not users.is_login_name(name):
        raise UsageError(
            f"--user {name!r} is not a login name",
            "use lowercase letters, digits, _ and -, e.g. --user vscode",
        )
    if users.is_system_name(name):
        # The entrypoint replaces the image's account of that name: sshd's own user, say.
        raise UsageError(f"--user {name}: that is a system account in images", "pick another, e.g. vscode")
    return name


def parse_env(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not _ENV_NAME_RE.fullmatch(key):
        raise UsageError(f"invalid --env {text!r}", "use NAME=VALUE")
    if key.startswith("DEVBOX_"):
        raise UsageError(f"--env {key} is reserved for devbox", "pick another variable name")
    if key == "NVIDIA_VISIBLE_DEVICES":
        raise UsageError(
            "--env NVIDIA_VISIBLE_DEVICES would bypass GPU allocation", "use --gpus or --gpu-count"
        )
    # A session gets the value exactly or not at all: a newline cannot cross the box's env file,
    # NUL ends a C string, and text that is not UTF-8 would be altered on its way through Docker.
    # Other control characters (ESC, CR, \x01) cross it all unchanged: the env file's single
    # quotes, tmux and execve keep them (tests/unit/test_entrypoint.py runs that path).
    if "\n" in value or "\0" in value:
        raise UsageError(
            f"--env {key} holds a newline or NUL", "pass multi-line values in a file, e.g. through --mount"
        )
    if not is_utf8(value):
        raise UsageError(f"--env {key} is not valid UTF-8 text", "pass binary values in a file")
    return key, value


def is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # surrogate escapes of undecodable command-line bytes
        return False
    return True


_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
# Past any machine's memory, and well within the signed 64-bit byte counts Docker's API takes.
_MAX_SIZE = 2**50
# Docker's least memory limit: it refuses a smaller one, but only once the box is being created.
MIN_MEMORY = 6 * 1024**2
# Past any machine's CPUs, and within Docker's count of billionths of a CPU (a signed 64-bit number).
_MAX_CPUS = 65536


def parse_size(text: str, flag: str) -> str:
    # Zero would mean "no limit" (--memory) or Docker's tiny default (--shm-size): never what was meant.
    lowered = text.lower()
    number = float(lowered.rstrip("bkmg")) if _SIZE_RE.fullmatch(text) else 0
    if number == 0:
        raise UsageError(f"invalid {flag} {text!r}", "use a size such as 512m, 8g or 16G")
    size = number * _UNITS[lowered[-1] if lowered[-1].isalpha() else "b"]
    if size > _MAX_SIZE:
        raise UsageError(
            f"{flag} {text} is larger than any machine's memory", "use a size such as 512m, 8g or 16G"
        )
    if flag == "--memory" and size < MIN_MEMORY:
        raise UsageError(
            f"--memory {text} is below Docker's least limit, 6m", "give 6m or more, such as 512m or 8g"
        )
    return lowered


def parse_cpus(value: float) -> float:
    # Docker counts in billionths of a CPU, and 0 would mean "no limit": refuse what rounds to it.
    if not math.isfinite(value) or value < 0.01:
        raise UsageError(f"invalid --cpus {value}", "use a positive number such as 4 or 0.5")
    if value > _MAX_CPUS:
        raise UsageError(f"--cpus {value:g} is more than any machine has", "use a number such as 4 or 0.5")
    return value


# What the box's root entrypoint writes, and where devbox's and the login's own files live: a mount
# there would hide them, or make root in the box write through it into the host's files.
_RESERVED_TARGETS = (
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/profile.d",
    "/etc/ssh",
    "/etc/devbox",
    "/run/devbox",
    "/run/sshd",
    "/usr/local/lib/devbox",
)
# The runtime's own file systems: a mount over one fails the box's start with the runtime's text.
_RUNTIME_TARGETS = ("/proc", "/sys", "/dev")
# Docker follows symlinks in a mount target inside the image; Debian-family images link these.
_TARGET_ALIASES = {"/var/run": "/run"}


def from_flags(
    *,
    name: str | None,
    image: str,
    gpus_text: str | None = None,
    gpu_count: int | None = None,
    share_gpus: bool = False,
    mounts: Sequence[str] = (),
    envs: Sequence[str] = (),
    shm_size: str = DEFAULT_SHM,
    memory: str | None = None,
    cpus: float | None = None,
    workdir: str | None = None,
    sudo: bool = True,
    ports: Sequence[str] = (),
    build: Build | Mapping[str, object] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
    facts: HostFacts | None = None,
) -> BoxSpec:
    """Validate what a front end collected (CLI flags, TUI form) into a BoxSpec; UsageError on bad input."""
    if gpus_text is not None and gpu_count is not None:
        raise UsageError("--gpus and --gpu-count cannot be used together", "pick one")
    if gpu_count is not None:
        selection = gpus.parse_count(gpu_count)
    else:
        selection = gpus.parse_selection("none" if gpus_text is None else gpus_text)
    if workdir is not None and not workdir.startswith("/"):
        raise UsageError(f"--workdir {workdir!r} is not an absolute path", "e.g. /workspace")
    if workdir is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in workdir):
        raise UsageError(f"--workdir {workdir!r} holds a control character", "e.g. /workspace")
    built = _build_of(build)
    facts = facts or HostFacts.local()
    user = facts.user if user is None else LoginUser(parse_user(user), facts.user.uid, facts.user.gid)
    parsed_mounts = tuple(parse_mount(m, facts, sudo=sudo) for m in mounts)
    _check_mount_targets(parsed_mounts, f"/home/{user.name}")
    return BoxSpec(
        name=default_name(cwd) if name is None else validate_name(name),
        # A build names its image once built (boxes.up), on the host the box goes to.
        image="" if built else validate_image(image),
        user=user,
        gpus=selection,
        share_gpus=share_gpus,
        mounts=parsed_mounts,
        env=tuple(parse_env(e) for e in envs),
        shm_size=parse_size(shm_size, "--shm-size"),
        memory=parse_size(memory, "--memory") if memory else None,
        cpus=parse_cpus(cpus) if cpus is not None else None,
        workdir=os.path.normpath(workdir) if workdir else None,
        sudo=sudo,
        ports=parse_ports(ports),
        build=built,
    )


def _build_of(build: Build | Mapping[str, object] | None) -> Build | None:
    """--build's Build, or the `build` a devbox.yaml or devcontainer.json gave (already checked
    against its file's folder), checked again here: the files may have moved since."""
    if build is None or isinstance(build, Build):
        return build if build is None else Build.checked(build.dockerfile, build.context, build.args)
    args = build.get("args") or ()
    return Build.checked(str(build["dockerfile"]), str(build["context"]), tuple(str(a) for a in args))  # type: ignore[union-attr]


def _check_mount_targets(mounts: tuple[Mount, ...], home: str) -> None:
    seen: set[str] = set()
    for m in mounts:
        if m.target in seen:
            raise UsageError(f"two --mount flags target {m.target}", "give each mount its own target")
        seen.add(m.target)
        target = _resolve_alias(m.target)
        # Not over the home or devbox's files, nor inside them, nor over a parent (/etc, /home, /run, /).
        parent = target.rstrip("/") + "/"
        covers = [r for r in (home, *_RESERVED_TARGETS) if r == target or r.startswith(parent)]
        inside = [r for r in _RESERVED_TARGETS if target.startswith(r + "/")]
        if target.rstrip("/") in _RUNTIME_TARGETS:
            raise UsageError(
                f"cannot mount over {m.target}", "the container runtime provides it; mount elsewhere"
            )
        if covers or inside:
            raise UsageError(
                f"cannot mount over {m.target}",
                f"devbox manages {(covers or inside)[0]} in the box; "
                f"mount into a subdirectory of {home} or elsewhere",
            )


def _resolve_alias(target: str) -> str:
    for alias, real in _TARGET_ALIASES.items():
        if target == alias or target.startswith(alias + "/"):
            return real + target[len(alias) :]
    return target
