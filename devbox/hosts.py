"""Hosts: the GPU servers devbox drives, by name, and which one a command means.

A host is a short name (`gpu1`) for an OpenSSH destination: an alias from the user's ssh config,
or `user@host[:port]`. The user's ssh config stays the truth about *how* to reach the server
(ProxyJump, IdentityFile, ports, known_hosts); devbox stores only the name and destination, in
`hosts.yaml` in its config dir. `local` is this machine's engine (DOCKER_HOST), the default.
"""

from __future__ import annotations

import errno
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from devbox import files, paths, sshconfig
from devbox.errors import DevboxError, NotFoundError, UsageError

if TYPE_CHECKING:
    from devbox.engine import Engine

LOCAL = "local"
AUTO = "auto"  # `up --host auto`: placement picks the host
HOST_ENV = "DEVBOX_HOST"
# How long a fleet-wide command waits for the slowest host: a connect timeout plus a few calls.
FLEET_TIMEOUT_S = 25.0
_RESERVED = (LOCAL, AUTO, "all")

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
# What goes into ssh argv and a ProxyJump line unquoted: no spaces, quotes, leading '-' or '%'.
# IPv6 literals are left out: OpenSSH takes neither "[::1]" nor "ssh://[::1]:22" as a destination
# (an alias in the ssh config is the way to name one).
_DEST_RE = re.compile(
    r"(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9_.-]*)@)?"
    r"(?P<host>[A-Za-z0-9_][A-Za-z0-9_.-]*)"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_SOCKET_RE = re.compile(r"/[A-Za-z0-9_./-]+")

T = TypeVar("T")


@dataclass(frozen=True)
class Host:
    """A server devbox manages boxes on; `destination` is empty for the local engine."""

    name: str
    destination: str = ""
    docker_socket: str = ""  # on the server; "" = its login's DOCKER_HOST, else /var/run/docker.sock

    @property
    def is_local(self) -> bool:
        return not self.destination

    @property
    def ssh_target(self) -> str:
        """What `ssh` takes: an alias or user@host as is; with a port, the ssh:// form."""
        m = _DEST_RE.fullmatch(self.destination)
        if m is None or m.group("port") is None:
            return self.destination
        return f"ssh://{self.destination}"

    @property
    def jump(self) -> str:
        """The ProxyJump value that reaches the server: [user@]host[:port] is ProxyJump's own syntax."""
        return self.destination


LOCAL_HOST = Host(LOCAL)


@dataclass(frozen=True)
class HostsConfig:
    hosts: tuple[Host, ...] = ()
    default: str = LOCAL

    def get(self, name: str) -> Host:
        if name == LOCAL:
            return LOCAL_HOST
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join([LOCAL, *(h.name for h in self.hosts)])
        raise NotFoundError(
            f"no host named {name!r} (known: {known})", "add it with `devbox host add NAME DEST`"
        )

    def with_host(self, host: Host) -> HostsConfig:
        return replace(
            self, hosts=tuple(sorted([*self.without(host.name).hosts, host], key=lambda h: h.name))
        )

    def without(self, name: str) -> HostsConfig:
        default = LOCAL if self.default == name else self.default
        return HostsConfig(tuple(h for h in self.hosts if h.name != name), default)


def config_path() -> Path:
    return paths.config_dir() / "hosts.yaml"


def validate_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name) or name in _RESERVED:
        raise UsageError(
            f"invalid host name {name!r}",
            "use 1-32 lowercase letters, digits and '-'; 'local', 'auto' and 'all' are taken",
        )
    return name


def validate_destination(dest: str) -> str:
    m = _DEST_RE.fullmatch(dest)
    if m is None or (m.group("port") and not 0 < int(m.group("port")) < 65536):
        raise UsageError(
            f"invalid ssh destination {dest!r}",
            "use an alias from your ~/.ssh/config (also for IPv6 addresses), or user@host[:port]",
        )
    return dest


def validate_socket(path: str) -> str:
    if path and not _SOCKET_RE.fullmatch(path):
        raise UsageError(
            f"invalid Docker socket path {path!r}", "use an absolute path such as /var/run/docker.sock"
        )
    return path


# ---------------------------------------------------------------- the file


