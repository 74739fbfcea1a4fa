"""The box's root entrypoint, its functions run in a temporary directory without Docker: it never
writes through a --mount, even where the image's symlinks lead into one, and the env file it
writes gives every session each value exactly."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

SHELLS = [sh for sh in ("sh", "dash", "bash") if shutil.which(sh)]
ENTRYPOINT = (resources.files("devbox.images") / "entrypoint.sh").read_text()


def functions(*names: str) -> str:
    """The entrypoint's definitions of `names`, as they stand in the script."""
    found = []
    for name in names:
        match = re.search(rf"^{name}\(\) \{{\n.*?^\}}\n", ENTRYPOINT, re.MULTILINE | re.DOTALL)
        assert match, f"the entrypoint defines {name}()"
        found.append(match.group(0))
    return "\n".join(found)


# --- refuse_mounted: the real path of what the entrypoint writes ---------------------------------


class Box:
    """A fake root file system under tmp_path and a mountinfo listing the mounts in it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self.mounts: list[Path] = []

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def mount(self, inside: str) -> Path:
        where = self.path(inside)
        where.mkdir(parents=True, exist_ok=True)
        self.mounts.append(where)
        return where

    def link(self, inside: str, target: str) -> None:
        """A symlink at `inside` to `target`: absolute targets are inside the fake root too."""
        where = self.path(inside)
        where.parent.mkdir(parents=True, exist_ok=True)
        where.symlink_to(self.path(target) if target.startswith("/") else target)

    def refuse_mounted(self, shell: str, *args: str) -> subprocess.CompletedProcess[str]:
        info = self.root.parent / "mountinfo"
        lines = ["22 1 0:21 / / rw,relatime - overlay overlay rw"]
        for i, mp in enumerate(self.mounts):
            escaped = str(mp).replace("\\", "\\134").replace(" ", "\\040")
            lines.append(f"{100 + i} 22 8:1 /src{i} {escaped} rw,relatime - ext4 /dev/sda1 rw")
        info.write_text("\n".join(lines) + "\n")
        script = "set -eu\nmountinfo=$1\nshift\n"
        script += functions("read_mounts", "real_path", "mount_of", "unescaped", "refuse_mounted")
        script += '\nread_mounts\nrefuse_mounted "$@"\n'
        paths = [str(self.path(a)) for a in args]
        return subprocess.run(
            [shell, "-c", script, "entrypoint", str(info), *paths], capture_output=True, text=True, timeout=10
        )


@pytest.fixture
def box(tmp_path: Path) -> Box:
    root = tmp_path / "root"
    root.mkdir()
    return Box(root)


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("link", "target"),
    [
        ("/etc/profile.d", "/home/alice/data"),  # an absolute link to the mounted directory
        ("/etc/profile.d", "../home/alice/data"),  # a relative one
        ("/etc/profile.d", "/home/alice/data/sub/deeper"),  # into it, where nothing exists yet
        ("/etc", "/home/alice/data/etc"),  # a parent of the file written
        ("/etc/profile.d/zz-devbox-env.sh", "/home/alice/data/env.sh"),  # the file itself, dangling
        ("/etc/profile.d/zz-devbox-env.sh", "/x"),  # through a chain of links
    ],
)
def test_a_symlink_in_the_image_into_a_mount_is_refused_naming_the_mount(
    box: Box, shell: str, link: str, target: str
) -> None:
    data = box.mount("/home/alice/data")
    (data / "etc").mkdir()
    box.link("/x", "/y")
    box.link("/y", "/home/alice/data/chained")
    box.link(link, target)
    done = box.refuse_mounted(shell, "/etc/profile.d/zz-devbox-env.sh")
    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        f"devbox: cannot write {box.path('/etc/profile.d/zz-devbox-env.sh')}: "
        f"{data} is mounted from the host; remove that --mount\n"
    )


@pytest.mark.parametrize("shell", SHELLS)
def test_an_existing_file_linked_into_a_mount_is_refused(box: Box, shell: str) -> None:
    data = box.mount("/srv/mine")
    (data / "passwd").write_text("mine\n")
    box.link("/etc/passwd", "/srv/mine/passwd")
    done = box.refuse_mounted(shell, "/etc/passwd")
    assert done.returncode == 1 and str(data) in done.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_a_mount_with_a_space_in_its_path_is_found_through_a_link(box: Box, shell: str) -> None:
    data = box.mount("/srv/my data")
    box.link("/etc/sudoers.d", "/srv/my data")
    done = box.refuse_mounted(shell, "/etc/sudoers.d/devbox")
    assert done.returncode == 1 and f"{data} is mounted" in done.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_paths_and_links_that_stay_out_of_every_mount_are_written(box: Box, shell: str) -> None:
    box.mount("/home/alice/data")
    box.mount("/etc/profile.d-other")
    box.link("/etc/profile.d", "/usr/share/profile.d")  # a link, but not into a mount
    box.path("/etc/group").write_text("root:x:0:\n")
    for path in ("/etc/profile.d/zz-devbox-env.sh", "/etc/group", "/etc/new/deep/file", "/home/alice"):
        done = box.refuse_mounted(shell, path)
        assert done.returncode == 0, (path, done.stderr)


@pytest.mark.parametrize("shell", SHELLS)
def test_a_mount_at_the_path_itself_or_a_parent_is_still_refused(box: Box, shell: str) -> None:
    box.mount("/etc/group")
    box.mount("/run/devbox")
    assert box.refuse_mounted(shell, "/etc/group").returncode == 1
    assert box.refuse_mounted(shell, "/run/devbox/env.sh").returncode == 1


@pytest.mark.parametrize("shell", SHELLS)
def test_the_allowed_mount_is_matched_where_it_really_is(box: Box, shell: str) -> None:
    # An image whose /home links to /var/home: Docker mounts the home volume at the real path.
    box.link("/home", "/var/home")
    box.mount("/var/home/alice")
    box.mount("/var/home/alice/data")
    assert box.refuse_mounted(shell, "/home/alice", "/home/alice").returncode == 0
    assert box.refuse_mounted(shell, "/home/alice/.devbox-home", "/home/alice").returncode == 0
    assert box.refuse_mounted(shell, "/home/alice/data/x", "/home/alice").returncode == 1


@pytest.mark.parametrize("shell", SHELLS)
def test_a_symlink_loop_is_refused_rather_than_followed_forever(box: Box, shell: str) -> None:
    box.link("/etc/profile.d", "/etc/loop")
    box.link("/etc/loop", "/etc/profile.d")
    done = box.refuse_mounted(shell, "/etc/profile.d/zz-devbox-env.sh")
    assert done.returncode == 1
    assert "do not resolve" in done.stderr


def test_every_file_the_entrypoint_writes_under_run_devbox_is_checked() -> None:
    for path in ('"$env_file"', '"$run/workdir"', '"$config"', "/etc/profile.d/zz-devbox-env.sh"):
        assert re.search(rf"^\s*refuse_mounted {re.escape(path)}$", ENTRYPOINT, re.MULTILINE), path


# --- env_lines: every value reaches a session exactly --------------------------------------------

VALUES = [
    "\x1b[31mred\x1b[0m",
    "a\x01b",
    "carriage\rreturn",
    "bell\x07 backspace\x08 vt\x0b ff\x0c",
    "del\x7f",
    "c1 \x85 \x9b \x80",
    "tab\there",
    'it\'s "quoted" \\ $HOME `id`',
    "ünïcødé ✓",
    "",
]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("value", VALUES)
def test_env_file_gives_a_session_control_characters_exactly(tmp_path: Path, shell: str, value: str) -> None:
    env_file = tmp_path / "env.sh"
    base = {"PATH": os.environ["PATH"], "LC_ALL": "C"}
    with env_file.open("wb") as out:
        subprocess.run(
            [shell, "-c", "set -eu\n" + functions("env_lines") + "\nenv_lines\n"],
            env={**base, "SOME_VAR": value, "DEVBOX_USER": "alice"},
            stdout=out,
            check=True,
            timeout=10,
        )
    assert b"DEVBOX_USER" not in env_file.read_bytes()
    # As session.sh does (`. env.sh`), then a program the session starts.
    for reader in SHELLS:
        done = subprocess.run(
            [reader, "-c", '. "$1" && exec printenv SOME_VAR', "session", str(env_file)],
            env=base,
            capture_output=True,
            timeout=10,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == value.encode() + b"\n", (shell, reader)


@pytest.mark.parametrize("shell", SHELLS)
def test_env_file_leaves_out_a_value_with_a_newline(tmp_path: Path, shell: str) -> None:
    done = subprocess.run(
        [shell, "-c", functions("env_lines") + "\nenv_lines\n"],
        env={"PATH": os.environ["PATH"], "GOOD": "1", "MULTI": "a\nb"},
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    assert done.stdout == "export GOOD='1'\nexport PATH='" + os.environ["PATH"] + "'\n"
