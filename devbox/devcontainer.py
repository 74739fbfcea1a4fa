"""devcontainer.json: `devbox up` in a folder that has one (and no devbox.yaml) makes its box from it.

The file is read as VS Code reads it (comments, trailing commas, `${...}` variables) and mapped
onto the values devbox.yaml gives `up`. What devbox cannot apply (features, containerUser,
most runArgs...) comes back as warnings for one line, never dropped silently; what is malformed is a
ProjectError naming the file, the line of the top-level key, and the key.
"""

from __future__ import annotations

import csv
import json
import os
import posixpath
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devbox.errors import UsageError
from devbox.project import Project, ProjectError

# In the spec's order of precedence: the folder form wins over the single file.
FILENAMES = (Path(".devcontainer") / "devcontainer.json", Path(".devcontainer.json"))

_LIFECYCLE = ("onCreateCommand", "updateContentCommand", "postCreateCommand")  # the order they run in
_LOCAL_HOSTS = ("localhost", "127.0.0.1")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DIGITS = re.compile(r"[0-9]{1,9}")  # ASCII only, and short enough that int() is always cheap
_NOT_SET = object()


def find(start: Path | None = None) -> Path | None:
    """The devcontainer.json of the nearest folder from `start` (the current directory) upwards."""
    from devbox import project

    return project.find(start, FILENAMES)


def not_applied_line(warnings: Iterable[str]) -> str | None:
    """The one warning line `up` prints for what the file asks and devbox does not do; None if nothing."""
    from devbox.terminal import plain

    # Keys and values come from the file: keep escapes and line breaks out of the user's terminal.
    shown = dict.fromkeys(" ".join(plain(w).split()) for w in warnings)
    return "devcontainer.json: not applied: " + ", ".join(shown) if shown else None


# ---------------------------------------------------------------- JSON with comments

_TOKEN = re.compile(
    r'(?P<string>"(?:[^"\\\n]|\\.)*")'
    r"|(?P<comment>//[^\n]*|(?s:/\*.*?\*/))"
    r"|(?P<open_comment>/\*)"
    r"|(?P<punct>[{}\[\]:,])"
    r"|(?P<space>\s+)"
    r'|(?P<other>[^\s"{}\[\]:,/]+|.)'
)


@dataclass
class _Frame:
    kind: str  # "{" or "["
    keys: dict[str, int] = field(default_factory=dict)  # key → line, for objects


@dataclass
class _Scan:
    """One pass over JSONC text: plain JSON out (same lines and columns), plus what json cannot tell."""

    out: list[str] = field(default_factory=list)
    frames: list[_Frame] = field(default_factory=list)
    key_lines: dict[str, int] = field(default_factory=dict)  # top-level key → line
    duplicate: tuple[str, str, int, int] | None = None  # top-level key, key, line, first line
    open_comment: int | None = None  # offset of a /* that never ends
    root_line: int = 1
    line: int = 1
    last: int = -1  # index in `out` of the last token that was not space or comment
    string: tuple[str, int] | None = None  # the last token and its line, if a string: a key if ':' follows
    top_key: str = ""

    def feed(self, kind: str, token: str, offset: int) -> bool:
        """Take one token; False once the rest of the text cannot be scanned."""
        if kind == "open_comment":
            self.open_comment = offset
            return False
        if kind == "comment":
            # Blanked, not removed, so json's line and column numbers point into the real file.
            self.out.append(re.sub(r"[^\n]", " ", token))
        elif kind == "space":
            self.out.append(token)
        else:
            self._significant(kind, token)
        self.line += token.count("\n")
        return True

    def _significant(self, kind: str, token: str) -> None:
        if self.last < 0:
            self.root_line = self.line
        if token in "}]" and kind == "punct" and self.last >= 0 and self.out[self.last] == ",":
            self.out[self.last] = " "  # a trailing comma
        if token == ":" and self.string is not None and self.frames and self.frames[-1].kind == "{":
            self._key(*self.string)
        if kind == "punct" and token in "{[":
            self.frames.append(_Frame(token))
        elif kind == "punct" and token in "}]" and self.frames:
            self.frames.pop()
        self.string = (token, self.line) if kind == "string" else None
        self.last = len(self.out)
        self.out.append(token)

    def _key(self, token: str, line: int) -> None:
        try:
            key = json.loads(token)
        except ValueError:
            key = token[1:-1]  # a bad escape: json.loads of the whole text reports it
        seen = self.frames[-1].keys
        if len(self.frames) == 1:
            self.top_key = key
            self.key_lines.setdefault(key, line)
        if key in seen and self.duplicate is None:
            self.duplicate = (self.top_key, key, line, seen[key])
        seen.setdefault(key, line)


