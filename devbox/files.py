"""The files devbox owns: written atomically, under a lock, with explicit modes; read back safely."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def atomic_write(path: Path, data: str | bytes, mode: int = 0o600, group: int | None = None) -> None:
    """Replace `path` with `data` so readers see the old file or the new one, never half of one.

    The temp file lives in the same directory so os.replace is a rename on one filesystem.
    `group`: the file's group (a new file gets the writer's); PermissionError where the writer may
    not give it that group, and then `path` is left as it was.
    """
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        if group is not None:
            os.chown(tmp, -1, group)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`.lock for the duration (serializes concurrent devbox runs)."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def load_yaml(text: str) -> Any:
    """YAML that devbox wrote (a record, hosts.yaml), hand-edited or not, as plain data.

    Aliases are refused: devbox never writes one, and a few hundred bytes of aliases to aliases
    print (or compare) as gigabytes. A yaml.YAMLError says where, as for any other YAML problem.
    """
    import yaml

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed here", mark)
            return super().compose_node(parent, index)

    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader


def yaml_problem(path: Path, exc: Exception) -> str:
    """A YAMLError as one line: `PATH:LINE: not valid YAML: PROBLEM`."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark else str(path)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())[:300]
    return f"{where}: not valid YAML: {problem}"
