"""devbox.yaml end to end, as an ordinary user in a project checkout: `up` with no NAME reads it,
flags override it, setup runs once, declared jobs run by name, bad files are one line naming the
file and line, and nothing is created."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import User, devbox_containers

PROJECT = """\
name: {name}
gpu_count: 1
mounts:
  - ./data:/workspace/data:ro
env:
  GREETING: hello there
  EPOCHS: 3
workdir: /workspace
setup:
  - echo setting up
  - echo ran >> ~/setup-count
jobs:
  train: echo training for $EPOCHS epochs in $(pwd)
  args:
    command: [printf, "[%s]", "a b", ""]
"""


def _own(user: User, *paths: Path) -> None:
    for path in paths:
        os.chown(path, user.uid, user.gid)


@pytest.fixture
def checkout(user: User, name: str) -> Iterator[Path]:
    """A project checkout with a devbox.yaml and a data dir, and a subdirectory to run from."""
    root = user.home / f"proj-{name}"
    (root / "data").mkdir(parents=True)
    (root / "data" / "train.csv").write_text("x,y\n")
    (root / "src").mkdir()
    (root / "devbox.yaml").write_text(PROJECT.format(name=name))
    _own(user, root, root / "data", root / "data" / "train.csv", root / "src", root / "devbox.yaml")
    yield root
    user.devbox("rm", name, "--purge")


def _box(user: User, name: str) -> dict:
    return next(b for b in json.loads(user.ok("ls", "--json").stdout) if b["name"] == name)


def test_up_with_no_name_reads_devbox_yaml_from_a_subdirectory_and_runs_setup_once(
    user: User, checkout: Path, name: str
) -> None:
    proc = user.ok("up", cwd=checkout / "src")
    assert "setting up" in proc.stderr  # setup's output, streamed
    box = _box(user, name)
    assert len(box["gpus"]) == 1 and box["workdir"] == "/workspace"
    alias = box["ssh_alias"]
    seen = user.ssh(alias, "cat /workspace/data/train.csv; echo $GREETING $EPOCHS; pwd").stdout
    assert seen == "x,y\nhello there 3\n/workspace\n"
    user.ok("stop", name)
    user.ok("up", cwd=checkout)  # starts it again: setup is not run twice
    user.ok("restart", name)
    assert user.ssh(alias, "cat ~/setup-count").stdout == "ran\n"
    assert json.loads(user.ok("jobs", name, "--json").stdout)[0]["name"] == "setup"


def test_declared_jobs_run_by_name_with_the_box_s_environment(user: User, checkout: Path, name: str) -> None:
    user.ok("up", cwd=checkout)
    ran = user.devbox("run", name, "train", "--wait", cwd=checkout)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "training for 3 epochs in /workspace\n"
    user.ok("run", name, "args", "--wait", cwd=checkout)
    assert user.ok("logs", name, "args").stdout == "[a b][]"
    # Outside the checkout the word is a shell command line, as ever.
    assert user.ok("run", name, "--wait", "--", "echo train").stdout == "train\n"


def test_the_file_describes_the_whole_box_and_up_name_of_its_box_uses_it(
    user: User, checkout: Path, name: str
) -> None:
    user.ok("up", cwd=checkout)
    path = checkout / "devbox.yaml"
    # A key taken out (gpu_count) and one added (sudo: false) are changes, as an edited value is.
    path.write_text(path.read_text().replace("gpu_count: 1\n", "") + "sudo: false\n")
    refused = user.devbox("up", cwd=checkout)
    assert refused.returncode == 2, refused.stderr
    assert "already exists with other options" in refused.stderr
    assert "sudo True → False" in refused.stderr and "gpus 1 free → none" in refused.stderr
    assert json.loads(user.ok("ls", "--json").stdout)  # nothing was removed
    user.ok("up", name, cwd=checkout)  # `up NAME` means "start it": only typed flags compare
    user.ok("rm", name)  # home kept
    # `up NAME` of the project's box, in its folder, makes it from the file (not the defaults).
    user.ok("up", name, cwd=checkout / "src")
    box = _box(user, name)
    assert box["workdir"] == "/workspace" and box["gpus"] == []
    assert user.ssh(box["ssh_alias"], "cat /workspace/data/train.csv; sudo -n true").returncode != 0
    assert user.ssh(box["ssh_alias"], "cat /workspace/data/train.csv").stdout == "x,y\n"


def test_flags_override_the_file(user: User, checkout: Path, name: str) -> None:
    user.ok("up", "--gpus", "none", "--env", "GREETING=flag", "--workdir", "/srv", cwd=checkout)
    box = _box(user, name)
    assert box["gpus"] == [] and box["workdir"] == "/srv"
    assert user.ssh(box["ssh_alias"], "echo $GREETING; echo ${EPOCHS:-unset}").stdout == "flag\nunset\n"


def test_a_failing_setup_keeps_the_box_and_says_where_to_look(user: User, checkout: Path, name: str) -> None:
    text = (checkout / "devbox.yaml").read_text().replace("  - echo ran >> ~/setup-count", "  - exit 9")
    (checkout / "devbox.yaml").write_text(text)
    proc = user.devbox("up", cwd=checkout)
    assert proc.returncode == 1
    assert (
        f"setup from {checkout / 'devbox.yaml'} failed in {name} (exited 9); the box is kept" in proc.stderr
    )
    assert f"devbox logs {name} setup" in proc.stderr
    assert _box(user, name)["status"] == "running"


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("nmae: x\n", 1, "nmae: unknown key — did you mean 'name'?"),
        ("name: a\nname: b\n", 2, "name: duplicate key (first on line 1)"),
        ("name: ok\ngpus: 9-3\n", 2, "gpus: invalid GPU selection"),
        ("name: ok\nmounts:\n  - ./data:/w\n  - ./missing:/m\n", 4, "mounts: mount source"),
        ("name: ok\nmemory: lots\n", 2, "memory: invalid --memory 'lots'"),
        ("name: ok\nsudo: maybe\n", 2, "sudo: must be true or false, not text"),
        ("name: [unclosed\n", 2, "not valid YAML"),
    ],
)
def test_a_bad_devbox_yaml_is_one_line_naming_file_and_line_and_creates_nothing(
    user: User, client, checkout: Path, name: str, body: str, line: int, message: str
) -> None:
    (checkout / "devbox.yaml").write_text(body.replace("name: ok", f"name: {name}"))
    proc = user.devbox("up", cwd=checkout)
    assert proc.returncode == 2, proc.stderr
    (error,) = proc.stderr.splitlines()
    assert error.startswith(f"error: {checkout / 'devbox.yaml'}:{line}: "), error
    assert message in error, error
    assert devbox_containers(client, name) == []


def test_init_writes_a_starter_that_up_reads_and_never_overwrites(user: User, name: str) -> None:
    folder = user.home / name
    folder.mkdir()
    _own(user, folder)
    assert "Wrote" in user.ok("init", cwd=folder).stdout
    starter = (folder / "devbox.yaml").read_text()
    assert f'name: "{name}"' in starter
    again = user.devbox("init", cwd=folder)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert (folder / "devbox.yaml").read_text() == starter
    # The starter parses as it is (a typo check without bringing a box up: a bad flag wins first).
    proc = user.devbox("up", "--memory", "lots", cwd=folder)
    assert proc.returncode == 2 and "invalid --memory 'lots'" in proc.stderr


def test_global_config_sets_image_alias_prefix_and_identity_and_env_and_flags_win(
    fresh_user: User, client, name: str, derived_image
) -> None:
    user = fresh_user
    image = derived_image("LABEL from=config")
    key = user.home / "mykey"
    user.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    config = user.home / ".config" / "devbox" / "config.yaml"
    user.run("mkdir", "-p", str(config.parent))
    config.write_text(f"image: {image}\nalias_prefix: lab-\nidentity: {key}\n")
    _own(user, config)
    env = {k: v for k, v in user.env.items() if k != "DEVBOX_IMAGE"}
    saved, user.env = user.env, env
    try:
        user.ok("up", name)
        box = json.loads(user.ok("ls", "--json").stdout)[0]
        assert box["image"] == image and box["ssh_alias"] == f"lab-{name}"
        assert user.ssh(f"lab-{name}", "true").returncode == 0
        # Logged in with the config's key, not devbox's own (which was never made).
        assert not user.key_path.exists()
        # The environment variable beats the file; the flag beats both.
        proc = user.devbox("up", f"{name}x", "--image", "", extra_env={"DEVBOX_HOST_PREFIX": "x-"})
        assert proc.returncode == 2 and "image" in proc.stderr
        user.ok("rm", name, "--purge")
        config.write_text("imagee: x\n")
        bad = user.devbox("up", f"{name}y")
        assert bad.returncode == 2
        assert f"{config}:1: imagee: unknown key" in bad.stderr and "did you mean 'image'" in bad.stderr
        assert "Traceback" not in bad.stderr
    finally:
        user.env = saved