def _scan(text: str) -> _Scan:
    scan = _Scan()
    for match in _TOKEN.finditer(text):
        if not scan.feed(match.lastgroup or "other", match.group(), match.start()):
            scan.out.append(text[match.start() :])
            break
    return scan


def strip_jsonc(text: str) -> str:
    """`text` (JSON with // and /* */ comments and trailing commas) as JSON that keeps every line
    and column where it was: comments and trailing commas become spaces, strings stay as they are."""
    return "".join(_scan(text).out)


def _decode(path: Path, scan: _Scan) -> Any:
    if scan.duplicate:
        top, key, line, first = scan.duplicate
        which = "" if top == key else f" {key!r}"
        raise ProjectError(
            f"{path}:{line}: {_shown(top)}: duplicate key{which} (first on line {first})", "keep one of them"
        )
    text = "".join(scan.out)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # json's "Invalid control character at" a line's end means a string that is not closed.
        unclosed = exc.msg.startswith("Invalid control") and text[exc.pos : exc.pos + 1] == "\n"
        problem = f"{'Unterminated string' if unclosed else exc.msg.removesuffix(' at')} (column {exc.colno})"
        if exc.pos == scan.open_comment:
            problem = "a /* comment never ends"
        raise ProjectError(
            f"{path}:{exc.lineno}: not valid JSON: {problem}", "check for a missing comma, quote or bracket"
        ) from None
    except (ValueError, RecursionError) as exc:  # a number too long to convert, nesting too deep
        raise ProjectError(f"{path}: not valid JSON: {exc}", "fix the file") from None


# ---------------------------------------------------------------- variables

_VARIABLE = re.compile(r"\$\{(\w+)(?::([^}:]*)(?::([^}]*))?)?\}")


class _Unresolved(Exception):
    """A `${...}` devbox cannot know when it reads the file; the value it is in is not applied."""

    def __init__(self, variable: str) -> None:
        super().__init__(variable)
        self.variable = variable


@dataclass(frozen=True)
class _Vars:
    local_folder: str
    container_folder: str | None = None  # None while workspaceFolder itself is read

    def parts(self, text: str) -> list[tuple[bool, str]]:
        """`text` as (False, literal) pieces and (True, NAME) for ${containerEnv:NAME}."""
        pieces: list[tuple[bool, str]] = []
        end = 0
        for match in _VARIABLE.finditer(text):
            pieces += [(False, text[end : match.start()]), self._one(match)]
            end = match.end()
        pieces.append((False, text[end:]))
        return [p for p in pieces if p[1]]

    def _one(self, match: re.Match[str]) -> tuple[bool, str]:
        name, arg, default = match.groups()
        if arg is None and name in ("localWorkspaceFolder", "localWorkspaceFolderBasename"):
            folder = self.local_folder
            return False, os.path.basename(folder) if name.endswith("Basename") else folder
        if arg is None and name in ("containerWorkspaceFolder", "containerWorkspaceFolderBasename"):
            if self.container_folder is None:
                raise _Unresolved(match[0])
            folder = self.container_folder
            return False, posixpath.basename(folder.rstrip("/")) if name.endswith("Basename") else folder
        if arg is not None and name in ("localEnv", "env"):  # env: the older spelling
            return False, os.environ.get(arg, default or "")
        if arg is not None and name == "containerEnv" and _ENV_NAME.fullmatch(arg) and default is None:
            return True, arg
        if name in ("devcontainerId", "containerEnv"):
            raise _Unresolved(match[0])
        return False, match[0]  # not the spec's: likely the shell's own ${HOME}, kept as written

    def text(self, text: str) -> str:
        """For a value devbox reads itself, where a variable of the container cannot be known."""
        parts = self.parts(text)
        for is_env, piece in parts:
            if is_env:
                raise _Unresolved(f"${{containerEnv:{piece}}}")
        return "".join(piece for _, piece in parts)

    def shell_line(self, text: str) -> str:
        """For a shell command line run in the box: ${containerEnv:X} becomes the shell's ${X}."""
        return "".join(f"${{{p}}}" if is_env else p for is_env, p in self.parts(text))

    def shell_word(self, text: str) -> str:
        """One argument of an argv command, quoted for the shell, its container variables expanded."""
        quoted = (f'"${{{p}}}"' if is_env else shlex.quote(p) for is_env, p in self.parts(text))
        return "".join(quoted) or "''"


