"""VS Code Remote-SSH: tell it our boxes run Linux, so it skips its "select the platform" prompt.

VS Code's settings.json is JSON with comments. We only rewrite it when it is plain JSON, because
re-serialising would drop the user's comments; otherwise the result carries the snippet to paste.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from devbox import files, paths
from devbox.errors import UsageError
from devbox.files import locked

SETTING = "remote.SSH.remotePlatform"
SETTINGS_ENV = "DEVBOX_VSCODE_SETTINGS"
_TRAILING_COMMA = re.compile(r",\s*[}\]]")


@dataclass(frozen=True)
class SettingsResult:
    """`updated`: we wrote the file. `manual_snippet`: what the user should add (or, on removal, delete)."""

    updated: bool
    manual_snippet: str | None
    path: Path


def settings_path(explicit: Path | None = None) -> Path:
    """VS Code's user settings.json: `explicit`, else $DEVBOX_VSCODE_SETTINGS, else the platform default."""
    if explicit is not None:
        return Path(explicit).expanduser().absolute()
    from_env = os.environ.get(SETTINGS_ENV)
    if from_env:
        return Path(from_env).expanduser().absolute()
    if sys.platform == "darwin":
        return paths.home() / "Library" / "Application Support" / "Code" / "User" / "settings.json"
    # VS Code on Linux follows XDG_CONFIG_HOME like everything else.
    base = os.environ.get("XDG_CONFIG_HOME") or str(paths.home() / ".config")
    return Path(base).absolute() / "Code" / "User" / "settings.json"


def _lock() -> contextlib.AbstractContextManager[None]:
    """Serialize our read-modify-write of settings.json (parallel `up`s); the lock file lives in
    devbox's own dir, not VS Code's."""
    return locked(paths.ensure_private_dir(paths.config_dir()) / "vscode-settings")


def ensure_remote_platform(alias: str, settings: Path | None = None) -> SettingsResult:
    """Make `remote.SSH.remotePlatform` map `alias` to "linux"."""
    with _lock():
        return _ensure(alias, settings_path(settings))


def _ensure(alias: str, path: Path) -> SettingsResult:
    loaded = _load(path)
    if loaded.platforms is not None and loaded.platforms.get(alias) == "linux":
        return SettingsResult(False, None, path)
    wanted = {**(loaded.platforms or {}), alias: "linux"}
    snippet = _snippet(wanted)
    if loaded.editable is None or loaded.platforms is None:
        return SettingsResult(False, snippet, path)
    return _write(path, {**loaded.editable, SETTING: wanted}, snippet)


def remove_remote_platform(alias: str, settings: Path | None = None) -> SettingsResult:
    """Drop `alias` from `remote.SSH.remotePlatform`, and the setting itself once empty.

    When the file cannot be rewritten, `manual_snippet` is the entry the user should delete.
    """
    with _lock():
        return _remove(alias, settings_path(settings))


def _remove(alias: str, path: Path) -> SettingsResult:
    loaded = _load(path)
    if loaded.platforms is not None and alias not in loaded.platforms:
        return SettingsResult(False, None, path)
    snippet = f'{json.dumps(alias)}: "linux"'
    if loaded.editable is None or loaded.platforms is None:
        return SettingsResult(False, snippet, path)
    remaining = {k: v for k, v in loaded.platforms.items() if k != alias}
    updated = {k: v for k, v in loaded.editable.items() if k != SETTING or remaining}
    if remaining:
        updated[SETTING] = remaining
    return _write(path, updated, snippet)


def code_command(alias: str, path: str) -> list[str]:
    """The `code` command line that opens `path` on the box."""
    _require_absolute(path)
    return ["code", "--remote", f"ssh-remote+{alias}", path]


def code_uri(alias: str, path: str) -> str:
    """The vscode-remote:// URI of `path` on the box (for --folder-uri or a link)."""
    _require_absolute(path)
    return f"vscode-remote://ssh-remote+{alias}{quote(path)}"


@dataclass(frozen=True)
class _Loaded:
    editable: dict[str, Any] | None  # the settings, when they are plain JSON we may rewrite
    platforms: dict[str, Any] | None  # the remotePlatform map; None when unreadable or not a map


def _load(path: Path) -> _Loaded:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _Loaded({}, {})
    except (OSError, UnicodeDecodeError):
        return _Loaded(None, None)
    if not text.strip():
        return _Loaded({}, {})
    try:
        strict = json.loads(text)
    except ValueError:
        strict = None
    if isinstance(strict, dict):
        return _Loaded(strict, _platforms(strict))
    # Comments or trailing commas: we can still read it, to avoid asking for what is already there.
    try:
        lenient = json.loads(_strip_jsonc(text))
    except ValueError:
        return _Loaded(None, None)
    return _Loaded(None, _platforms(lenient) if isinstance(lenient, dict) else None)


def _platforms(settings: dict[str, Any]) -> dict[str, Any] | None:
    value = settings.get(SETTING, {})
    return dict(value) if isinstance(value, dict) else None


def _write(path: Path, settings: dict[str, Any], snippet: str) -> SettingsResult:
    """Rewrite settings.json; on any failure, hand back `snippet` instead of raising."""
    # A symlinked settings.json (home-manager, dotfiles) stays a symlink: we replace its target.
    target = Path(os.path.realpath(path))
    try:
        if target.exists():
            mode = target.stat().st_mode & 0o7777
            # No write bit at all is the owner saying "hands off"; root would otherwise write anyway.
            if not mode & 0o222 or not os.access(target, os.W_OK):
                return SettingsResult(False, snippet, path)
        else:
            mode = 0o600
            target.parent.mkdir(parents=True, exist_ok=True)
        files.atomic_write(target, json.dumps(settings, indent=4, ensure_ascii=False) + "\n", mode)
    except OSError:
        return SettingsResult(False, snippet, path)
    return SettingsResult(True, None, path)


def _strip_jsonc(text: str) -> str:
    """`text` without `//` and `/* */` comments and trailing commas.

    Comment markers inside strings ("http://...") are text, not comments.
    """
    uncommented = _strip_comments(text)
    out: list[str] = []
    in_string = False
    i = 0
    while i < len(uncommented):
        ch = uncommented[i]
        if in_string:
            out.append(uncommented[i : i + 2] if ch == "\\" else ch)
            i += 2 if ch == "\\" else 1
            in_string = ch != '"'
            continue
        if not _TRAILING_COMMA.match(uncommented, i):
            out.append(ch)
        in_string = ch == '"'
        i += 1
    return "".join(out)


def _strip_comments(text: str) -> str:
    out: list[str] = []
    in_string = False
    i = 0
    while i < len(text):
        ch, pair = text[i], text[i : i + 2]
        if in_string:
            out.append(text[i : i + 2] if ch == "\\" else ch)
            i += 2 if ch == "\\" else 1
            in_string = ch != '"'
        elif pair == "//":
            end = text.find("\n", i)
            i = len(text) if end == -1 else end
        elif pair == "/*":
            end = text.find("*/", i + 2)
            i = len(text) if end == -1 else end + 2
            out.append(" ")
        else:
            in_string = ch == '"'
            out.append(ch)
            i += 1
    return "".join(out)


def _snippet(platforms: dict[str, Any]) -> str:
    return f"{json.dumps(SETTING)}: {json.dumps(platforms, indent=4, ensure_ascii=False)}"


def _require_absolute(path: str) -> None:
    if not path.startswith("/"):
        raise UsageError(f"remote path must be absolute, got {path!r}")
