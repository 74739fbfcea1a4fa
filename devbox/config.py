"""config.yaml: the user's own defaults for every devbox command, in one optional file.

The file is `$XDG_CONFIG_HOME/devbox/config.yaml` (~/.config/devbox/config.yaml by default). Every
key is optional, and a missing file sets nothing:

    host          the host commands use when none is named: a name from `devbox host ls`, or `local`
    image         the base image `up` uses
    alias_prefix  what goes before a box's name in its ssh alias (`devbox-` gives `ssh devbox-NAME`)
    identity      the private key devbox logs in with instead of its own ed25519 key
    ssh_config    the OpenSSH config that gets devbox's Include line

Precedence, the same for every key, highest first:

    1. the command-line flag (--host, --image, --identity, --ssh-config);
    2. the environment variable (DEVBOX_HOST, DEVBOX_IMAGE, DEVBOX_HOST_PREFIX, DEVBOX_SSH_CONFIG;
       identity has none). A variable that is set counts even when empty, as os.environ.get(VAR,
       default) has always read them: `DEVBOX_HOST_PREFIX=` means no prefix, and an empty
       DEVBOX_IMAGE is refused by spec.validate_image;
    3. this file;
    4. devbox's built-in default.

`resolve()` applies that order. For `up`, a project's devbox.yaml sits between the flags and the
environment (see the README's "Project file"); this module does not read it.

`load()` checks every value as the matching flag is checked, so a typo is reported once, naming
`FILE:LINE: KEY`, instead of surfacing later as a box with silently different settings. Whether a
`host` is in hosts.yaml and whether an `identity` file exists are left to the command that uses
them: a stale default must not break commands that never touch it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from devbox import hosts, paths, spec, sshconfig
from devbox.errors import UsageError

FILENAME = "config.yaml"
IMAGE_ENV = "DEVBOX_IMAGE"

# The environment variable of each key that has one (precedence level 2).
ENV_VARS = {
    "host": hosts.HOST_ENV,
    "image": IMAGE_ENV,
    "alias_prefix": sshconfig.PREFIX_ENV,
    "ssh_config": sshconfig.CONFIG_ENV,
}

STARTER = """\
# devbox's defaults for you, in every project. Every key is optional. A command-line flag wins,
# then the environment variable, then this file, then devbox's own default.
# host: gpu1                   # a host from `devbox host ls`, or local  (env: DEVBOX_HOST)
# image: ubuntu:24.04          # base image for `devbox up`              (env: DEVBOX_IMAGE)
# alias_prefix: devbox-        # boxes are `ssh devbox-NAME`             (env: DEVBOX_HOST_PREFIX)
# identity: ~/.ssh/id_ed25519  # your key instead of devbox's own: ~/... or an absolute path
# ssh_config: ~/.ssh/config    # the file that gets devbox's Include     (env: DEVBOX_SSH_CONFIG)
"""

T = TypeVar("T")


class ConfigError(UsageError):
    """A config.yaml problem: `FILE:LINE: KEY: what is wrong`, exit 2."""


@dataclass(frozen=True)
class Settings:
    """config.yaml's values; None where the file does not set a key."""

    host: str | None = None
    image: str | None = None
    alias_prefix: str | None = None
    identity: Path | None = None
    ssh_config: Path | None = None
    path: Path | None = None  # the file read; None when there was none
    lines: tuple[tuple[str, int], ...] = ()  # (key, 1-based line) for where()

    def where(self, key: str) -> str:
        """`FILE:LINE` of `key`, for messages about its value; the file alone when the key is not in it."""
        line = dict(self.lines).get(key)
        file = self.path or default_path()
        return f"{file}:{line}" if line else str(file)


def default_path() -> Path:
    return paths.config_dir() / FILENAME


def resolve(flag: T | None, env_var: str | None, setting: T | None, default: T) -> T | str:
    """The value a command uses: `flag`, else the variable named `env_var` when it is set (even
    empty), else config.yaml's `setting`, else `default`. None means "not given" at every level.
    Pass env_var=None where click already folded the variable into the flag (envvar=...)."""
    if flag is not None:
        return flag
    if env_var is not None and env_var in os.environ:
        return os.environ[env_var]
    return default if setting is None else setting


# ---------------------------------------------------------------- each key's check


def _host(text: str) -> str:
    # `local` is a fine default although it cannot be a configured host's name.
    return text if text == hosts.LOCAL else hosts.validate_name(text)


# Every box name is [a-z0-9][a-z0-9-]*, characters an ssh alias takes anywhere, so one sample
# box name decides for all of them whether the prefix makes usable aliases.
_SAMPLE_BOX = "mybox"


def _alias_prefix(text: str) -> str:
    try:
        sshconfig.host_alias(_SAMPLE_BOX, text)
    except UsageError as exc:
        # host_alias names DEVBOX_HOST_PREFIX; here the value came from the file.
        alias = text + _SAMPLE_BOX
        raise UsageError(
            f"{text!r} makes ssh aliases such as {alias!r}, which ssh cannot use", exc.hint
        ) from None
    return text