def _workspace_folder(path: Path) -> Path:
    """The folder VS Code opens: the one holding .devcontainer/ (or .devcontainer.json)."""
    file = Path(os.path.abspath(path))
    for folder in file.parents:
        if folder.name == ".devcontainer":
            return folder.parent
    return file.parent


# ---------------------------------------------------------------- loading


def load(path: Path) -> tuple[Project, tuple[str, ...]]:
    """The values `up` takes from `path`, and what the file asks that devbox does not apply.

    Every problem is a ProjectError `FILE:LINE: KEY: ...`, LINE being where the top-level key is.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")  # VS Code saves some files with a BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(f"cannot read {path}: {exc}", "fix the file or its permissions") from None
    scan = _scan(text)
    data = _decode(path, scan)
    if not isinstance(data, dict):
        raise ProjectError(
            f"{path}:{scan.root_line}: the file must be a JSON object", '{"image": "ubuntu:24.04"}'
        )
    project = Project(path, folder=_workspace_folder(path))
    project.lines.update(scan.key_lines)
    reader = _Reader(project, data, scan.root_line)
    reader.read()
    return project, tuple(reader.warnings)


class _Reader:
    """One pass over a parsed file: values into the project, what devbox cannot do into warnings."""

    def __init__(self, project: Project, data: dict[str, Any], root_line: int) -> None:
        self.project = project
        self.data = data
        self.root_line = root_line
        self.warnings: list[str] = []
        folder = _workspace_folder(project.path)
        self.folder = str(folder)
        self.default_target = f"/workspaces/{folder.name}"
        self.vars = _Vars(self.folder)
        self.mounts: list[tuple[str, str]] = []  # (SRC:DST[:ro], the key it came from)
        self.workspace_mount: Any = _NOT_SET  # SRC:DST text, or None: no workspace mount
        self.env: dict[str, dict[str, str | None]] = {"containerEnv": {}, "remoteEnv": {}}
        self.setup: dict[str, list[str]] = {}
        self.gpu_required = False
        self.build: dict[str, tuple[str, str]] = {}  # dockerfile/context → (text, key)
        self.legacy: dict[str, tuple[str, str]] = {}  # top-level dockerFile/context
        self.build_args: tuple[str, ...] = ()
        self.build_read = False  # "build" was read whole (no variable devbox cannot know)

    def read(self) -> None:
        self._workdir()
        for key, value in self.data.items():
            if key in _SILENT:
                continue
            handler = _HANDLERS.get(key)
            if handler is None:
                self.warnings.append(key)
                continue
            try:
                handler(self, key, value)
            except _Unresolved as exc:
                self.warnings.append(f"{key} ({exc.variable})")
        self._finish_gpus()
        self._finish_build()
        self._finish_mounts()
        self._finish_env()
        self._finish_setup()

    # ------------------------------------------------------------ helpers

    def fail(self, key: str, message: str, hint: str = "") -> ProjectError:
        """An error for `key` (or "key.sub": the line of key, the message naming sub)."""
        sub = _shown(key.partition(".")[2])
        return self.project.error(key, f"{sub} {message}" if sub else message, hint)

    def need(self, key: str, value: Any, kinds: tuple[type, ...], what: str, hint: str = "") -> Any:
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            raise self.fail(key, f"must be {what}, not {_kind(value)}", hint)
        return value

    def text(self, key: str, value: Any, hint: str = "") -> str:
        return self.vars.text(self.need(key, value, (str,), "text", hint))

    def check(self, key: str, check: Callable[[], Any]) -> Any:
        """Run one of spec's own checks; its message gets the file, line and key."""
        try:
            return check()
        except UsageError as exc:
            raise self.fail(key, exc.message, exc.hint or "") from None

    def set(self, name: str, value: Any, key: str) -> None:
        self.project.values[name] = value
        self.project.lines[name] = self.line(key)

    def line(self, key: str) -> int:
        return self.project.lines.get(key, self.root_line)

    # ------------------------------------------------------------ keys

    def _workdir(self) -> None:
        """workspaceFolder first: every other value may name it as ${containerWorkspaceFolder}."""
        workdir = self.default_target
        if "workspaceFolder" in self.data:
            key = "workspaceFolder"
            try:
                workdir = self.text(key, self.data[key], 'e.g. "/workspaces/project"')
            except _Unresolved as exc:
                self.warnings.append(f"{key} ({exc.variable})")
            if not workdir.startswith("/") or any(ord(c) < 32 or ord(c) == 127 for c in workdir):
                raise self.fail(key, f"{workdir!r} is not an absolute path", 'e.g. "/workspaces/project"')
        self.vars = _Vars(self.folder, workdir)
        self.set("workdir", workdir, "workspaceFolder")

    def _name(self, key: str, value: Any) -> None:
        from devbox.spec import validate_name

        name = self.text(key, value)
        try:
            self.set("name", validate_name(name), key)
        except UsageError:
            # Often free text ("Python 3"): the box is then named as devbox names it, said in the line.
            self.warnings.append(f"name {name!r} (not a box name)")

    def _remote_user(self, key: str, value: Any) -> None:
        """remoteUser names the box's login (UID/GID stay the server login's, as always); one devbox
        cannot be (root, an image's system account) is said in the warning line and not used."""
        from devbox.spec import parse_user

        name = self.text(key, value, 'e.g. "vscode"')
        try:
            self.set("user", parse_user(name), key)
        except UsageError:
            self.warnings.append(f"remoteUser {name!r} (you log in as yourself, with sudo)")

    def _image(self, key: str, value: Any) -> None:
        from devbox.spec import validate_image

        image = self.text(key, value, 'e.g. "mcr.microsoft.com/devcontainers/python:3.12"')
        self.set("image", self.check(key, lambda: validate_image(image)), key)

    def _build(self, key: str, value: Any) -> None:
        build = self.need(key, value, (dict,), "an object", '{"dockerfile": "Dockerfile", "context": ".."}')
        paths: dict[str, tuple[str, str]] = {}
        args: tuple[str, ...] = ()
        for name, item in build.items():
            if name in ("dockerfile", "context"):
                paths[name] = (self.text(f"{key}.{name}", item), key)
            elif name == "args":
                args = self._build_args(f"{key}.{name}", item)
            else:
                self.warnings.append(f"{key}.{name}")
        # Only a build read whole is used: half of one (a variable unknown here) would build wrongly.
        self.build, self.build_args, self.build_read = paths, args, True

    def _build_args(self, key: str, value: Any) -> tuple[str, ...]:
        args = self.need(key, value, (dict,), "an object", '{"VARIANT": "3.12"}')
        for name in args:
            if not name or "=" in name or any(c.isspace() for c in name):
                raise self.fail(key, f"{name!r} is not a build argument name", '{"VARIANT": "3.12"}')
        return tuple(f"{name}={self.text(f'{key}.{name}', item)}" for name, item in args.items())

    def _legacy_build(self, key: str, value: Any) -> None:
        self.legacy[key.lower()] = (self.text(key, value), key)

    def _run_args(self, key: str, value: Any) -> None:
        args = [self.text(key, a) for a in self._text_list(key, value, '["--gpus", "all"]')]
        for flag, arg in _flags(args):
            option = _RUN_FLAGS.get(flag)
            if option is None:
                self.warnings.append(f"{key} {flag}")
            elif arg is None:
                raise self.fail(key, f"{flag} needs a value", f'e.g. ["{flag}", "..."]')
            else:
                self._run_option(key, option, arg)

    def _run_option(self, key: str, option: str, arg: str) -> None:
        from devbox.spec import parse_cpus, parse_size

        if option == "gpus":
            name, selection, ignored = self.check(key, lambda: _gpu_option(arg))
            self.project.values.pop("gpus_text", None)
            self.project.values.pop("gpu_count", None)
            self.set(name, selection, key)
            self.warnings += [f"{key} --gpus {word}" for word in ignored]
        elif option == "cpus":
            try:
                cpus = float(arg)
            except ValueError:
                raise self.fail(key, f"--cpus {arg!r} is not a number", "e.g. 8 or 0.5") from None
            self.set(option, self.check(key, lambda: parse_cpus(cpus)), key)
        else:
            flag = f"--{option.replace('_', '-')}"  # `-m` is --memory in the message
            self.set(option, self.check(key, lambda: parse_size(_docker_size(arg), flag)), key)

    def _host_requirements(self, key: str, value: Any) -> None:
        requirements = self.need(key, value, (dict,), "an object", '{"gpu": true}')
        for name, item in requirements.items():
            if name != "gpu":
                # Minimums for choosing a machine, not limits: devbox places by GPUs only.
                self.warnings.append(f"{key}.{name}")
            elif item == "optional":
                self.warnings.append(f'{key}.gpu "optional" (no GPU unless runArgs --gpus)')
            elif isinstance(item, dict):
                self.gpu_required = True
                self.warnings += [f"{key}.gpu.{k}" for k in item]
            else:
                forms = 'true, false, "optional" or {"cores": 1000, "memory": "16gb"}'
                self.gpu_required = self.need(f"{key}.gpu", item, (bool,), forms)

    def _mount_list(self, key: str, value: Any) -> None:
        hint = '["source=${localEnv:HOME}/data,target=/data,type=bind"]'
        for item in self.need(key, value, (list,), "a list", hint):
            try:
                text = self._mount(key, item)
            except _Unresolved as exc:
                self.warnings.append(f"{key} ({exc.variable})")
                continue
            if text is not None:
                self.mounts.append((text, key))

    def _workspace_mount(self, key: str, value: Any) -> None:
        # An empty workspaceMount asks for none, as VS Code takes it.
        self.workspace_mount = self._mount(key, value) if value != "" else None

    def _mount(self, key: str, item: Any) -> str | None:
        """One mount as SRC:DST[:ro]; None (and a warning) for what is not a bind mount."""
        hint = '"source=/data,target=/data,type=bind" or {"source": ..., "target": ..., "type": "bind"}'
        if isinstance(item, str):
            fields = self._mount_fields(key, self.vars.text(item), hint)
        elif isinstance(item, dict):
            fields = {k.lower(): self._mount_value(key, k, v, hint) for k, v in item.items()}
        else:
            raise self.fail(key, f"each mount must be text or an object, not {_kind(item)}", hint)
        source = fields.pop("source", None) or fields.pop("src", None)
        target = fields.pop("target", None) or fields.pop("destination", None) or fields.pop("dst", None)
        kind = fields.pop("type", "volume")  # Docker's own default for --mount
        read_only = fields.pop("readonly", fields.pop("ro", "false")).lower() in ("true", "1", "")
        fields.pop("consistency", None)  # a macOS file-sharing hint; Docker on Linux ignores it
        if not target:
            raise self.fail(key, "a mount has no target", hint)
        if kind != "bind":
            self.warnings.append(f"{key} {target} (type={kind})")
            return None
        if not source:
            raise self.fail(key, f"the bind mount to {target!r} has no source", hint)
        self.warnings += [f"{key} {target} ({k})" for k in fields]
        return f"{source}:{target}{':ro' if read_only else ''}"

    def _mount_fields(self, key: str, text: str, hint: str) -> dict[str, str]:
        """Docker's --mount syntax: comma-separated key=value, quoted as CSV; a bare key means true."""
        try:
            items = next(csv.reader([text]), [])
        except csv.Error:  # a line break in it
            raise self.fail(key, f"cannot read mount {text!r}", hint) from None
        fields = {}
        for item in items:
            name, sep, value = item.partition("=")
            fields[name.strip().lower()] = value.strip() if sep else ""
        return fields

    def _mount_value(self, key: str, name: str, value: Any, hint: str) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        return self.vars.text(self.need(f"{key}.{name}", value, (str,), "text", hint))

    def _env(self, key: str, value: Any) -> None:
        env = self.need(key, value, (dict,), "an object", '{"WANDB_MODE": "offline"}')
        allowed: tuple[type, ...] = (str, int, float, bool) + ((type(None),) if key == "remoteEnv" else ())
        for name, item in env.items():
            self.need(f"{key}.{name}", item, allowed, "text")
            try:
                self.env[key][name] = None if item is None else self.vars.text(_env_text(item))
            except _Unresolved as exc:
                self.warnings.append(f"{key}.{name} ({exc.variable})")

    def _ports(self, key: str, value: Any) -> None:
        hint = 'e.g. [8888, "localhost:6006"]'
        ports: dict[str, None] = {}
        for item in self.need(key, value, (list,), "a list", hint):
            port = self._port(key, item, hint)
            if port is not None:
                ports[port] = None
        self.set("ports", tuple(ports), key)

    def _port(self, key: str, item: Any, hint: str) -> str | None:
        self.need(key, item, (int, str), "port numbers or host:port text", hint)
        host, _, port = self.vars.text(item).rpartition(":") if isinstance(item, str) else ("", "", str(item))
        if not _DIGITS.fullmatch(port) or not 1 <= int(port) <= 65535:
            raise self.fail(key, f"{item!r} is not a port", hint)
        if host and host not in _LOCAL_HOSTS:
            self.warnings.append(f"{key} {item}")  # another host's port: devbox forwards the box's own
            return None
        return port

    def _commands(self, key: str, value: Any) -> None:
        hint = 'a shell line, a list of arguments, or {"name": "command", ...}'
        named = value.items() if isinstance(value, dict) else [("", value)]
        commands = []
        for name, command in named:
            where = f"{key}.{name}" if name else key
            try:
                commands += self._command(where, command, hint)
            except _Unresolved as exc:
                self.warnings.append(f"{where} ({exc.variable})")
        self.setup[key] = commands

    def _command(self, key: str, command: Any, hint: str) -> list[str]:
        if isinstance(command, list):
            words = [self.need(key, w, (str,), "a list of text", hint) for w in command]
            # No shell in the spec's array form: quoting each word runs exactly that argv.
            return [" ".join(self.vars.shell_word(w) for w in words)] if words else []
        line = self.vars.shell_line(self.need(key, command, (str,), hint))
        return [line] if line.strip() else []

    def _text_list(self, key: str, value: Any, hint: str) -> list[str]:
        items = self.need(key, value, (list,), "a list", hint)
        return [self.need(key, item, (str,), "a list of text", hint) for item in items]

    # ------------------------------------------------------------ after every key

    def _finish_gpus(self) -> None:
        values = self.project.values
        if self.gpu_required and "gpus_text" not in values and "gpu_count" not in values:
            self.set("gpu_count", 1, "hostRequirements")

    def _finish_build(self) -> None:
        dockerfile = self.build.get("dockerfile") or self.legacy.get("dockerfile")
        # The older top-level spellings, where build says otherwise or there is nothing to build.
        self.warnings += [k for name, (_, k) in self.legacy.items() if name in self.build or not dockerfile]
        if dockerfile is None:
            if self.build_read:
                self.warnings.append("build (no dockerfile)")
            if "image" not in self.project.values:
                raise self._no_image()
            return
        text, key = dockerfile
        context, _ = self.build.get("context") or self.legacy.get("context") or (".", key)
        # The spec: both relative to the folder devcontainer.json is in.
        base = os.path.dirname(os.path.abspath(self.project.path))
        dockerfile_path = os.path.normpath(os.path.join(base, text))
        context_path = os.path.normpath(os.path.join(base, context))
        if not os.path.isfile(dockerfile_path):
            raise self.fail(key, f"Dockerfile {dockerfile_path!r} does not exist", _RELATIVE_HINT)
        if not os.path.isdir(context_path):
            raise self.fail(key, f"build context {context_path!r} is not a folder", _RELATIVE_HINT)
        build = {"dockerfile": dockerfile_path, "context": context_path, "args": self.build_args}
        self.set("build", build, key)
        if "image" in self.project.values:  # as the devcontainer CLI does: the Dockerfile wins
            del self.project.values["image"]
            self.warnings.append("image (the Dockerfile is used)")

    def _no_image(self) -> ProjectError:
        hint = 'add "image": "ubuntu:24.04" or "build": {"dockerfile": "Dockerfile"}'
        if "dockerComposeFile" in self.data:
            hint = "devbox does not run Docker Compose; " + hint + ", or write a devbox.yaml"
        where = f"{self.project.path}:{self.root_line}"
        return ProjectError(f"{where}: no image or build.dockerfile", hint)

    def _finish_mounts(self) -> None:
        from devbox.spec import HostFacts, parse_mount

        entries = list(self.mounts)
        workspace = self.workspace_mount
        if workspace is _NOT_SET:
            # As the devcontainer CLI does: at /workspaces/<folder>, wherever workspaceFolder points.
            workspace = f"{self.folder}:{self.default_target}"
        if workspace is not None:
            entries.insert(0, (workspace, "workspaceMount"))
        targets: set[str] = set()
        for i, (text, key) in enumerate(entries):
            mount = self.check(key, lambda t=text: parse_mount(t, HostFacts.unchecked()))
            if mount.target in targets:
                raise self.fail(key, f"two mounts target {mount.target!r}", "give each mount its own target")
            targets.add(mount.target)
            self.project.lines[f"mounts.{i}"] = self.line(key)
        if entries:
            # Not the workspace mount's line when the file has a mounts key: that is the one to point at.
            key = "mounts" if "mounts" in self.data else entries[0][1]
            self.set("mounts", tuple(text for text, _ in entries), key)

    def _finish_env(self) -> None:
        from devbox.spec import parse_env

        merged: dict[str, tuple[str | None, str]] = {}
        for key in ("containerEnv", "remoteEnv"):  # remoteEnv wins, as in VS Code
            merged.update({name: (value, key) for name, value in self.env[key].items()})
        envs = []
        for name, (value, key) in merged.items():
            if value is not None:  # remoteEnv's null unsets
                self.check(key, lambda e=f"{name}={value}": parse_env(e))
                envs.append(f"{name}={value}")
        if envs:
            first = "containerEnv" if "containerEnv" in self.data else "remoteEnv"
            self.set("envs", tuple(envs), first)

    def _finish_setup(self) -> None:
        keys = [k for k in _LIFECYCLE if k in self.setup]
        commands = tuple(c for k in keys for c in self.setup[k])
        if commands:
            self.set("setup", commands, keys[0])