def load() -> HostsConfig:
    """The configured hosts; an absent file is no hosts. A damaged file is an error naming it."""
    path = config_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return HostsConfig()  # no hosts: no YAML parser to import (every command asks)
    except OSError as exc:
        raise _config_dir_error(f"cannot read {path}", exc, "fix or delete the file") from None
    except UnicodeDecodeError as exc:
        raise DevboxError(f"cannot read {path}: {_first_line(exc)}", "fix or delete the file") from None
    import yaml

    try:
        raw = files.load_yaml(text) or {}
    except yaml.YAMLError as exc:
        raise DevboxError(files.yaml_problem(path, exc), "fix or delete the file") from None
    except RecursionError:
        # PyYAML's composer recurses once per nesting level; hosts.yaml nests two levels.
        raise DevboxError(f"cannot read {path}: nested too deeply", "fix or delete the file") from None
    try:
        hosts = tuple(
            Host(
                validate_name(str(name)),
                validate_destination(_text(entry, "ssh", name)),
                validate_socket(_text(entry, "docker_socket", name, required=False)),
            )
            for name, entry in sorted((raw.get("hosts") or {}).items())
        )
        default = _text(raw, "default", "", required=False) or LOCAL
    except (AttributeError, KeyError, TypeError, UsageError) as exc:
        why = exc.message if isinstance(exc, UsageError) else "unexpected layout"
        raise DevboxError(
            f"{path} is damaged: {why}", "fix it, or re-add hosts with `devbox host add`"
        ) from None
    if default != LOCAL and default not in {h.name for h in hosts}:
        # `host rm` of the default makes local the default: this one was typed by hand, and
        # taking local in its place would put boxes on another machine than meant.
        raise DevboxError(
            f"{path}: the default host {default!r} is not one of its hosts",
            "fix the name there, or delete the `default:` line to use local",
        )
    return HostsConfig(hosts, default)


def _text(entry: dict, key: str, host: object, required: bool = True) -> str:
    """A hand-editable value: text (a number too), never a list or mapping, nor an empty `ssh:`
    (that would be a server named None)."""
    value = entry[key] if required else entry.get(key)
    where = f"{host}.{key}" if host != "" else key
    if value is None or value == "":
        if required:
            raise UsageError(f"{where} is empty")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise UsageError(f"{where} must be text")
    return str(value)


def save(config: HostsConfig) -> None:
    import yaml

    data: dict[str, object] = {"default": config.default, "hosts": {}}
    for h in config.hosts:
        entry = {"ssh": h.destination}
        if h.docker_socket:
            entry["docker_socket"] = h.docker_socket
        data["hosts"][h.name] = entry  # type: ignore[index]
    path = config_path()
    text = "# devbox hosts: `devbox host add/rm/default` edit this file.\n" + yaml.safe_dump(
        data, sort_keys=True
    )
    try:
        paths.ensure_private_dir(path.parent)
        files.atomic_write(path, text, 0o600)
    except OSError as exc:
        raise _config_dir_error(f"cannot write {path}", exc, "check that the directory is yours") from None


def _config_dir_error(what: str, exc: OSError, file_hint: str) -> DevboxError:
    """`what` failed with `exc`. When the directories above hosts.yaml are the trouble (an
    $XDG_CONFIG_HOME that is a file, a config dir the user cannot enter), say so and point at
    XDG_CONFIG_HOME: the file itself may not even exist, so a hint about it would mislead."""
    path = config_path()
    blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        why = f"{blocker} is not a directory"
    elif exc.errno == errno.EACCES and not os.access(path.parent, os.X_OK):
        why = f"{exc.strerror} on {path.parent}"
    else:
        return DevboxError(f"{what}: {exc.strerror or _first_line(exc)}", file_hint)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    hint = (
        f"devbox keeps its files in $XDG_CONFIG_HOME/devbox and XDG_CONFIG_HOME is {xdg}: "
        "point it at a directory of yours, or unset it to use ~/.config"
        if xdg
        else f"devbox keeps its files in {path.parent}: make that a directory of yours"
    )
    return DevboxError(f"{what}: {why}", hint)


def update(change: Callable[[HostsConfig], HostsConfig]) -> HostsConfig:
    """Read, change and write hosts.yaml under its lock, so two devbox runs cannot lose an edit."""
    path = config_path()
    try:
        paths.ensure_private_dir(path.parent)
    except OSError as exc:
        raise _config_dir_error(f"cannot write {path}", exc, "check that the directory is yours") from None
    with files.locked(path):
        new = change(load())
        save(new)
    return new


# ---------------------------------------------------------------- which host a command means


def resolve(explicit: str | None, *, box: str | None = None) -> Host:
    """The host a command acts on: --host/DEVBOX_HOST, else the host `box` was created on (devbox's
    ssh entry for it says), else config.yaml's `host`, else `devbox host default`'s, else local."""
    from devbox import config as user_config

    config = load()
    if explicit:
        return config.get(explicit)
    if box is not None:
        recorded = box_host(config, box)
        if recorded is not None:
            return recorded
    return config.get(user_config.current().host or config.default)


