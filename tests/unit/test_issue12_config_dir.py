"""An unusable config dir is blamed on the dir (and $XDG_CONFIG_HOME), not on a hosts.yaml that
may not exist (issue 12)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from devbox import hosts, paths
from devbox.errors import DevboxError
from devbox.hosts import Host


def test_an_xdg_config_home_that_is_a_file_is_named_with_the_variable(
    clean_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    xdg = clean_home / "not-a-dir"
    xdg.write_text("oops\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    for action in (hosts.load, lambda: hosts.update(lambda c: c.with_host(Host("gpu1", "gpu1")))):
        with pytest.raises(DevboxError) as exc:
            action()
        assert exc.value.message.endswith(f"{xdg}/devbox/hosts.yaml: {xdg} is not a directory")
        hint = exc.value.hint or ""
        assert f"XDG_CONFIG_HOME is {xdg}" in hint and "directory" in hint
        assert "delete the file" not in hint  # nothing sends the user after hosts.yaml
    assert xdg.read_text() == "oops\n"


def test_a_config_dir_that_is_a_file_is_named_without_xdg(clean_home: Path) -> None:
    (clean_home / ".config").write_text("")
    with pytest.raises(DevboxError) as exc:
        hosts.load()
    assert exc.value.message.endswith(f"{clean_home / '.config'} is not a directory")
    assert exc.value.hint == f"devbox keeps its files in {paths.config_dir()}: make that a directory of yours"


def test_a_config_dir_the_user_cannot_enter_is_blamed_not_the_file(
    clean_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests may run as root, whom permissions do not stop: the refusal is simulated.
    def denied(self: Path, *_a, **_kw) -> str:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)
    monkeypatch.setattr(hosts.os, "access", lambda path, mode: Path(path) != paths.config_dir())
    with pytest.raises(DevboxError) as exc:
        hosts.load()
    assert exc.value.message.endswith(f"hosts.yaml: Permission denied on {paths.config_dir()}")
    assert "make that a directory of yours" in (exc.value.hint or "")


def test_a_problem_with_the_file_itself_still_points_at_the_file(clean_home: Path) -> None:
    (paths.config_dir() / "hosts.yaml").mkdir(parents=True)
    with pytest.raises(DevboxError) as exc:
        hosts.load()
    assert exc.value.message.endswith("hosts.yaml: Is a directory")
    assert exc.value.hint == "fix or delete the file"
