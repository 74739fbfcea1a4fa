"""examples/ brought up as far as this machine allows, as an ordinary user in a copy of each
example's folder. Their images are PyTorch's (a registry this machine cannot reach), so `--image`
swaps in the test base image: a flag overriding the file, as a user with a local mirror would.
What they install with pip in setup cannot happen here (no pip in the test image): those tests
check that setup ran, failed the way a broken setup does, and kept the box."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from devbox import project

from .conftest import User, devbox_containers

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def copy_of(user: User) -> Iterator:
    made: list[tuple[Path, str]] = []

    def copy(example: str, box: str) -> Path:
        folder = user.home / example
        shutil.copytree(EXAMPLES / example, folder)
        for root, dirs, files in os.walk(folder):
            for entry in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.chown(entry, user.uid, user.gid)
        made.append((folder, box))
        return folder

    yield copy
    for folder, box in made:
        user.devbox("rm", box, "--purge", cwd=folder)


@pytest.mark.parametrize(
    ("example", "box", "gpus", "script"),
    [("single-gpu", "single-gpu", 1, "train.py"), ("multi-gpu-ddp", "ddp", 2, "train_ddp.py")],
)
def test_a_gpu_example_comes_up_with_its_gpu_count_mounts_and_jobs(
    env: dict[str, str],
    user: User,
    client: docker.DockerClient,
    copy_of,
    example: str,
    box: str,
    gpus: int,
    script: str,
) -> None:
    folder = copy_of(example, box)
    assert f"name: {box}" in (folder / "devbox.yaml").read_text()
    user.ok("up", "--image", env["DEVBOX_TEST_IMAGE"], cwd=folder)
    (container,) = devbox_containers(client, box)
    assert len(container.labels["devbox.gpus"].split(",")) == gpus
    listing = user.ssh(f"devbox-{box}", "cd /workspace && ls && pwd").stdout.split()
    assert script in listing and listing[-1] == "/workspace"
    # Its declared jobs start by name (python is not in the test image: the job runs and fails
    # there, which is what `jobs` must then say).
    job = next(iter(project.load(folder / "devbox.yaml").jobs))
    ran = user.devbox("run", box, job, "--wait", cwd=folder)
    assert ran.returncode == 127, ran.stderr  # the job's own exit: command not found


def test_the_jupyter_example_forwards_both_ports_and_keeps_the_box_when_pip_is_missing(
    env: dict[str, str], user: User, client: docker.DockerClient, copy_of
) -> None:
    folder = copy_of("jupyter-tensorboard", "notebooks")
    made = user.devbox("up", "--image", env["DEVBOX_TEST_IMAGE"], cwd=folder)
    assert made.returncode == 1 and "setup from" in made.stderr and "the box is kept" in made.stderr
    assert devbox_containers(client, "notebooks")
    block = user.ok("ssh-config", "notebooks").stdout
    assert "LocalForward 127.0.0.1:8888 127.0.0.1:8888" in block
    assert "LocalForward 127.0.0.1:16006 127.0.0.1:6006" in block


def test_the_devcontainer_example_imports_and_says_what_it_does_not_apply(
    env: dict[str, str], user: User, client: docker.DockerClient, copy_of
) -> None:
    folder = copy_of("devcontainer", "cifar")
    made = user.devbox("up", "--image", env["DEVBOX_TEST_IMAGE"], cwd=folder)
    warning = [ln for ln in made.stderr.splitlines() if "not applied" in ln]
    assert len(warning) == 1 and "features" in warning[0] and "remoteUser" not in warning[0], made.stderr
    # postCreateCommand is its setup: pip is not in the test image, so it fails and the box stays.
    assert made.returncode == 1 and "the box is kept" in made.stderr
    (container,) = devbox_containers(client, "cifar")
    assert container.labels["devbox.gpus"] and container.attrs["HostConfig"]["ShmSize"] == 8 * 1024**3
    out = user.ssh("devbox-cifar", "ls /data; echo $WANDB_MODE $DATA_DIR; pwd").stdout.split()
    assert out[-3:] == ["offline", "/data", "/workspaces/devcontainer"], out
    # remoteUser is the login's name; its UID/GID stay the test user's, so the project stays theirs.
    login = user.ssh("devbox-cifar", "id -un; id -u; echo $HOME; touch /workspaces/devcontainer/made")
    assert login.stdout.split() == ["vscode", str(user.uid), "/home/vscode"], login.stdout
    assert (folder / "made").stat().st_uid == user.uid
