"""devbox.yaml parsing: every rule's error names the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from devbox import project
from devbox.project import ProjectError

GOOD = """\
name: mnist
gpus: [0, 1]
mounts:
  - ./data:/workspace/data:ro
env:
  EPOCHS: 3
  DEBUG: false
workdir: /workspace
setup: pip install -e .
jobs:
  train: python train.py
  eval:
    command: [python, eval.py, ""]
    cwd: /workspace
    env: {SPLIT: test}
    gpus: "1"
"""


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "devbox.yaml"
    path.write_text(body)
    return path


def test_a_good_file_gives_up_s_options_setup_and_jobs(tmp_path: Path) -> None:
    proj = project.load(_write(tmp_path, GOOD))
    assert proj.options == {
        "name": "mnist",
        "gpus_text": "0,1",
        "mounts": (f"{tmp_path}/data:/workspace/data:ro",),
        "envs": ("EPOCHS=3", "DEBUG=false"),
        "workdir": "/workspace",
    }
    assert proj.setup == ("pip install -e .",)
    assert proj.jobs["train"].argv == ("python train.py",)
    evaluate = proj.jobs["eval"]
    assert (evaluate.argv, evaluate.cwd, evaluate.env, evaluate.gpus) == (
        ("python", "eval.py", ""),
        "/workspace",
        ("SPLIT=test",),
        "1",
    )


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("nmae: x\n", 1, "nmae: unknown key"),
        ("name: a\nimage: x\nname: b\n", 3, "name: duplicate key (first on line 1)"),
        ("name: Bad_Name\n", 1, "name: invalid box name"),
        ("gpus: 3-1\n", 1, "gpus: invalid GPU selection"),
        ("gpu_count: two\n", 1, "gpu_count: must be a whole number, not text"),
        ("mounts:\n  - /ok:/a\n  - nocolon\n", 3, "mounts: invalid --mount 'nocolon'"),
        ("env:\n  A: 1\n  DEVBOX_X: 2\n", 3, "env: --env DEVBOX_X is reserved"),
        ("env:\n  A: 1\n  A: 2\n", 3, "env.A: duplicate key (first on line 2)"),
        ("memory: 0\n", 1, "memory: invalid --memory '0'"),
        ("cpus: -1\n", 1, "cpus: invalid --cpus"),
        ("sudo: maybe\n", 1, "sudo: must be true or false, not text"),
        ("workdir: rel\n", 1, "workdir: 'rel' is not an absolute path"),
        ("setup: {a: b}\n", 1, "setup: must be a list of shell commands, not a mapping"),
        ("jobs: [a]\n", 1, "jobs: must map job names to commands"),
        ("jobs:\n  bad name: x\n", 2, "jobs.bad name: invalid job name"),
        ("jobs:\n  t: {comand: x}\n", 2, "jobs.t: unknown key 'comand'"),
        ("jobs:\n  t: {command: x, cwd: rel}\n", 2, "jobs.t: cwd 'rel' is not an absolute path"),
        ("jobs:\n  t: {command: x, gpus: zz}\n", 2, "jobs.t: invalid GPU selection"),
        ('jobs:\n  t: {command: x, env: {K: "a\\nb"}}\n', 2, "jobs.t: --env K holds a newline"),
        ("jobs:\n  t: []\n", 2, "jobs.t: the command must be a shell line or a list of arguments"),
        ("name: [unclosed\n", 2, "not valid YAML"),
        ("- a list\n", 1, "the file must be a mapping of keys"),
    ],
)
def test_every_problem_names_file_line_and_key(tmp_path: Path, body: str, line: int, message: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ProjectError) as caught:
        project.load(path)
    assert caught.value.message.startswith(f"{path}:{line}: "), caught.value.message
    assert message in caught.value.message
    assert caught.value.exit_code == 2


def test_an_unknown_key_suggests_the_one_meant(tmp_path: Path) -> None:
    with pytest.raises(ProjectError) as caught:
        project.load(_write(tmp_path, "shm-size: 8g\n"))
    assert caught.value.hint == "did you mean 'shm_size'?"


def test_the_file_is_found_from_a_subdirectory_and_init_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "src" / "deep").mkdir(parents=True)
    written = project.write_starter(tmp_path)
    assert project.find(tmp_path / "src" / "deep") == written
    assert project.load(written).options["name"] == project.load(written).values["name"]
    with pytest.raises(Exception, match="already exists"):
        project.write_starter(tmp_path)
