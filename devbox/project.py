"""devbox.yaml: a project's box, described once in the repository and checked line by line.

`devbox up` with no NAME looks for devbox.yaml from the current directory upwards; flags given on
the command line override its values. Every error names the file, the line and the key, so a
teammate's typo never turns into a box with silently different settings.
"""

from __future__ import annotations

import datetime
import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from devbox import files
from devbox.errors import UsageError

FILENAMES = ("devbox.yaml", "devbox.yml")

STARTER = """\
# devbox.yaml: this project's dev box. `devbox up` (no NAME) in this folder or below reads it;
# flags on the command line override what is here. Reference: the README's "Project file".
name: "{name}"
# host: gpu1              # a host from `devbox host ls`, `local`, or `auto`
image: ubuntu:24.04
# build:                  # instead of image: a Dockerfile, built on the box's host
#   dockerfile: Dockerfile  # relative to this file (or just `build: Dockerfile`)
#   context: .              # default: the Dockerfile's folder
#   args: {{TORCH_VERSION: "2.4.1"}}
gpu_count: 1              # or: gpus: 0,1 | all | none
# mounts:                 # relative sources are relative to this file
#   - ./data:/workspace/data:ro
# env:
#   WANDB_PROJECT: {name}
# ports: [8888, 6006]     # forwarded to this machine while `ssh devbox-NAME` is connected;
#                         # "6006:16006": the box's 6006 on this machine's 16006
# shm_size: 16g
# memory: 64g
# cpus: 8
workdir: /workspace
# user: vscode            # your login's name in the box [default: yours]; UID/GID stay yours
# sudo: true
# setup:                  # run once, as you, right after the box is created
#   - pip install -r requirements.txt
# jobs:                   # `devbox run BOX train` starts the command declared here
#   train: python train.py --epochs 10
"""


class ProjectError(UsageError):
    """A devbox.yaml problem: `FILE:LINE: KEY: what is wrong`, exit 2."""


@dataclass(frozen=True)
class ProjectJob:
    name: str
    argv: tuple[str, ...]  # one string: a shell command line
    cwd: str | None = None
    env: tuple[str, ...] = ()
    gpus: str | None = None


@dataclass(frozen=True)
class Project:
    path: Path
    folder: Path | None = None  # the project's folder: the file's own unless set (devcontainer's)
    # Filled while the file is read, then only read: option name → value as `up` takes it (plus
    # "setup"), key (or "mounts.2") → 1-based line, job name → job.
    values: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, ProjectJob] = field(default_factory=dict)

    @property
    def options(self) -> dict[str, Any]:
        """What `up` takes from the file: every key but setup and jobs."""
        return {k: v for k, v in self.values.items() if k != "setup"}

    @property
    def setup(self) -> tuple[str, ...]:
        return self.values.get("setup", ())

    @property
    def box_name(self) -> str:
        """The box this file makes: its `name`, else the project folder's name (wherever in the
        project `up` runs, so a subfolder never makes a second box of one project)."""
        from devbox.spec import default_name

        return self.values.get("name") or default_name(self.folder or self.path.parent)

    def where(self, key: str) -> str:
        line = self.lines.get(key) or self.lines.get(key.split(".")[0])
        return f"{self.path}:{line}" if line else str(self.path)

    def error(self, key: str, message: str, hint: str = "") -> ProjectError:
        return ProjectError(f"{self.where(key)}: {key.split('.')[0]}: {message}", hint or None)


