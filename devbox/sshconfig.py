"""Plain OpenSSH integration: one devbox-owned config file, reached by one Include line.

devbox owns `~/.ssh/devbox/config` and rewrites it whole. The user's own ssh config gets exactly one
added line, `Include <that file>`, as its first line; every other byte of it is left as it was. When
the user's config cannot be written (read-only, a Nix/home-manager symlink), nothing is raised: the
result carries the line for the user to add by hand.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import pwd
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from devbox import files, paths
from devbox.errors import DevboxError, UsageError

DEFAULT_PREFIX = "devbox-"
PREFIX_ENV = "DEVBOX_HOST_PREFIX"
CONFIG_ENV = "DEVBOX_SSH_CONFIG"
BACKUP_SUFFIX = ".devbox-backup"
HEADER = "# Managed by devbox: rewritten whole on every change, so edits here are lost.\n"

# A unix socket path is at most 104 bytes with its NUL on macOS (108 on Linux). ssh binds
# "<ControlPath>.<16 random chars>" first, and %C expands to 40 hex chars.
_SOCKET_PATH_MAX = 103
_CONTROL_SUFFIX_LEN = len("/") + 40 + 17

# Values go into an ssh config unquoted, so they must not be able to start a new token or line.
_ALIAS_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_.:-]+")
_JUMP_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@:\[\]-]*")
_KEYWORD_RE = re.compile(r"[ \t]*([^ \t=]+)[ \t]*(?:=[ \t]*)?(.*)")
_FORWARD_RE = re.compile(r"[0-9]{1,5}(:[0-9]{1,5})?")
_NEEDS_QUOTES = frozenset(" \t\"'\\#")


@dataclass(frozen=True)
class HostEntry:
    """One box as ssh sees it: where it listens, who logs in, and the pinned key files."""

    alias: str
    port: int
    user: str
    identity_file: Path
    known_hosts: Path
    hostname: str = "127.0.0.1"
    proxy_jump: str = ""  # the server's ssh destination, for boxes on a remote host
    forwards: tuple[str, ...] = ()  # "PORT" or "PORT:LOCAL" (spec.parse_port): LocalForwards

    def __post_init__(self) -> None:
        if not _ALIAS_RE.fullmatch(self.alias):
            raise ValueError(f"invalid ssh host alias {self.alias!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"invalid port {self.port}")
        if not _USER_RE.fullmatch(self.user):
            raise ValueError(f"invalid ssh user {self.user!r}")
        if not _HOSTNAME_RE.fullmatch(self.hostname):
            raise ValueError(f"invalid hostname {self.hostname!r}")
        if self.proxy_jump and not _JUMP_RE.fullmatch(self.proxy_jump):
            raise ValueError(f"invalid ProxyJump {self.proxy_jump!r}")
        for forward in self.forwards:
            if not _FORWARD_RE.fullmatch(forward):
                raise ValueError(f"invalid port forward {forward!r}")
        for path in (self.identity_file, self.known_hosts):
            # OpenSSH resolves relative paths and `~` its own way (against the passwd home).
            if not Path(path).is_absolute():
                raise ValueError(f"ssh config paths must be absolute, got {str(path)!r}")


@dataclass(frozen=True)
class IncludeResult:
    """Whether the user's ssh config now reaches our file; `manual_line` is set when we could not write it."""

    path: Path
    added: bool
    manual_line: str | None


def managed_config_path() -> Path:
    """The file devbox owns: ~/.ssh/devbox/config."""
    return paths.ssh_dir() / "devbox" / "config"


def user_config_path(explicit: Path | None = None) -> Path:
    """The user's ssh config: `explicit` (--ssh-config), else $DEVBOX_SSH_CONFIG, else ~/.ssh/config.

    UsageError for devbox's own file: including itself, it would break ssh to every box.
    """
    from_env = os.environ.get(CONFIG_ENV)
    if explicit is not None:
        path = Path(explicit).expanduser().absolute()
    elif from_env:
        path = Path(from_env).expanduser().absolute()
    else:
        return paths.ssh_dir() / "config"
    if os.path.realpath(path) == os.path.realpath(managed_config_path()):
        raise UsageError(
            f"{path} is devbox's own ssh config file, not yours",
            "give the config your ssh reads (~/.ssh/config), or leave --ssh-config and DEVBOX_SSH_CONFIG out",
        )
    return path