def box_host(config: HostsConfig, box: str) -> Host | None:
    """The host of `box` as devbox's ssh config records it (its ProxyJump), if it has an entry."""
    alias = sshconfig.host_alias(box)
    for entry in sshconfig.read_entries():
        if entry.alias == alias:
            return host_for_jump(config, entry.proxy_jump)
    return None


def host_for_jump(config: HostsConfig, jump: str | None) -> Host | None:
    if not jump:
        return LOCAL_HOST
    return next((h for h in config.hosts if h.jump == jump), None)


# ---------------------------------------------------------------- many hosts at once


@dataclass(frozen=True)
class HostResult(Generic[T]):
    """What one host answered, or why it did not."""

    host: Host
    value: T | None = None
    error: str | None = None
    engine: Engine | None = field(default=None, compare=False)


def across(
    hosts: Iterable[Host],
    work: Callable[[Engine], T],
    *,
    timeout: float = FLEET_TIMEOUT_S,
    ssh_config: Path | None = None,
    raise_if_single: bool = False,
) -> list[HostResult[T]]:
    """Connect to every host concurrently and run `work` on each; a host that fails or does not
    finish within `timeout` becomes an error result, and the others are still returned.

    With `raise_if_single`, a lone host's error is raised instead: there is nothing else to show.
    """
    from devbox.engine import Engine

    targets = list(hosts)
    if raise_if_single and len(targets) == 1:
        engine = Engine.connect(targets[0], ssh_config=ssh_config)
        return [HostResult(targets[0], value=work(engine), engine=engine)]
    results: list[HostResult[T] | None] = [None] * len(targets)

    def one(i: int, host: Host) -> None:
        try:
            engine = Engine.connect(host, ssh_config=ssh_config)
            results[i] = HostResult(host, value=work(engine), engine=engine)
        except DevboxError as exc:
            results[i] = HostResult(host, error=exc.message)
        except Exception as exc:  # one broken host must not take the listing of the others down
            results[i] = HostResult(host, error=_first_line(exc) or type(exc).__name__)

    # Daemon threads: a server that never answers must not keep devbox from exiting.
    threads = [threading.Thread(target=one, args=(i, h), daemon=True) for i, h in enumerate(targets)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [
        r or HostResult(h, error=f"no answer within {timeout:g} s")
        for h, r in zip(targets, results, strict=True)
    ]


def targets(explicit: str | None) -> list[Host]:
    """The hosts a fleet-wide command (ls, ssh-config) covers: the one named, else all of them."""
    config = load()
    return [config.get(explicit)] if explicit else listed(config)


def listed(config: HostsConfig) -> list[Host]:
    """The hosts a fleet-wide command covers: every configured one, and the local engine when it
    is the default or this machine has one (a laptop without Docker is not 'unreachable')."""
    wanted = list(config.hosts)
    local_engine = os.environ.get("DOCKER_HOST") or os.path.exists("/var/run/docker.sock")
    if not wanted or config.default == LOCAL or local_engine:
        wanted.insert(0, LOCAL_HOST)
    return wanted


def _first_line(exc: object) -> str:
    return " ".join(str(exc).split())[:300]


# ---------------------------------------------------------------- editing the list


def add(name: str, destination: str, docker_socket: str = "", make_default: bool = False) -> Host:
    host = Host(validate_name(name), validate_destination(destination), validate_socket(docker_socket))

    def change(config: HostsConfig) -> HostsConfig:
        new = config.with_host(host)
        return replace(new, default=name) if make_default else new

    update(change)
    return host


def remove(name: str) -> Host:
    """Forget a host (its boxes keep running there, and their ssh entries keep working)."""
    host = load().get(name)
    if host.is_local:
        raise UsageError(
            "the local engine cannot be removed", "`devbox host default NAME` picks another default"
        )
    update(lambda config: config.without(name))
    return host


def set_default(name: str) -> HostsConfig:
    host = load().get(name)
    return update(lambda config: replace(config, default=host.name))


def boxes_recorded_on(host: Host) -> list[str]:
    """Names of the boxes devbox's ssh config records on `host`."""
    prefix = sshconfig.alias_prefix()
    return [
        e.alias.removeprefix(prefix)
        for e in sshconfig.read_entries()
        if e.proxy_jump == host.jump and not host.is_local
    ]