def find(start: Path | None = None, names: tuple[str | Path, ...] = FILENAMES) -> Path | None:
    """The nearest project file named one of `names` (earlier names first within a folder) from
    `start` (the current directory) upwards. A file there that cannot be read (a dangling link) is
    found too: reading it says what is wrong, rather than a box made as if it were not there."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        for name in names:
            candidate = folder / name
            if _is_file_or_dangling(candidate):
                return candidate
    return None


def _is_file_or_dangling(path: Path) -> bool:
    try:
        return path.is_file() or (path.is_symlink() and not path.exists())
    except OSError:  # a folder we may not enter: not ours to complain about here
        return False


# ---------------------------------------------------------------- parsing


def load(path: Path) -> Project:
    """Parse and check `path`; ProjectError names the line of the first problem."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(f"cannot read {path}: {exc}", "fix the file or its permissions") from None
    try:
        root = yaml.compose(text, Loader=_loader())
    except yaml.YAMLError as exc:
        raise ProjectError(files.yaml_problem(path, exc), "check the indentation and quoting") from None
    project = Project(path)
    if root is None:
        return project
    if not isinstance(root, yaml.MappingNode):
        raise ProjectError(
            f"{path}:{root.start_mark.line + 1}: the file must be a mapping of keys", _KEYS_HINT
        )
    for key_node, value_node in _pairs(project, root, ""):
        key = key_node.value
        project.lines[key] = key_node.start_mark.line + 1
        if key not in _READERS:
            close = difflib.get_close_matches(key, _READERS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else _KEYS_HINT
            raise project.error(key, "unknown key", hint)
        try:
            _READERS[key](project, key, value_node)
        except _Unreadable as exc:
            raise ProjectError(
                f"{path}:{exc.node.start_mark.line + 1}: {key}: {exc}", "remove the tag, or fix the value"
            ) from None
    _one_of(project, "image", "build")
    return project


# Far deeper than any devbox.yaml, and shallow enough that composing and constructing (both
# recursive in PyYAML) stay well inside Python's recursion limit.
_MAX_DEPTH = 50


def _loader() -> type:
    """SafeLoader refusing what would make reading a value recurse without end: nesting deeper than
    _MAX_DEPTH (aliases included: each one repeats its anchor's levels) and an alias inside its own
    anchor. Either is a YAML error at the line it happens."""
    import yaml

    class Loader(yaml.SafeLoader):
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.depth = 0
            self.heights: dict[int, int] = {}  # id(node) → its levels, itself included; once composed

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            target = self.anchors.get(event.anchor) if isinstance(event, yaml.AliasEvent) else None
            if target is not None and id(target) not in self.heights:
                self._refuse("an alias inside its own anchor", event.start_mark)
            height = self.heights[id(target)] if target is not None else 1
            if self.depth + height > _MAX_DEPTH:
                self._refuse(f"nested more than {_MAX_DEPTH} levels deep", event.start_mark)
            self.depth += 1
            try:
                node = super().compose_node(parent, index)
            finally:
                self.depth -= 1
            if id(node) not in self.heights:
                children = node.value if isinstance(node, yaml.CollectionNode) else []
                flat = [n for c in children for n in (c if isinstance(c, tuple) else (c,))]
                self.heights[id(node)] = 1 + max((self.heights[id(n)] for n in flat), default=0)
            return node

        def _refuse(self, problem: str, mark: Any) -> NoReturn:
            raise yaml.composer.ComposerError(None, None, problem, mark)

    return Loader


def _one_of(project: Project, *keys: str) -> None:
    """At most one of `keys`; the error is at the later one and names the other."""
    given = sorted((project.lines[k], k) for k in keys if k in project.lines)
    if len(given) > 1:
        (first_line, first), (_, later) = given[:2]
        raise project.error(
            later, f"both {first} (line {first_line}) and {later} are given", "keep one or the other"
        )


def _pairs(project: Project, node: Any, what: str) -> list[tuple[Any, Any]]:
    """A mapping's (key, value) nodes; duplicate and non-string keys are errors."""
    import yaml

    seen: dict[str, int] = {}
    for key_node, _value in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise ProjectError(
                f"{project.path}:{key_node.start_mark.line + 1}: {what or 'keys'} must be names"
            )
        line = key_node.start_mark.line + 1
        if key_node.value in seen:
            raise ProjectError(
                f"{project.path}:{line}: {what + '.' if what else ''}{key_node.value}: "
                f"duplicate key (first on line {seen[key_node.value]})",
                "keep one of them",
            )
        seen[key_node.value] = line
    return list(node.value)


class _Unreadable(Exception):
    """A value YAML cannot construct (`!!int abc`, an unknown tag); load names its line and key."""

    def __init__(self, node: Any) -> None:
        import yaml

        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        if isinstance(node, yaml.ScalarNode):
            text = node.value if len(node.value) <= 40 else node.value[:40] + "..."
            super().__init__(f"cannot read {text!r} as {tag}")
        else:
            super().__init__(f"cannot read this {_kind(node).removeprefix('a ')} as {tag}")
        self.node = node


def _plain(node: Any) -> Any:
    import yaml

    try:
        return _construct(node)
    # PyYAML's constructors raise what their own parsing raises: int() and float()'s ValueError,
    # and an AttributeError from `!!timestamp x`, where its pattern does not match.
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError):
        raise _Unreadable(_culprit(node)) from None