def alias_prefix() -> str:
    """$DEVBOX_HOST_PREFIX, else config.yaml's alias_prefix, else "devbox-"."""
    if PREFIX_ENV in os.environ:
        return os.environ[PREFIX_ENV]
    from devbox import config

    return config.current().alias_prefix or DEFAULT_PREFIX


def host_alias(name: str, prefix: str | None = None) -> str:
    """The ssh alias of box `name`: prefix (default $DEVBOX_HOST_PREFIX or "devbox-") + name."""
    alias = (alias_prefix() if prefix is None else prefix) + name
    if not _ALIAS_RE.fullmatch(alias):
        raise UsageError(
            f"{PREFIX_ENV}={alias_prefix() if prefix is None else prefix!r} makes the ssh alias {alias!r}, "
            "which ssh cannot use",
            "use letters, digits, '.', '_', '+' and '-' only",
        )
    return alias


def control_dir() -> Path:
    """Where ControlMaster sockets live: the config dir, which outlives reboots (a vanished
    $XDG_RUNTIME_DIR would make every plain `ssh` complain), unless its path is too long for a
    unix socket with ssh's suffixes; then the runtime dir."""
    candidates = [paths.config_dir() / "cm"]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        candidates.append(Path(runtime) / "devbox" / "cm")
    for candidate in candidates:
        if len(os.fsencode(candidate)) + _CONTROL_SUFFIX_LEN <= _SOCKET_PATH_MAX:
            return candidate
    return candidates[-1]


def include_line(target: Path | None = None) -> str:
    """The exact line that makes an ssh config read our file."""
    return f"Include {_quote(str(target or managed_config_path()))}"


def render_block(entry: HostEntry, control_dir: Path) -> str:
    """The `Host` block for one box, every path absolute, ending in a newline."""
    # A remote box's sshd listens on the server's 127.0.0.1: one hop through the server's own
    # ssh destination, which the user's config (bastions included) knows how to reach.
    jump = [("ProxyJump", entry.proxy_jump)] if entry.proxy_jump else []
    options = [
        ("HostName", entry.hostname),
        ("Port", str(entry.port)),
        *jump,
        ("User", entry.user),
        ("IdentityFile", option_value(entry.identity_file)),
        ("IdentitiesOnly", "yes"),
        # Pins the key under the alias, not "[127.0.0.1]:port", which another box may reuse later.
        ("HostKeyAlias", entry.alias),
        ("UserKnownHostsFile", option_value(entry.known_hosts)),
        ("StrictHostKeyChecking", "yes"),
        ("CheckHostIP", "no"),
        ("ConnectTimeout", "15"),
        ("ServerAliveInterval", "30"),
        ("ServerAliveCountMax", "4"),
        ("ControlMaster", "auto"),
        ("ControlPath", _quote(_escape_percent(str(control_dir)) + "/%C")),
        ("ControlPersist", "10m"),
        # The box's ports on this machine's 127.0.0.1 (never other interfaces) while connected;
        # the far end is the box's own loopback, whatever host and hops it is behind.
        *(("LocalForward", f"127.0.0.1:{local} 127.0.0.1:{port}") for port, local in _forwards(entry)),
    ]
    return f"Host {entry.alias}\n" + "".join(f"    {key} {value}\n" for key, value in options)


def _forwards(entry: HostEntry) -> list[tuple[str, str]]:
    return [(f.partition(":")[0], f.partition(":")[2] or f.partition(":")[0]) for f in entry.forwards]


def read_entries() -> list[HostEntry]:
    """The boxes in our file, sorted by alias; blocks we cannot read back are left out."""
    try:
        text = managed_config_path().read_bytes().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _os_error(managed_config_path(), exc) from exc
    return sorted(_parse_entries(text), key=lambda e: e.alias)