_RELATIVE_HINT = "paths in build are relative to the folder devcontainer.json is in"
_RUN_FLAGS = {
    "--gpus": "gpus",
    "--shm-size": "shm_size",
    "--memory": "memory",
    "-m": "memory",
    "--cpus": "cpus",
}
_SILENT = {"$schema"}  # for the editor only
_HANDLERS: dict[str, Callable[[_Reader, str, Any], None]] = {
    "workspaceFolder": lambda reader, key, value: None,  # read first, by _workdir
    "name": _Reader._name,
    "image": _Reader._image,
    "build": _Reader._build,
    "dockerFile": _Reader._legacy_build,
    "context": _Reader._legacy_build,
    "runArgs": _Reader._run_args,
    "hostRequirements": _Reader._host_requirements,
    "mounts": _Reader._mount_list,
    "workspaceMount": _Reader._workspace_mount,
    "containerEnv": _Reader._env,
    "remoteEnv": _Reader._env,
    "forwardPorts": _Reader._ports,
    "remoteUser": _Reader._remote_user,
    **dict.fromkeys(_LIFECYCLE, _Reader._commands),
}


def _shown(text: str) -> str:
    """A key from the file as an error message shows it: quoted if it holds a line break or such."""
    return text if text.isprintable() else repr(text)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    kinds = {dict: "an object", list: "a list", str: "text", int: "a number", float: "a number"}
    return kinds.get(type(value), "null")


