"""VS Code Remote-SSH settings: edited only when plain JSON, otherwise a snippet to paste."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from devbox import vscode
from devbox.errors import UsageError
from devbox.vscode import SettingsResult

SETTING = "remote.SSH.remotePlatform"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("DEVBOX_VSCODE_SETTINGS", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    return home


@pytest.fixture
def settings(home: Path) -> Path:
    path = home / ".config" / "Code" / "User" / "settings.json"
    path.parent.mkdir(parents=True)
    return path


def test_missing_settings_file_is_created_with_only_our_key(home: Path) -> None:
    result = vscode.ensure_remote_platform("devbox-x")

    path = home / ".config" / "Code" / "User" / "settings.json"
    assert result == SettingsResult(updated=True, manual_snippet=None, path=path)
    assert json.loads(path.read_text()) == {SETTING: {"devbox-x": "linux"}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_plain_json_is_rewritten_keeping_other_keys_and_their_order(settings: Path) -> None:
    original = {
        "editor.fontSize": 14,
        SETTING: {"devbox-old": "linux", "win": "windows"},
        "files.exclude": {"**/.git": True},
        "workbench.colorTheme": "Solarized \u263c",
    }
    settings.write_text(json.dumps(original))
    settings.chmod(0o644)

    result = vscode.ensure_remote_platform("devbox-x")

    assert result.updated and result.manual_snippet is None
    expected = {**original, SETTING: {"devbox-old": "linux", "win": "windows", "devbox-x": "linux"}}
    assert settings.read_text() == json.dumps(expected, indent=4, ensure_ascii=False) + "\n"
    assert list(json.loads(settings.read_text())) == list(original)
    assert stat.S_IMODE(settings.stat().st_mode) == 0o644


def test_alias_already_mapped_to_linux_leaves_the_file_untouched(settings: Path) -> None:
    settings.write_text('{"remote.SSH.remotePlatform": {"devbox-x": "linux"}}')

    result = vscode.ensure_remote_platform("devbox-x")

    assert result == SettingsResult(updated=False, manual_snippet=None, path=settings)
    assert settings.read_text() == '{"remote.SSH.remotePlatform": {"devbox-x": "linux"}}'


def test_empty_settings_file_is_treated_as_empty_object(settings: Path) -> None:
    settings.write_text("\n")

    assert vscode.ensure_remote_platform("devbox-x").updated
    assert json.loads(settings.read_text()) == {SETTING: {"devbox-x": "linux"}}


def test_comment_markers_inside_strings_do_not_make_plain_json_look_commented(settings: Path) -> None:
    original = {"http.proxy": "http://proxy:3128", "glob": "/* not a comment */", "q": 'say "//"'}
    settings.write_text(json.dumps(original, indent=2))

    result = vscode.ensure_remote_platform("devbox-x")

    assert result.updated
    assert json.loads(settings.read_text()) == {**original, SETTING: {"devbox-x": "linux"}}


JSONC_FILES = [
    '{\n    // my font\n    "editor.fontSize": 14\n}\n',
    '{\n    /* block */ "editor.fontSize": 14\n}\n',
    '{\n    "editor.fontSize": 14,\n}\n',
    '{\n    "a": [1, 2,],\n    "editor.fontSize": 14\n}\n',
]


@pytest.mark.parametrize("original", JSONC_FILES)
def test_settings_with_comments_or_trailing_commas_are_left_alone_with_a_snippet(
    settings: Path, original: str
) -> None:
    settings.write_text(original)

    result = vscode.ensure_remote_platform("devbox-x")

    snippet = '"remote.SSH.remotePlatform": {\n    "devbox-x": "linux"\n}'
    assert result == SettingsResult(updated=False, manual_snippet=snippet, path=settings)
    assert settings.read_text() == original


def test_snippet_for_commented_settings_carries_the_existing_platforms(settings: Path) -> None:
    settings.write_text(
        "{\n"
        '    "http.proxy": "http://proxy:3128", // corporate\n'
        '    "remote.SSH.remotePlatform": {"devbox-a": "linux", "win": "windows",},\n'
        "}\n"
    )

    result = vscode.ensure_remote_platform("devbox-x")

    assert result.manual_snippet == (
        '"remote.SSH.remotePlatform": {\n'
        '    "devbox-a": "linux",\n'
        '    "win": "windows",\n'
        '    "devbox-x": "linux"\n'
        "}"
    )


def test_commented_settings_that_already_have_the_alias_need_nothing(settings: Path) -> None:
    original = '{\n  // mine\n  "remote.SSH.remotePlatform": {"devbox-x": "linux"}\n}\n'
    settings.write_text(original)

    result = vscode.ensure_remote_platform("devbox-x")

    assert result == SettingsResult(updated=False, manual_snippet=None, path=settings)
    assert settings.read_text() == original


@pytest.mark.parametrize("original", ['{"a": ', "[1, 2]", '{"remote.SSH.remotePlatform": "linux"}'])
def test_unusable_settings_are_left_alone_with_a_snippet(settings: Path, original: str) -> None:
    settings.write_text(original)

    result = vscode.ensure_remote_platform("devbox-x")

    assert not result.updated
    assert result.manual_snippet == '"remote.SSH.remotePlatform": {\n    "devbox-x": "linux"\n}'
    assert settings.read_text() == original


def test_read_only_settings_file_is_left_alone_with_a_snippet(settings: Path) -> None:
    settings.write_text("{}")
    settings.chmod(0o444)

    result = vscode.ensure_remote_platform("devbox-x")

    assert not result.updated and result.manual_snippet is not None
    assert settings.read_text() == "{}"


def test_symlinked_settings_are_updated_through_the_link(settings: Path, tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "settings.json"
    real.parent.mkdir()
    real.write_text('{"a": 1}')
    settings.symlink_to(real)

    assert vscode.ensure_remote_platform("devbox-x").updated

    assert settings.is_symlink()
    assert json.loads(real.read_text()) == {"a": 1, SETTING: {"devbox-x": "linux"}}


def test_remove_drops_only_that_alias(settings: Path) -> None:
    settings.write_text(json.dumps({"a": 1, SETTING: {"devbox-x": "linux", "win": "windows"}, "z": 2}))

    result = vscode.remove_remote_platform("devbox-x")

    assert result == SettingsResult(updated=True, manual_snippet=None, path=settings)
    assert json.loads(settings.read_text()) == {"a": 1, SETTING: {"win": "windows"}, "z": 2}


def test_remove_of_the_last_alias_drops_the_setting(settings: Path) -> None:
    settings.write_text(json.dumps({"a": 1, SETTING: {"devbox-x": "linux"}}))

    vscode.remove_remote_platform("devbox-x")

    assert json.loads(settings.read_text()) == {"a": 1}


def test_remove_of_an_absent_alias_or_file_changes_nothing(settings: Path) -> None:
    assert vscode.remove_remote_platform("devbox-x") == SettingsResult(False, None, settings)
    assert not settings.exists()
    settings.write_text('{"a": 1}')
    assert vscode.remove_remote_platform("devbox-x") == SettingsResult(False, None, settings)
    assert settings.read_text() == '{"a": 1}'


def test_remove_from_commented_settings_returns_the_entry_to_delete(settings: Path) -> None:
    original = '{\n  // mine\n  "remote.SSH.remotePlatform": {"devbox-x": "linux"}\n}\n'
    settings.write_text(original)

    result = vscode.remove_remote_platform("devbox-x")

    assert result == SettingsResult(updated=False, manual_snippet='"devbox-x": "linux"', path=settings)
    assert settings.read_text() == original


def test_settings_path_prefers_explicit_then_env_then_platform_default(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert vscode.settings_path() == home / ".config" / "Code" / "User" / "settings.json"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert vscode.settings_path() == tmp_path / "xdg" / "Code" / "User" / "settings.json"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert vscode.settings_path() == (
        home / "Library" / "Application Support" / "Code" / "User" / "settings.json"
    )
    monkeypatch.setenv("DEVBOX_VSCODE_SETTINGS", str(tmp_path / "env.json"))
    assert vscode.settings_path() == tmp_path / "env.json"
    assert vscode.settings_path(tmp_path / "explicit.json") == tmp_path / "explicit.json"


def test_explicit_settings_path_is_the_one_written(tmp_path: Path) -> None:
    target = tmp_path / "insiders" / "settings.json"

    result = vscode.ensure_remote_platform("devbox-x", target)

    assert result.path == target
    assert json.loads(target.read_text()) == {SETTING: {"devbox-x": "linux"}}


def test_code_command_opens_the_folder_on_the_box() -> None:
    assert vscode.code_command("devbox-x", "/workspace") == [
        "code",
        "--remote",
        "ssh-remote+devbox-x",
        "/workspace",
    ]


def test_code_uri_names_the_box_and_escapes_the_path() -> None:
    assert vscode.code_uri("devbox-x", "/workspace") == "vscode-remote://ssh-remote+devbox-x/workspace"
    assert vscode.code_uri("devbox-x", "/my work") == "vscode-remote://ssh-remote+devbox-x/my%20work"


@pytest.mark.parametrize("build", [vscode.code_command, vscode.code_uri])
def test_relative_remote_path_is_refused(build: object) -> None:
    with pytest.raises(UsageError):
        build("devbox-x", "workspace")  # type: ignore[operator]