def upsert(entry: HostEntry, *, user_config: Path | None = None) -> IncludeResult:
    """Add or replace the block for `entry.alias` and make sure the user's config includes our file."""
    with _locked():
        current = {e.alias: e for e in read_entries()}
        current[entry.alias] = entry
        _write_managed(current.values())
        return _ensure_include_locked(user_config_path(user_config))


def remove(alias: str, *, user_config: Path | None = None) -> bool:
    """Remove the block for `alias` only; True if there was one.

    The Include line stays (an Include of a file with no hosts is harmless); `user_config` is
    accepted so callers can pass the same options to every call here.
    """
    del user_config
    with _locked():
        current = read_entries()
        kept = [e for e in current if e.alias != alias]
        if len(kept) == len(current):
            return False
        _write_managed(kept)
        return True


def sync(
    entries: Iterable[HostEntry] | Callable[[], Iterable[HostEntry]],
    prefix: str | None = None,
    *,
    scope: Callable[[HostEntry], bool] | None = None,
    user_config: Path | None = None,
) -> IncludeResult:
    """Make our file hold `entries` in place of the blocks in scope (all, by default).

    `entries` may be a function making them: it is called under the lock, so what it lists
    cannot miss a block another devbox wrote after the listing and before this write.
    `prefix` limits the scope to aliases starting with it; `scope` to the blocks it accepts (one
    host's boxes: a host that did not answer keeps its blocks).
    """
    with _locked():
        fresh = list(entries() if callable(entries) else entries)
        kept = [
            e
            for e in read_entries()
            if (prefix is not None and not e.alias.startswith(prefix)) or (scope is not None and not scope(e))
        ]
        by_alias = {e.alias: e for e in [*kept, *fresh]}
        _write_managed(by_alias.values())
        return _ensure_include_locked(user_config_path(user_config))


def ensure_include(user_config: Path | None = None) -> IncludeResult:
    """Make the user's ssh config include our file, as its first line, unless it already does."""
    with _locked():
        return _ensure_include_locked(user_config_path(user_config))


def ssh_command(alias: str, *, user_config: Path | None = None) -> list[str]:
    """The ssh argv that reaches `alias`.

    Through the user's config when it includes our file, so their own settings apply too; through
    our file alone when it does not (a read-only config we could not add the Include to).
    """
    path = user_config_path(user_config)
    try:
        text = path.read_bytes().decode("utf-8", "surrogateescape")
    except OSError:
        text = ""
    if not config_includes(text):
        return ["ssh", "-F", str(managed_config_path()), alias]
    config = ssh_config_arg(user_config)
    return ["ssh", *(["-F", str(config)] if config else []), alias]