def _construct(node: Any) -> Any:
    import yaml

    return yaml.SafeLoader("").construct_object(node, deep=True)


def _culprit(node: Any) -> Any:
    """The first scalar in `node` that cannot be constructed alone, for its line; else `node`."""
    import yaml

    if isinstance(node, yaml.ScalarNode):
        return node
    children = node.value if isinstance(node, yaml.SequenceNode) else [n for kv in node.value for n in kv]
    for child in children:
        try:
            _construct(child)
        except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError):
            return _culprit(child)
    return node


def _scalar(project: Project, key: str, node: Any, kinds: tuple[type, ...], what: str) -> Any:
    import yaml

    value = _plain(node) if isinstance(node, yaml.ScalarNode) else node
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        sub = key.partition(".")[2]
        named = f"{sub} " if sub and not sub.isdigit() else ""  # build.args.A names args.A; mounts.2 no index
        raise project.error(key, f"{named}must be {what}, not {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    import yaml

    if isinstance(value, yaml.MappingNode):
        return "a mapping"
    if isinstance(value, yaml.SequenceNode):
        return "a list"
    return {bool: "true/false", int: "a number", float: "a number", str: "text", type(None): "empty"}.get(
        type(value), f"{type(value).__name__}"
    )


def _check(project: Project, key: str, check: Callable[[], Any]) -> Any:
    """Run one of spec's own checks; its message gets the file, line and key."""
    try:
        return check()
    except ProjectError:
        raise  # already names the file and line: a value of the wrong kind read inside the check
    except UsageError as exc:
        raise project.error(key, exc.message, exc.hint or "") from None


def _text(kind: str) -> Callable[[Project, str, Any], None]:
    def read(project: Project, key: str, node: Any) -> None:
        project.values[kind] = _scalar(project, key, node, (str,), "text")

    return read


def _read_name(project: Project, key: str, node: Any) -> None:
    import yaml

    from devbox.spec import validate_name

    # As written: `name: 2024` or `name: yes` is a box named so, not a number or a boolean.
    if isinstance(node, yaml.ScalarNode) and isinstance(_plain(node), (int, float, datetime.date)):
        text = node.value
    else:
        text = _scalar(project, key, node, (str,), "text")
    project.values["name"] = _check(project, key, lambda: validate_name(text))


def _read_image(project: Project, key: str, node: Any) -> None:
    from devbox.spec import validate_image

    project.values["image"] = _check(
        project, key, lambda: validate_image(_scalar(project, key, node, (str,), "text"))
    )


def _read_gpus(project: Project, key: str, node: Any) -> None:
    import yaml

    from devbox import gpus

    if isinstance(node, yaml.SequenceNode):
        items = [_scalar(project, key, n, (int,), "a list of GPU indices") for n in node.value]
        text = ",".join(str(i) for i in items)
    else:
        text = str(_scalar(project, key, node, (str, int), "GPUs such as 0,1 | all | none"))
    _check(project, key, lambda: gpus.parse_selection(text))
    project.values["gpus_text"] = text


def _read_gpu_count(project: Project, key: str, node: Any) -> None:
    from devbox import gpus

    count = _scalar(project, key, node, (int,), "a whole number")
    _check(project, key, lambda: gpus.parse_count(count))
    project.values["gpu_count"] = count


def _read_bool(kind: str) -> Callable[[Project, str, Any], None]:
    def read(project: Project, key: str, node: Any) -> None:
        project.values[kind] = _scalar(project, key, node, (bool,), "true or false")

    return read


def _read_size(kind: str) -> Callable[[Project, str, Any], None]:
    def read(project: Project, key: str, node: Any) -> None:
        from devbox.spec import parse_size

        value = str(_scalar(project, key, node, (str, int), "a size such as 16g"))
        project.values[kind] = _check(project, key, lambda: parse_size(value, f"--{kind.replace('_', '-')}"))

    return read


def _read_cpus(project: Project, key: str, node: Any) -> None:
    from devbox.spec import parse_cpus

    value = _scalar(project, key, node, (int, float), "a number of CPUs")
    try:
        cpus = float(value)
    except OverflowError:  # an int with hundreds of digits
        raise project.error(key, "is far more CPUs than any machine has", "e.g. cpus: 8") from None
    project.values["cpus"] = _check(project, key, lambda: parse_cpus(cpus))


def _read_workdir(project: Project, key: str, node: Any) -> None:
    value = _scalar(project, key, node, (str,), "an absolute path")
    if not value.startswith("/"):
        raise project.error(key, f"{value!r} is not an absolute path", "e.g. /workspace")
    project.values["workdir"] = value


def _read_user(project: Project, key: str, node: Any) -> None:
    from devbox.spec import parse_user

    value = _scalar(project, key, node, (str,), "a login name")
    project.values["user"] = _check(project, key, lambda: parse_user(value))


def _list_of_text(project: Project, key: str, node: Any, what: str) -> list[tuple[str, int]]:
    import yaml

    if isinstance(node, yaml.ScalarNode) and isinstance(_plain(node), str):
        return [(_plain(node), node.start_mark.line + 1)]
    if not isinstance(node, yaml.SequenceNode):
        found = _kind(_plain(node) if isinstance(node, yaml.ScalarNode) else node)
        raise project.error(key, f"must be a list of {what}, not {found}")
    items = []
    for item in node.value:
        line = item.start_mark.line + 1
        if not isinstance(item, yaml.ScalarNode) or not isinstance(_plain(item), str):
            raise ProjectError(f"{project.path}:{line}: {key}: each entry must be {what}")
        items.append((_plain(item), line))
    return items


def _read_mounts(project: Project, key: str, node: Any) -> None:
    from devbox.spec import HostFacts, parse_mount

    mounts = []
    for i, (text, line) in enumerate(_list_of_text(project, key, node, "SRC:DST[:ro|rw] text")):
        project.lines[f"mounts.{i}"] = line
        source, sep, rest = text.partition(":")
        if sep and source and not source.startswith(("/", "~")):
            # Relative to the file, so the project's own data dir works from any checkout.
            text = f"{os.path.normpath(project.path.parent / source)}:{rest}"
        _check(project, f"mounts.{i}", lambda t=text: parse_mount(t, HostFacts.unchecked()))
        mounts.append(text)
    project.values["mounts"] = tuple(mounts)


def _as_text(node: Any, value: Any) -> str:
    """A scalar as the text the user means: as written (CUDA: 12.10 is not 12.1), or true/false."""
    return str(value).lower() if isinstance(value, bool) else node.value


def _read_env(project: Project, key: str, node: Any) -> None:
    import yaml

    from devbox.spec import parse_env

    if isinstance(node, yaml.MappingNode):
        entries = _env_pairs(project, key, node)
    else:
        entries = _list_of_text(project, key, node, "NAME=VALUE text")
    for i, (entry, line) in enumerate(entries):
        project.lines[f"env.{i}"] = line
        _check(project, f"env.{i}", lambda e=entry: parse_env(e))
    project.values["envs"] = tuple(e for e, _ in entries)


def _env_pairs(project: Project, key: str, node: Any) -> list[tuple[str, int]]:
    """A mapping of names to scalar values, as NAME=VALUE with each value as written, and lines.
    A list or mapping value is refused before it is built (an alias bomb builds to gigabytes)."""
    import yaml

    entries = []
    for k, v in _pairs(project, node, key):
        value = _plain(v) if isinstance(v, yaml.ScalarNode) else None
        if value is None or isinstance(value, bytes):
            raise ProjectError(
                f"{project.path}:{k.start_mark.line + 1}: {key}.{k.value}: must be text or a number",
                'quote a value YAML reads otherwise, e.g. FLAG: "yes"',
            )
        entries.append((f"{k.value}={_as_text(v, value)}", k.start_mark.line + 1))
    return entries


def _read_ports(project: Project, key: str, node: Any) -> None:
    import yaml

    from devbox.spec import parse_ports

    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    texts = []
    for i, item in enumerate(items):
        project.lines[f"{key}.{i}"] = item.start_mark.line + 1
        texts.append(_port_text(project, f"{key}.{i}", item))
    project.values["ports"] = _check(project, key, lambda: parse_ports(texts))


def _port_text(project: Project, key: str, node: Any) -> str:
    """One entry as written, checked on its own line."""
    import yaml

    # The text as written, not as YAML 1.1 reads it: unquoted 8888:59 would be a base-60 number.
    from devbox.spec import PORTS_HINT, parse_port

    numeric = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:str")
    if not isinstance(node, yaml.ScalarNode) or node.tag not in numeric:
        found = _kind(_plain(node) if isinstance(node, yaml.ScalarNode) else node)
        raise project.error(key, f"each entry must be a port or PORT:LOCAL, not {found}", PORTS_HINT)
    _check(project, key, lambda: parse_port(node.value))
    return node.value


_BUILD_KEYS = ("dockerfile", "context", "args")
_BUILD_HINT = "e.g. build: ./Dockerfile, or build: {dockerfile: docker/Dockerfile, context: ., args: {A: b}}"


def _read_build(project: Project, key: str, node: Any) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        fields = {}
        for name_node, value_node in _pairs(project, node, key):
            name = name_node.value
            project.lines[f"{key}.{name}"] = name_node.start_mark.line + 1
            if name not in _BUILD_KEYS:
                close = difflib.get_close_matches(name, _BUILD_KEYS, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "build takes dockerfile, context and args"
                raise project.error(f"{key}.{name}", f"unknown key {name!r}", hint)
            fields[name] = value_node
    else:
        fields = {"dockerfile": node}
    if "dockerfile" not in fields and "context" not in fields:
        raise project.error(key, "needs a dockerfile (or a context holding one)", _BUILD_HINT)
    base = project.path.parent
    context = _build_path(project, f"{key}.context", fields.get("context"), base)
    dockerfile = _build_path(project, f"{key}.dockerfile", fields.get("dockerfile"), base)
    if context is not None and not os.path.isdir(context):
        raise project.error(f"{key}.context", f"build context {context!r} is not a folder", _RELATIVE_HINT)
    if dockerfile is None:
        dockerfile = os.path.join(str(context), "Dockerfile")  # as docker build does
    if not os.path.isfile(dockerfile):
        where = f"{key}.dockerfile" if "dockerfile" in fields else f"{key}.context"
        problem = "is not a file" if os.path.exists(dockerfile) else "does not exist"
        raise project.error(where, f"Dockerfile {dockerfile!r} {problem}", _RELATIVE_HINT)
    args = _build_args(project, f"{key}.args", fields["args"]) if "args" in fields else ()
    # The shape devcontainer.json's build takes, so `up` builds both the same way.
    project.values["build"] = {
        "dockerfile": dockerfile,
        "context": context or os.path.dirname(dockerfile),
        "args": args,
    }


_RELATIVE_HINT = "relative paths in build are relative to the folder devbox.yaml is in"


def _build_path(project: Project, key: str, node: Any, base: Path) -> str | None:
    if node is None:
        return None
    text = _scalar(project, key, node, (str,), "a path")
    if not text:
        raise project.error(key, f"{key.partition('.')[2]} is empty", _BUILD_HINT)
    # Read on this machine, which sends the context to the host's engine: ~ is this machine's home.
    return os.path.normpath(base / os.path.expanduser(text))


def _build_args(project: Project, key: str, node: Any) -> tuple[str, ...]:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise project.error(key, "args must map names to values", "e.g. args: {TORCH_VERSION: 2.4.1}")
    args = []
    for name_node, value_node in _pairs(project, node, key):
        name = name_node.value
        project.lines[f"{key}.{name}"] = name_node.start_mark.line + 1
        if not name or "=" in name or any(c.isspace() for c in name):
            raise project.error(
                f"{key}.{name}", f"{name!r} is not a build argument name", "e.g. TORCH_VERSION"
            )
        value = _scalar(project, f"{key}.{name}", value_node, (str, int, float, bool), "text or a number")
        args.append(f"{name}={_as_text(value_node, value)}")
    return tuple(args)


def _read_setup(project: Project, key: str, node: Any) -> None:
    import yaml

    # A command as written: `- false` or `- true` is that shell command, not a boolean.
    if isinstance(node, yaml.ScalarNode) and _plain(node) is not None:
        items = [node]
    elif isinstance(node, yaml.SequenceNode):
        items = node.value
    else:
        found = _kind(_plain(node) if isinstance(node, yaml.ScalarNode) else node)
        raise project.error(key, f"must be a list of shell commands, not {found}", "e.g. - pip install -e .")
    for item in items:
        if not isinstance(item, yaml.ScalarNode) or _plain(item) is None:
            raise ProjectError(
                f"{project.path}:{item.start_mark.line + 1}: {key}: each entry must be a shell command",
                "e.g. - pip install -r requirements.txt",
            )
    project.values["setup"] = tuple(item.value for item in items)


def _read_jobs(project: Project, key: str, node: Any) -> None:
    import yaml

    from devbox.jobs import NAME_RE

    if not isinstance(node, yaml.MappingNode):
        raise project.error(key, "must map job names to commands", "e.g. train: python train.py")
    for name_node, spec_node in _pairs(project, node, key):
        name = name_node.value
        where = f"{project.path}:{name_node.start_mark.line + 1}: {key}.{name}"
        if not NAME_RE.fullmatch(name):
            raise ProjectError(f"{where}: invalid job name", "use letters, digits, '-' and '_'")
        project.jobs[name] = _job(project, where, f"{key}.{name}", node=spec_node)


def _job(project: Project, where: str, qualified: str, node: Any) -> ProjectJob:
    """One entry of `jobs:`: a command (shell line or argv list), or a mapping with command, cwd,
    env and gpus; each checked as `devbox run` checks its flags, the error naming this entry."""
    import yaml

    from devbox import gpus
    from devbox.spec import parse_env

    name = qualified.split(".", 1)[1]
    if not isinstance(node, yaml.MappingNode):
        return ProjectJob(name, _argv(where, node))
    fields = {k.value: v for k, v in _pairs(project, node, qualified)}
    unknown = sorted(set(fields) - {"command", "cwd", "env", "gpus"})
    if unknown:
        raise ProjectError(f"{where}: unknown key {unknown[0]!r}", "a job takes command, cwd, env and gpus")
    if "command" not in fields:
        raise ProjectError(f"{where}: no command", "add command: python train.py")

    def checked(check: Callable[[], Any]) -> Any:
        try:
            return check()
        except UsageError as exc:
            raise ProjectError(f"{where}: {exc.message}", exc.hint) from None

    env: tuple[str, ...] = ()
    if "env" in fields:
        if not isinstance(fields["env"], yaml.MappingNode):
            raise ProjectError(f"{where}: env must map names to values", "e.g. env: {SEED: 1}")
        env = tuple(e for e, _ in _env_pairs(project, f"{qualified}.env", fields["env"]))
        for entry in env:
            checked(lambda e=entry: parse_env(e))
    cwd = _job_text(where, "cwd", fields.get("cwd"))
    if cwd is not None and not cwd.startswith("/"):
        raise ProjectError(f"{where}: cwd {cwd!r} is not an absolute path", "e.g. cwd: /workspace")
    gpu_text = None
    if isinstance(fields.get("gpus"), yaml.SequenceNode):  # gpus: [0, 1], as at the top level
        gpu_text = ",".join(_job_text(where, "gpus", n) or "" for n in fields["gpus"].value)
    elif "gpus" in fields:
        gpu_text = _job_text(where, "gpus", fields["gpus"])
    if gpu_text is not None:
        checked(lambda: gpus.parse_selection(gpu_text))
    return ProjectJob(name, _argv(where, fields["command"]), cwd, env, gpu_text)


def _job_text(where: str, key: str, node: Any) -> str | None:
    """A job field's scalar as written; a list or mapping is refused before it is built."""
    import yaml

    if node is None:
        return None
    if not isinstance(node, yaml.ScalarNode) or _plain(node) is None:
        found = _kind(_plain(node) if isinstance(node, yaml.ScalarNode) else node)
        raise ProjectError(f"{where}: {key} must be text or a number, not {found}")
    return node.value


def _argv(where: str, node: Any) -> tuple[str, ...]:
    import yaml

    if isinstance(node, yaml.ScalarNode) and isinstance(_plain(node), str) and _plain(node).strip():
        return (_plain(node),)
    if (
        isinstance(node, yaml.SequenceNode)
        and node.value
        and all(isinstance(i, yaml.ScalarNode) for i in node.value)
    ):
        return tuple(i.value for i in node.value)  # as written: 0.10 stays 0.10
    raise ProjectError(f"{where}: the command must be a shell line or a list of arguments")


_READERS: dict[str, Callable[[Project, str, Any], None]] = {
    "name": _read_name,
    "host": _text("host"),
    "image": _read_image,
    "build": _read_build,
    "gpus": _read_gpus,
    "gpu_count": _read_gpu_count,
    "share_gpus": _read_bool("share_gpus"),
    "mounts": _read_mounts,
    "env": _read_env,
    "ports": _read_ports,
    "memory": _read_size("memory"),
    "shm_size": _read_size("shm_size"),
    "cpus": _read_cpus,
    "workdir": _read_workdir,
    "user": _read_user,
    "sudo": _read_bool("sudo"),
    "setup": _read_setup,
    "jobs": _read_jobs,
}
_KEYS_HINT = "keys: " + ", ".join(_READERS)


def check_sources(project: Project, facts: Any) -> None:
    """Mount sources exist and are yours on the box's host; the error names the file's line."""
    from devbox.spec import parse_mount

    for i, text in enumerate(project.values.get("mounts", ())):
        _check(project, f"mounts.{i}", lambda t=text: parse_mount(t, facts))


def write_starter(folder: Path) -> Path:
    """`devbox init`: a commented devbox.yaml named after the folder; never overwrites one."""
    from devbox.spec import default_name

    path = folder / FILENAMES[0]
    try:
        with path.open("x", encoding="utf-8") as f:
            f.write(STARTER.format(name=default_name(folder)))
    except FileExistsError:
        raise UsageError(f"{path} already exists", "edit it, or remove it first") from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}", "run it in a folder you can write") from None
    return path