def _env_text(value: str | float | bool) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _flags(args: list[str]) -> list[tuple[str, str | None]]:
    """runArgs as (flag, value or None): `--f v`, `--f=v`, `-m v`, `-m16g`; a word after a flag is
    taken as its value, so an unknown flag's value is not listed as a flag of its own."""
    pairs: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        flag, eq, value = arg.partition("=")
        if not eq and arg.startswith("-m") and len(arg) > 2:
            flag, eq, value = "-m", "=", arg[2:]
        if not arg.startswith("-"):
            pairs.append((arg, None))  # a stray word: listed as it is
        elif eq:
            pairs.append((flag, value))
        elif i < len(args) and not args[i].startswith("-"):
            pairs.append((flag, args[i]))
            i += 1
        else:
            pairs.append((flag, None))
    return pairs


_SIZE_SUFFIX = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kmg])i?b", re.IGNORECASE)


def _docker_size(text: str) -> str:
    """Docker also takes `8gb` and `8GiB`; devbox's own grammar says `8g`."""
    match = _SIZE_SUFFIX.fullmatch(text.strip())
    return f"{match[1]}{match[2]}" if match else text


def _gpu_option(text: str) -> tuple[str, str | int, list[str]]:
    """Docker's --gpus value as ("gpus_text", "all" | "0,1") or ("gpu_count", N), and the words
    devbox does not apply (capabilities, driver). Docker reads it as CSV: `"device=0,1"` quoted."""
    from devbox import gpus

    hint = 'use all, a count, or "device=0,1"'
    try:
        words = next(csv.reader([text.strip().strip("'")]), [])
    except csv.Error:
        raise UsageError(f"invalid --gpus {text!r}", hint) from None
    devices: list[str] = []
    count = ""
    ignored: list[str] = []
    last = ""
    for word in (w.strip() for w in words):
        name, sep, value = word.partition("=")
        # `device=0,1` unquoted: Docker's CSV splits it into two words; take what was meant.
        if not sep and last == "device":
            devices.append(word)
            continue
        if not sep and last == "capabilities":
            continue  # more capabilities: already listed as not applied
        last = name if sep else ""
        if not sep and (word == "all" or _DIGITS.fullmatch(word)) or name == "count":
            if count:
                # Docker takes the last, so `--gpus 0,1` is one GPU: never what was meant.
                raise UsageError(f"invalid --gpus {text!r}: more than one count", 'list GPUs as "device=0,1"')
            count = value if sep else word
        elif name == "device":
            devices += value.split(",")
        elif name in ("capabilities", "driver", "options"):
            ignored.append(name)
        else:
            raise UsageError(f"invalid --gpus {text!r}", hint)
    if devices:
        selection = ",".join(devices)
        gpus.parse_selection(selection)
        return "gpus_text", selection, ignored
    if count == "all":
        return "gpus_text", "all", ignored
    if not _DIGITS.fullmatch(count):
        raise UsageError(f"invalid --gpus {text!r}", hint)
    gpus.parse_count(int(count))
    return "gpu_count", int(count), ignored