def master_up(argv: list[str]) -> bool:
    """Whether the shared connection `argv` (ssh_command's) would ride is up: `ssh -O check`, a
    question to the local master process. A box whose master is up is running and takes the key,
    so `devbox ssh` need not ask its engine first (a tenth of a second)."""
    import subprocess

    check = [*argv[:-1], "-O", "check", argv[-1]]
    try:
        done = subprocess.run(check, stdin=subprocess.DEVNULL, capture_output=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def ssh_config_arg(user_config: Path | None = None) -> Path | None:
    """The user's ssh config as `ssh -F` must be told it; None when ssh finds it by itself
    (ssh looks in the password database's home, not $HOME) or it does not exist."""
    path = user_config_path(user_config)
    if path == _passwd_home() / ".ssh" / "config" or not path.exists():
        return None
    return path


def config_includes(text: str, target: Path | None = None) -> bool:
    """Whether ssh config `text` includes `target` (our file) at top level, before any Host/Match.

    An Include inside a Host or Match block only applies to that block, so it does not count.
    """
    target = target or managed_config_path()
    for line in text.split("\n"):
        parsed = _keyword_and_args(line)
        if parsed is None:
            continue
        keyword, args = parsed
        if keyword in ("host", "match"):
            return False
        if keyword == "include" and any(_include_matches(arg, target) for arg in args):
            return True
    return False


# -- the devbox-owned file -------------------------------------------------------------------------


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One lock, next to our file, for every write to our file and to the user's config."""
    path = managed_config_path()
    try:
        paths.ensure_private_dir(path.parent)
    except OSError as exc:
        raise _os_error(path.parent, exc) from exc
    with files.locked(path):
        yield


def _write_managed(entries: Iterable[HostEntry]) -> None:
    path = managed_config_path()
    cm = control_dir()
    blocks = [render_block(e, cm) for e in sorted(entries, key=lambda e: e.alias)]
    text = HEADER + "".join("\n" + block for block in blocks)
    try:
        paths.ensure_private_dir(cm)
        files.atomic_write(path, text.encode("utf-8", "surrogateescape"), 0o600)
    except OSError as exc:
        raise _os_error(path, exc) from exc


def _parse_entries(text: str) -> Iterator[HostEntry]:
    blocks: list[tuple[str, dict[str, str]]] = []
    for line in text.split("\n"):
        parsed = _keyword_and_args(line)
        if parsed is None:
            continue
        keyword, args = parsed
        if keyword == "host":
            blocks.append((args[0] if len(args) == 1 else "", {}))
        elif blocks and keyword == "localforward" and len(args) == 2:
            options = blocks[-1][1]
            options["localforward"] = " ".join(filter(None, (options.get("localforward"), _forward_of(args))))
        elif blocks and args:
            blocks[-1][1].setdefault(keyword, args[0])
    for alias, options in blocks:
        entry = _entry_from_options(alias, options)
        if entry is not None:
            yield entry


def _entry_from_options(alias: str, options: dict[str, str]) -> HostEntry | None:
    try:
        return HostEntry(
            alias=alias,
            port=int(options["port"]),
            user=options["user"],
            identity_file=Path(_unescape_percent(options["identityfile"])),
            known_hosts=Path(_unescape_percent(options["userknownhostsfile"])),
            hostname=options["hostname"],
            proxy_jump=options.get("proxyjump", ""),
            forwards=tuple(options.get("localforward", "").split()),
        )
    except (KeyError, ValueError):
        return None


def _forward_of(args: list[str]) -> str:
    """`127.0.0.1:LOCAL 127.0.0.1:PORT` back to "PORT[:LOCAL]"; "?" (refused) for anything else."""
    local, port = (a.removeprefix("127.0.0.1:") for a in args)
    return "?" if not (local.isdigit() and port.isdigit()) else port if local == port else f"{port}:{local}"


# -- the user's config ---------------------------------------------------------------------------


def _ensure_include_locked(user_config: Path) -> IncludeResult:
    line = include_line()
    try:
        original = _read_or_none(user_config)
    except OSError:
        return IncludeResult(user_config, added=False, manual_line=line)
    if original is not None and config_includes(original.decode("utf-8", "surrogateescape")):
        return IncludeResult(user_config, added=False, manual_line=None)
    try:
        _write_user_config(user_config, original, line)
    except OSError:
        return IncludeResult(user_config, added=False, manual_line=line)
    return IncludeResult(user_config, added=True, manual_line=None)


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _write_user_config(user_config: Path, original: bytes | None, line: str) -> None:
    """Write `line` + the original bytes; raises OSError when it cannot or should not be written."""
    # A symlinked config (dotfiles repo, home-manager) stays a symlink: we replace its target.
    target = Path(os.path.realpath(user_config))
    encoded = line.encode("utf-8", "surrogateescape")
    if original is None:
        if not target.parent.exists():  # an existing ~/.ssh keeps its mode
            paths.ensure_private_dir(target.parent)
        files.atomic_write(target, encoded + b"\n", 0o600)
        return
    st = target.stat()
    mode = st.st_mode & 0o7777
    # No write bit at all is the owner saying "hands off"; root would otherwise write anyway.
    if not mode & 0o222 or not os.access(target, os.W_OK):
        raise PermissionError(f"{target} is read-only")
    # A new file in its place would leave its other hard links with the old text.
    if st.st_nlink > 1:
        raise PermissionError(f"{target} has other hard links")
    backup = user_config.with_name(user_config.name + BACKUP_SUFFIX)
    if not os.path.lexists(backup):
        files.atomic_write(backup, original, mode, group=st.st_gid)
    # Its group too: a group-readable config stays readable by that group, and by no other.
    files.atomic_write(target, encoded + _newline_of(original) + original, mode, group=st.st_gid)


def _newline_of(data: bytes) -> bytes:
    """The file's own line ending, judged by its first line (LF when it has none)."""
    first = data.find(b"\n")
    return b"\r\n" if first > 0 and data[first - 1 : first] == b"\r" else b"\n"


def _include_matches(pattern: str, target: Path) -> bool:
    """Whether an Include argument names `target`, the way OpenSSH expands it for a user config."""
    expanded = _expand_include(pattern)
    if not any(ch in expanded for ch in "*?["):
        return os.path.realpath(expanded) == os.path.realpath(target)
    # Match the path as given and as resolved, in case ~/.ssh itself is a symlink.
    return any(_glob_matches(expanded, c) for c in {str(target), os.path.realpath(target)})


def _expand_include(pattern: str) -> str:
    if pattern == "~" or pattern.startswith("~/"):
        return str(paths.home()) + pattern[1:]
    if pattern.startswith("~"):
        return os.path.expanduser(pattern)
    if not pattern.startswith("/"):
        # OpenSSH resolves relative Include paths in a user config against ~/.ssh.
        return str(paths.ssh_dir() / pattern)
    return pattern


def _glob_matches(pattern: str, path: str) -> bool:
    """glob(3) semantics without touching the disk: per component, and `*` skips dotfiles."""
    pattern_parts = PurePosixPath(pattern).parts
    path_parts = PurePosixPath(path).parts
    if len(pattern_parts) != len(path_parts):
        return False
    return all(
        fnmatch.fnmatchcase(part, pat) and (pat.startswith(".") or not part.startswith(".") or pat == part)
        for pat, part in zip(pattern_parts, path_parts, strict=True)
    )


# -- ssh config syntax -----------------------------------------------------------------------------


def _keyword_and_args(line: str) -> tuple[str, list[str]] | None:
    """(lowercased keyword, arguments) of one config line; None for blanks, comments and bad quoting."""
    match = _KEYWORD_RE.fullmatch(line.rstrip(" \t\r\n\f"))
    if match is None or match.group(1).startswith("#"):
        return None
    args = _split_args(match.group(2))
    if args is None:
        return None
    return match.group(1).lower(), args


def _split_args(text: str) -> list[str] | None:
    """Split arguments like OpenSSH's argv_split: quotes, backslash escapes, `#` comments."""
    args: list[str] = []
    i = 0
    while i < len(text):
        if text[i] in " \t":
            i += 1
            continue
        if text[i] == "#":
            break
        arg: list[str] = []
        quote = ""
        while i < len(text):
            ch = text[i]
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if ch == "\\" and (nxt in ("'", '"', "\\") or (not quote and nxt == " ")):
                arg.append(nxt)
                i += 1
            elif not quote and ch in " \t":
                break
            elif not quote and ch in "\"'":
                quote = ch
            elif quote and ch == quote:
                quote = ""
            else:
                arg.append(ch)
            i += 1
        if quote:
            return None
        args.append("".join(arg))
    return args


def _quote(value: str) -> str:
    if value and not _NEEDS_QUOTES.intersection(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def option_value(path: Path) -> str:
    """A path as an ssh option value (config line or `-o`): quoted where needed, `%` escaped."""
    return _quote(_escape_percent(str(path)))


def _escape_percent(value: str) -> str:
    # IdentityFile, UserKnownHostsFile and ControlPath expand %-tokens; a literal % is %%.
    return value.replace("%", "%%")


def _unescape_percent(value: str) -> str:
    return value.replace("%%", "%")


def _passwd_home() -> Path:
    try:
        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:  # a uid without a passwd entry (some containers): ssh falls back to $HOME
        return paths.home()


def _os_error(path: Path, exc: OSError) -> DevboxError:
    return DevboxError(
        f"cannot write {path}: {exc.strerror or exc}",
        hint="check that this directory is yours and writable",
    )
