"""examples/: every example loads as `devbox up` would read it, and says what its README promises.

What needs a GPU, a registry or a server (bringing a box up, building the Dockerfile, training on
CUDA) cannot happen here: each test checks its example as far as this machine allows, and the
e2e tests bring the examples up. The training scripts are only parsed: PyPI's torch is a CUDA build of
several GB, too big for CI, so running them is left to a machine that has torch.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

from devbox import devcontainer, project

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name: str) -> project.Project:
    return project.load(EXAMPLES / name / "devbox.yaml")


def test_every_example_has_a_readme_and_is_in_the_index() -> None:
    folders = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())
    index = (EXAMPLES / "README.md").read_text()
    assert folders == sorted([*EXPECTED, "devcontainer"])
    for name in folders:
        assert (EXAMPLES / name / "README.md").is_file(), name
        assert f"]({name}/)" in index, f"examples/README.md does not link {name}/"


# What each devbox.yaml gives `up`; paths as they resolve from a checkout of this repository.
EXPECTED: dict[str, dict[str, object]] = {
    "single-gpu": {
        "name": "single-gpu",
        "image": "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime",
        "gpu_count": 1,
        "mounts": (f"{EXAMPLES}/single-gpu:/workspace",),
        "workdir": "/workspace",
        "shm_size": "8g",
        "envs": ("PYTHONUNBUFFERED=1",),
    },
    "multi-gpu-ddp": {
        "name": "ddp",
        "image": "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime",
        "gpu_count": 2,
        "mounts": (f"{EXAMPLES}/multi-gpu-ddp:/workspace",),
        "workdir": "/workspace",
        "shm_size": "16g",
        "envs": ("OMP_NUM_THREADS=4", "NCCL_DEBUG=WARN"),
    },
    "jupyter-tensorboard": {
        "name": "notebooks",
        "image": "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime",
        "gpu_count": 1,
        "mounts": (f"{EXAMPLES}/jupyter-tensorboard:/workspace",),
        "workdir": "/workspace",
        "ports": ("8888", "6006:16006"),
    },
    "remote-host": {
        "name": "lab-train",
        "host": "gpu1",
        "image": "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime",
        "gpu_count": 1,
        "mounts": ("~/datasets:/data:ro", "~/runs/lab-train:/runs"),
        "workdir": "/runs",
        "shm_size": "16g",
        "memory": "64g",
        "cpus": 8.0,
        "envs": ("HF_HOME=/data/hf", "WANDB_MODE=offline"),
    },
    "pytorch-cuda": {
        "name": "pytorch-cuda",
        "build": {
            "dockerfile": f"{EXAMPLES}/pytorch-cuda/Dockerfile",
            "context": f"{EXAMPLES}/pytorch-cuda",
            "args": ("TORCH_VERSION=2.4.1", "TORCH_INDEX=https://download.pytorch.org/whl/cu124"),
        },
        "gpu_count": 1,
        "shm_size": "8g",
    },
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_devbox_yaml_gives_up_what_its_readme_says(name: str) -> None:
    assert _load(name).options == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_example_is_found_from_inside_its_folder(name: str) -> None:
    assert project.find(EXAMPLES / name) == EXAMPLES / name / "devbox.yaml"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_relative_mount_sources_exist_in_the_checkout(name: str) -> None:
    # Checked for real by `up` on the box's host; the ~ sources of remote-host are the server's.
    for mount in _load(name).values.get("mounts", ()):
        source = mount.split(":")[0]
        assert source.startswith("~") or os.path.isdir(source), mount


def test_the_gpu_examples_ask_for_a_count_so_they_come_up_wherever_gpus_are_free() -> None:
    # A count (not fixed indices) lets the e2e tests' fake GPUs, or any free ones, be taken.
    for name in EXPECTED:
        assert "gpus_text" not in _load(name).values, name


def test_the_ddp_job_runs_torchrun_with_a_process_per_gpu_of_the_box() -> None:
    proj = _load("multi-gpu-ddp")
    train = proj.jobs["train"]
    assert train.argv == ("torchrun --standalone --nproc-per-node 2 train_ddp.py --epochs 5",)
    assert f"--nproc-per-node {proj.values['gpu_count']}" in train.argv[0]
    smoke = proj.jobs["smoke"]
    assert (smoke.gpus, "--nproc-per-node 1" in smoke.argv[0]) == ("0", True)


def test_the_notebook_servers_listen_on_the_ports_the_file_forwards() -> None:
    proj = _load("jupyter-tensorboard")
    box_ports = {p.split(":")[0] for p in proj.values["ports"]}
    listening = {m for job in proj.jobs.values() for m in re.findall(r"--port (\d+)", job.argv[0])}
    assert listening == box_ports == {"8888", "6006"}
    # Loopback only: the ssh forward is the one way in.
    for name in ("jupyter", "tensorboard"):
        assert re.search(r"--(ip|host) 127\.0\.0\.1", proj.jobs[name].argv[0]), name
    assert proj.setup == ("pip install --user jupyterlab tensorboard",)


def test_the_remote_example_names_a_host_and_mounts_the_server_s_paths() -> None:
    proj = _load("remote-host")
    assert proj.values["host"] == "gpu1"
    assert all(m.startswith("~/") for m in proj.values["mounts"])
    readme = (EXAMPLES / "remote-host" / "README.md").read_text()
    assert "devbox host add gpu1 " in readme and "ProxyJump" in readme


# ---------------------------------------------------------------- devcontainer.json


def test_the_devcontainer_example_is_vs_code_s_own_dialect() -> None:
    text = (EXAMPLES / "devcontainer" / ".devcontainer" / "devcontainer.json").read_text()
    assert "//" in text and re.search(r",\s*[}\]]", text) and "${localWorkspaceFolder}" in text
    # No devbox.yaml beside it: one would be read instead.
    assert not (EXAMPLES / "devcontainer" / "devbox.yaml").exists()
    assert devcontainer.find(EXAMPLES / "devcontainer") == (
        EXAMPLES / "devcontainer" / ".devcontainer" / "devcontainer.json"
    )


def test_the_devcontainer_example_imports_image_gpu_mounts_env_ports_and_setup() -> None:
    folder = EXAMPLES / "devcontainer"
    proj, warnings = devcontainer.load(folder / ".devcontainer" / "devcontainer.json")
    assert proj.values == {
        "name": "cifar",
        "image": "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime",
        "gpu_count": 1,  # hostRequirements.gpu: true
        "shm_size": "8g",  # runArgs --shm-size
        "mounts": (f"{folder}:/workspaces/devcontainer", f"{folder}/data:/data:ro"),
        "workdir": "/workspaces/devcontainer",
        "envs": ("WANDB_MODE=offline", "DATA_DIR=/data", "PROJECT_ROOT=/workspaces/devcontainer"),
        "ports": ("8888", "6006"),
        "setup": ("pip install --user -r requirements.txt",),
        "user": "vscode",  # remoteUser
    }
    assert warnings == (
        "runArgs --ipc",
        "mounts /home/vscode/.cache/pip (type=volume)",
        "features",
        "customizations",
    )
    readme = " ".join((folder / "README.md").read_text().replace("#", "").split())
    assert " ".join(devcontainer.not_applied_line(warnings).split()) in readme
    assert (folder / "data").is_dir() and (folder / "requirements.txt").is_file()


# ---------------------------------------------------------------- the Dockerfile recipe
#
# It cannot be built here: no registry to pull nvidia/cuda from, no PyTorch index, no GPU. So it
# is read as Docker reads it (instructions, ARG defaults, stages) and checked for what the README
# promises: multi-stage, slim, non-root, pinned, and the build args devbox.yaml passes declared.


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: comments dropped, continued lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    found = []
    for line in text.splitlines():
        words = line.split(None, 1)
        if words and not words[0].startswith("#"):
            found.append((words[0].upper(), words[1] if len(words) > 1 else ""))
    return found


def _stages(path: Path) -> list[dict[str, object]]:
    """Each stage's base (ARG defaults substituted), name and instructions."""
    defaults: dict[str, str] = {}
    stages: list[dict[str, object]] = []
    for op, args in _instructions(path):
        if op == "ARG" and "=" in args:
            name, _, value = args.partition("=")
            defaults.setdefault(name, value)
        if op == "FROM":
            base, _, name = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], args).partition(" AS ")
            stages.append({"base": base.strip(), "name": name.strip(), "body": []})
        elif stages:
            stages[-1]["body"].append((op, args))  # type: ignore[union-attr]
    return stages