def _absolute_path(example: str) -> Callable[[str], Path]:
    def check(text: str) -> Path:
        # Expanded here: OpenSSH and devbox's later readers each resolve `~` their own way.
        expanded = os.path.expanduser(text)
        if not os.path.isabs(expanded):
            raise UsageError(f"{text!r} is not an absolute path", f"start it with / or ~, e.g. {example}")
        return Path(expanded)

    return check


_CHECKS: dict[str, Callable[[str], Any]] = {
    "host": _host,
    "image": spec.validate_image,
    "alias_prefix": _alias_prefix,
    "identity": _absolute_path("~/.ssh/id_ed25519"),
    "ssh_config": _absolute_path("~/.ssh/config"),
}
_KEYS_HINT = "keys: " + ", ".join(_CHECKS)


def current() -> Settings:
    """The user's config.yaml as it is now; read once per change of the file, since the ssh alias
    of every listed box asks for the prefix."""
    path = default_path()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = None  # no file (or no way to read it): load() says which
    return _load_once(path, stamp)


@functools.lru_cache(maxsize=4)
def _load_once(path: Path, _stamp: int | None) -> Settings:
    return load(path)


def default_image() -> str:
    """The base image `up` and the TUI's form start from: DEVBOX_IMAGE, config.yaml, ubuntu:24.04."""
    return str(resolve(None, IMAGE_ENV, current().image, spec.DEFAULT_IMAGE))


# ---------------------------------------------------------------- reading the file


def load(path: Path | None = None) -> Settings:
    """config.yaml (default: default_path()) read and checked; a missing file sets nothing.
    Every problem is a ConfigError naming the file and, where there is one, the line."""
    path = path or default_path()
    text = _read(path)
    if text is None:
        return Settings()  # no file: no YAML parser to import (every `ls` asks for the alias prefix)
    import yaml

    root = _compose(path, text)
    if root is None or root.tag == "tag:yaml.org,2002:null":  # no document, or an empty one
        return Settings(path=path)
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(
            f"{path}:{_line(root)}: the file must be a mapping of keys",
            f"e.g. image: ubuntu:24.04; {_KEYS_HINT}",
        )
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in root.value:
        if not _is_text(key_node):
            raise ConfigError(f"{path}:{_line(key_node)}: keys must be names", _KEYS_HINT)
        key = key_node.value
        where = f"{path}:{_line(key_node)}: {key}"
        if key in lines:
            raise ConfigError(f"{where}: duplicate key (first on line {lines[key]})", "keep one of them")
        lines[key] = _line(key_node)
        check = _CHECKS.get(key)
        if check is None:
            import difflib  # only to suggest a fix

            close = difflib.get_close_matches(key, _CHECKS, n=1)
            raise ConfigError(f"{where}: unknown key", f"did you mean {close[0]!r}?" if close else _KEYS_HINT)
        if not _is_text(value_node):
            kind = _describe(value_node)
            raise ConfigError(
                f"{where}: must be text, not {kind}", _WRONG_KIND_HINTS.get(kind, "quote it to mean text")
            )
        try:
            values[key] = check(value_node.value)
        except UsageError as exc:
            raise ConfigError(f"{where}: {exc.message}", exc.hint) from None
    return Settings(**values, path=path, lines=tuple(lines.items()))


def _read(path: Path) -> str | None:
    """The file's text; None when there is no file."""
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read it: {exc.strerror or exc}", "fix its permissions, or remove it"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path}: not UTF-8 text", "config.yaml is a YAML text file; remove or rewrite it"
        ) from None


def _compose(path: Path, text: str) -> Any:
    """The YAML node tree of `text`, which keeps every key's line; None when it holds no document."""
    import yaml

    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = f":{exc.problem_mark.line + 1}" if exc.problem_mark else ""
        problem = ", ".join(part for part in (exc.context, exc.problem) if part) or "unreadable"
        raise ConfigError(
            f"{path}{line}: not valid YAML: {problem}", "check the indentation and quoting"
        ) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            f"{path}:{line}: not valid YAML: character U+{exc.character:04X} is not allowed",
            "config.yaml is a YAML text file; remove the character",
        ) from None
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())[:200]
        raise ConfigError(f"{path}: not valid YAML: {first}", "check the indentation and quoting") from None
    except RecursionError:
        # PyYAML's composer recurses once per nesting level; no config value is nested at all.
        raise ConfigError(
            f"{path}: not valid YAML: nested too deeply", f"the values are plain text; {_KEYS_HINT}"
        ) from None


def _line(node: Any) -> int:
    return node.start_mark.line + 1


def _is_text(node: Any) -> bool:
    import yaml

    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str"


_SCALAR_KINDS = {"null": "empty", "bool": "true/false", "int": "a number", "float": "a number"}
_WRONG_KIND_HINTS = {
    "empty": "give a value, or remove the line",
    "a list": "each key takes one value",
    "a mapping": "each key takes one value",
}


def _describe(node: Any) -> str:
    """What a non-text node is, from its tag alone: building the value could itself fail (`!!int x`)."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    name = node.tag.removeprefix("tag:yaml.org,2002:")
    return _SCALAR_KINDS.get(name, f"a {name} value")