RECIPE = EXAMPLES / "pytorch-cuda" / "Dockerfile"


def test_the_recipe_is_multi_stage_with_torch_built_into_a_venv_the_runtime_copies() -> None:
    stages = {s["name"]: s for s in _stages(RECIPE)}
    assert list(stages) == ["base", "builder", "runtime"]
    assert stages["builder"]["base"] == stages["runtime"]["base"] == "base"  # the same python
    builder = " ".join(a for op, a in stages["builder"]["body"] if op == "RUN")
    assert re.search(r"python3 -m venv .*/opt/venv", builder)
    assert re.search(r'/opt/venv/bin/pip install --no-cache-dir .*"torch==\$\{TORCH_VERSION\}"', builder)
    runtime = stages["runtime"]["body"]
    assert ("COPY", "--from=builder /opt/venv /opt/venv") in runtime
    assert not any("pip install" in a for op, a in runtime if op == "RUN")  # nothing built in the runtime


def test_the_recipe_starts_from_a_pinned_nvidia_cuda_image() -> None:
    bases = [s["base"] for s in _stages(RECIPE) if s["base"] not in {s["name"] for s in _stages(RECIPE)}]
    assert bases == ["nvidia/cuda:12.4.1-base-ubuntu22.04"]
    for base in bases:
        tag = base.partition(":")[2]
        assert tag and tag != "latest" and re.match(r"\d+\.\d+\.\d+-", tag), base
    assert "latest" not in RECIPE.read_text()


def test_the_recipe_runs_as_a_non_root_user() -> None:
    runtime = _stages(RECIPE)[-1]["body"]
    args = dict(a.split("=", 1) for op, a in runtime if op == "ARG")
    users = [re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], a) for op, a in runtime if op == "USER"]
    assert users[-1:] == ["dev"], users
    assert any(op == "RUN" and "useradd" in a and "${USERNAME}" in a for op, a in runtime)


def test_the_recipe_is_slim() -> None:
    for op, args in _instructions(RECIPE):
        if op == "RUN" and "apt-get install" in args:
            assert "--no-install-recommends" in args and "rm -rf /var/lib/apt/lists/*" in args, args
        if op == "RUN" and "pip install" in args:
            assert args.count("pip install") == args.count("pip install --no-cache-dir"), args
    ignored = (EXAMPLES / "pytorch-cuda" / ".dockerignore").read_text().split()
    assert ignored[-2:] == ["*", "!Dockerfile"]  # the context sent to the engine is the Dockerfile alone


def test_devbox_yaml_passes_only_build_args_the_recipe_declares_and_their_cuda_matches() -> None:
    declared = {a.partition("=")[0] for op, a in _instructions(RECIPE) if op == "ARG"}
    args = dict(a.split("=", 1) for a in _load("pytorch-cuda").values["build"]["args"])
    assert set(args) <= declared
    # The torch wheel index names the CUDA the image has: cu124 with CUDA 12.4.
    cuda = re.search(r"nvidia/cuda:(\d+)\.(\d+)", RECIPE.read_text())
    assert cuda and args["TORCH_INDEX"].endswith(f"/cu{cuda[1]}{cuda[2]}")
    assert f"ARG TORCH_VERSION={args['TORCH_VERSION']}" in RECIPE.read_text()


# ---------------------------------------------------------------- the scripts


SCRIPTS = sorted(EXAMPLES.glob("*/*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_script_compiles_and_every_job_names_one_that_exists(script: Path) -> None:
    ast.parse(script.read_text(), filename=str(script))
    folder = script.parent
    if (folder / "devbox.yaml").exists():
        for job in project.load(folder / "devbox.yaml").jobs.values():
            for word in " ".join(job.argv).split():
                if word.endswith(".py"):
                    assert (folder / word).is_file(), f"{job.name}: {word}"
