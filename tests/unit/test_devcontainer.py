"""devcontainer.json: read as VS Code reads it, mapped onto `up`'s values, the rest named in one line."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devbox import devcontainer
from devbox.devcontainer import load, not_applied_line, strip_jsonc
from devbox.project import ProjectError

REALISTIC = """\
// For format details, see https://aka.ms/devcontainer.json. For config options, see the
// README at: https://github.com/devcontainers/templates/tree/main/src/python
{
\t"name": "PyTorch (GPU)",
\t"build": {
\t\t// Path is relative to the devcontainer.json file.
\t\t"dockerfile": "Dockerfile",
\t\t"context": "..",
\t\t"args": { "VARIANT": "3.12", /* pinned */ "CUDA": "12.4", },
\t},
\t"runArgs": ["--gpus", "all", "--shm-size", "8g", "--privileged"],
\t"mounts": [
\t\t"source=${localWorkspaceFolder}/data,target=/data,type=bind,readonly",
\t\t"source=pip-cache,target=/root/.cache/pip,type=volume",
\t],
\t"containerEnv": { "WANDB_MODE": "offline", "HF_HOME": "/data/hf" },
\t// Use 'forwardPorts' to make a list of ports inside the container available locally.
\t"forwardPorts": [8888, 6006],
\t"postCreateCommand": "pip install --user -r requirements.txt",
\t"features": {
\t\t"ghcr.io/devcontainers/features/common-utils:2": {},
\t},
\t"customizations": {
\t\t"vscode": { "extensions": ["ms-python.python", "ms-toolsai.jupyter"] },
\t},
\t"remoteUser": "vscode",
}
"""


def _write(folder: Path, body: str, name: str = ".devcontainer/devcontainer.json") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


def _load(tmp_path: Path, **keys: object) -> tuple[dict, tuple[str, ...]]:
    """A file of `keys` (an image unless given) in tmp_path/proj: its values and warnings."""
    body = {"image": "ubuntu:24.04", **keys}
    project, warnings = load(_write(tmp_path / "proj", json.dumps(body, indent=2)))
    return project.values, warnings


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    folder = tmp_path / "proj"
    (folder / ".devcontainer").mkdir(parents=True)
    (folder / ".devcontainer" / "Dockerfile").write_text("FROM ubuntu:24.04\n")
    return folder


# ---------------------------------------------------------------- a real project's file


def test_a_realistic_file_gives_up_s_values_and_one_not_applied_line(proj: Path) -> None:
    project, warnings = load(_write(proj, REALISTIC))
    assert project.values == {
        "workdir": "/workspaces/proj",
        "build": {
            "dockerfile": f"{proj}/.devcontainer/Dockerfile",
            "context": str(proj),
            "args": ("VARIANT=3.12", "CUDA=12.4"),
        },
        "gpus_text": "all",
        "shm_size": "8g",
        "mounts": (f"{proj}:/workspaces/proj", f"{proj}/data:/data:ro"),
        "envs": ("WANDB_MODE=offline", "HF_HOME=/data/hf"),
        "ports": ("8888", "6006"),
        "setup": ("pip install --user -r requirements.txt",),
        "user": "vscode",
    }
    assert project.jobs == {}
    assert not_applied_line(warnings) == (
        "devcontainer.json: not applied: name 'PyTorch (GPU)' (not a box name), runArgs --privileged, "
        "mounts /root/.cache/pip (type=volume), features, customizations"
    )


def test_where_points_at_the_line_of_each_key_the_values_came_from(proj: Path) -> None:
    path = _write(proj, REALISTIC)
    project, _ = load(path)
    assert project.where("build") == f"{path}:5"
    assert project.where("gpus_text") == project.where("shm_size") == f"{path}:11"
    assert project.where("mounts") == f"{path}:12"
    assert project.where("mounts.1") == f"{path}:12"
    assert project.where("envs") == f"{path}:16"
    assert project.where("ports") == f"{path}:18"
    assert project.where("setup") == f"{path}:19"
    assert project.where("remoteUser") == project.where("user") == f"{path}:26"
    assert project.where("workdir") == f"{path}:3"  # a default: the line the object opens on
    assert project.options == {k: v for k, v in project.values.items() if k != "setup"}


def test_a_valid_name_is_the_box_name_and_schema_is_ignored_silently(tmp_path: Path) -> None:
    values, warnings = _load(tmp_path, name="mnist-gpu", **{"$schema": "https://x/schema.json"})
    assert values["name"] == "mnist-gpu"
    assert warnings == ()
    assert not_applied_line(warnings) is None


def test_remote_user_names_the_box_login_and_may_come_from_the_local_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values, warnings = _load(tmp_path, remoteUser="vscode")
    assert (values["user"], warnings) == ("vscode", ())
    monkeypatch.setenv("USER", "alice")
    assert _load(tmp_path, remoteUser="${localEnv:USER}")[0]["user"] == "alice"


@pytest.mark.parametrize("name", ["root", "sshd", "Big Name"])
def test_a_remote_user_devbox_cannot_log_in_as_is_said_and_not_used(tmp_path: Path, name: str) -> None:
    values, warnings = _load(tmp_path, remoteUser=name)
    assert "user" not in values
    assert warnings == (f"remoteUser {name!r} (you log in as yourself, with sudo)",)


def test_a_remote_user_that_is_not_text_names_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "proj", '{\n  "image": "x",\n  "remoteUser": 7\n}')
    with pytest.raises(ProjectError, match=f"^{path}:3: remoteUser: must be text, not a number"):
        load(path)


def test_a_free_text_name_is_left_out_with_a_note(tmp_path: Path) -> None:
    values, warnings = _load(tmp_path, name="Python 3")
    assert "name" not in values
    assert warnings == ("name 'Python 3' (not a box name)",)


# ---------------------------------------------------------------- JSON with comments


@pytest.mark.parametrize(
    "text",
    [
        '{"url": "http://x//y"}',
        '{"a": "a,}", "b": "a,]"}',
        '{"q": "say \\"hi\\" // still text"}',
        '{"c": "/* not a comment */"}',
        '{"back": "ends in a backslash\\\\"}',
        '{"a": [1, 2, {"b": "x,"}], "empty": {}, "list": []}',
    ],
)
def test_strings_that_look_like_comments_or_commas_survive(text: str) -> None:
    assert strip_jsonc(text) == text
    assert json.loads(strip_jsonc(text)) == json.loads(text)


def test_comments_and_trailing_commas_become_spaces_keeping_lines_and_columns() -> None:
    text = '{ // one\n  "a": [1, 2, ], /* two\n lines */ "b": {"c": 3,},\n}'
    stripped = strip_jsonc(text)
    assert json.loads(stripped) == {"a": [1, 2], "b": {"c": 3}}
    assert len(stripped) == len(text)
    assert [len(line) for line in stripped.split("\n")] == [len(line) for line in text.split("\n")]


def test_a_comma_before_a_comment_before_the_bracket_is_trailing() -> None:
    assert json.loads(strip_jsonc("[1, // last\n /* really */ ]")) == [1]


def test_a_double_comma_is_still_an_error_on_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, '{\n  "image": "u",\n  "forwardPorts": [1,,],\n}')
    with pytest.raises(ProjectError, match=rf"^{path}:3: not valid JSON: Expecting value"):
        load(path)


def test_a_json_error_after_a_long_comment_names_the_real_line(tmp_path: Path) -> None:
    body = '/*\n  a\n  comment\n*/\n{\n  "image": "u"\n  "name": "x"\n}\n'
    path = _write(tmp_path, body)
    with pytest.raises(ProjectError, match=rf"^{path}:7: not valid JSON: Expecting ',' delimiter"):
        load(path)


def test_a_byte_order_mark_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / ".devcontainer.json"
    path.write_bytes(b'\xef\xbb\xbf{"image": "u"}')
    assert load(path)[0].values["image"] == "u"


# ---------------------------------------------------------------- errors name file, line and key


def _body(*lines: str) -> str:
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _img(*lines: str) -> str:
    """A file whose line 2 is the image, then `lines`."""
    return _body('"image": "u"', *lines)


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        (_img('"forwardPorts": 8888'), 3, "forwardPorts: must be a list, not a number"),
        (_body('"image": 3'), 2, "image: must be text, not a number"),
        (_body('"image": ""'), 2, "image: the image name is empty"),
        (_body('"name": 3', '"image": "u"'), 2, "name: must be text, not a number"),
        (_img('"runArgs": "--gpus all"'), 3, "runArgs: must be a list, not text"),
        (_img('"runArgs": ["--shm-size", "lots"]'), 3, "runArgs: invalid --shm-size 'lots'"),
        (_img('"runArgs": ["--shm-size"]'), 3, "runArgs: --shm-size needs a value"),
        (_img('"runArgs": ["-m", "0"]'), 3, "runArgs: invalid --memory '0'"),
        (_img('"runArgs": ["--gpus", "device=x"]'), 3, "runArgs: invalid GPU selection"),
        (_img('"runArgs": ["--gpus", "0"]'), 3, "runArgs: --gpu-count must be at least 1"),
        (_img('"runArgs": ["--gpus", "lots"]'), 3, "runArgs: invalid --gpus 'lots'"),
        (_img('"runArgs": ["--gpus", "0,1"]'), 3, "runArgs: invalid --gpus '0,1': more than one count"),
        (_img('"runArgs": ["--cpus=many"]'), 3, "runArgs: --cpus 'many' is not a number"),
        (_img('"runArgs": ["--cpus", "0"]'), 3, "runArgs: invalid --cpus"),
        (_img('"runArgs": [1]'), 3, "runArgs: must be a list of text, not a number"),
        (_img('"containerEnv": {"A B": "1"}'), 3, "containerEnv: invalid --env 'A B=1'"),
        (
            _img('"containerEnv": {"DEVBOX_X": "1"}'),
            3,
            "containerEnv: --env DEVBOX_X is res",
        ),
        (
            _img('"containerEnv": {"X": {}}'),
            3,
            "containerEnv: X must be text, not an object",
        ),
        (_img('"containerEnv": {"X": null}'), 3, "containerEnv: X must be text, not null"),
        (_img('"remoteEnv": ["A=1"]'), 3, "remoteEnv: must be an object, not a list"),
        (_img('"remoteEnv": {"A": "a\\nb"}'), 3, "remoteEnv: --env A holds a newline"),
        (
            _img('"mounts": ["source=data,target=/d,type=bind"]'),
            3,
            "mounts: mount source 'data' is not an absolute path",
        ),
        (_img('"mounts": ["source=/a,type=bind"]'), 3, "mounts: a mount has no target"),
        (_img('"mounts": ["target=/a,type=bind"]'), 3, "mounts: the bind mount to '/a' has"),
        (_img('"mounts": [3]'), 3, "mounts: each mount must be text or an object"),
        (_img('"mounts": "x"'), 3, "mounts: must be a list, not text"),
        (
            _img('"mounts": [{"source": 1, "target": "/a", "type": "bind"}]'),
            3,
            "mounts: source must be text, not a number",
        ),
        (
            _img('"mounts": ["type=bind,source=/tmp,target=/workspaces/proj"]'),
            3,
            "mounts: two mounts target '/workspaces/proj'",
        ),
        (
            _img('"workspaceMount": "type=bind,source=rel,target=/w"'),
            3,
            "workspaceMount: mount",
        ),
        (
            _img('"workspaceFolder": "src"'),
            3,
            "workspaceFolder: 'src' is not an absolute path",
        ),
        (_img('"workspaceFolder": 1'), 3, "workspaceFolder: must be text, not a number"),
        (_body('"build": {"dockerfile": "Nope"}'), 2, "build: Dockerfile '"),
        (_body('"build": {"dockerfile": 1}'), 2, "build: dockerfile must be text, not a number"),
        (_body('"build": {"dockerfile": "Dockerfile", "args": ["A=1"]}'), 2, "build: args must be an object"),
        (
            _body('"build": {"dockerfile": "Dockerfile", "args": {"A": 1}}'),
            2,
            "build: args.A must be text, not a number",
        ),
        (_body('"build": {"dockerfile": "Dockerfile", "context": "nope"}'), 2, "build: build context '"),
        (_body('"build": "Dockerfile"'), 2, "build: must be an object, not text"),
        (
            _img('"hostRequirements": {"gpu": 3}'),
            3,
            "hostRequirements: gpu must be true, false",
        ),
        (_img('"hostRequirements": true'), 3, "hostRequirements: must be an object"),
        (_img('"postCreateCommand": 3'), 3, "postCreateCommand: must be a shell line"),
        (
            _img('"onCreateCommand": {"a": ["x", 1]}'),
            3,
            "onCreateCommand: a must be a list of text, not a number",
        ),
        (_img('"forwardPorts": [70000]'), 3, "forwardPorts: 70000 is not a port"),
        (_img('"forwardPorts": ["localhost:x"]'), 3, "forwardPorts: 'localhost:x' is not a"),
        (
            _img('"forwardPorts": [true]'),
            3,
            "forwardPorts: must be port numbers or host:port",
        ),
        (_img('"image": "v"'), 3, "image: duplicate key (first on line 2)"),
        (
            '{\n  "image": "u",\n  "containerEnv": {\n    "A": "1",\n    "A": "2"\n  }\n}',
            5,
            "containerEnv: duplicate key 'A' (first on line 4)",
        ),
        (_body('"image": "u"\n  "name": "x"'), 3, "not valid JSON: Expecting ',' delimiter (column 3)"),
        (_body('"image": "u" /* oops'), 2, "not valid JSON: a /* comment never ends"),
        (_body('"image": "u'), 2, "not valid JSON: Unterminated string"),
        ("\n[1]\n", 2, "the file must be a JSON object"),
        ("// nothing but a comment\n", 2, "not valid JSON: Expecting value"),
        (_body('"name": "x"'), 1, "no image or build.dockerfile"),
    ],
)
def test_every_problem_names_file_line_and_key(proj: Path, body: str, line: int, message: str) -> None:
    path = _write(proj, body)
    with pytest.raises(ProjectError) as caught:
        load(path)
    assert caught.value.message.startswith(f"{path}:{line}: "), caught.value.message
    assert message in caught.value.message
    assert caught.value.exit_code == 2
    assert "\n" not in str(caught.value)


def test_a_compose_file_is_refused_saying_devbox_runs_no_compose(tmp_path: Path) -> None:
    body = _body('"dockerComposeFile": "docker-compose.yml"', '"service": "app"')
    with pytest.raises(ProjectError) as caught:
        load(_write(tmp_path, body))
    assert "no image or build.dockerfile" in caught.value.message
    assert "Docker Compose" in (caught.value.hint or "")


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe\x00garbage\x80", b"\x00\x01\x02", b"[" * 100_000, b'{"a": ' + b"1" * 5000 + b"}"],
)
def test_garbage_is_a_project_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / ".devcontainer.json"
    path.write_bytes(content)
    with pytest.raises(ProjectError) as caught:
        load(path)
    assert str(path) in caught.value.message


def test_an_unreadable_file_is_a_project_error(tmp_path: Path) -> None:
    path = tmp_path / ".devcontainer.json"
    path.mkdir()
    with pytest.raises(ProjectError, match="cannot read"):
        load(path)


# ---------------------------------------------------------------- GPUs, sizes, CPUs


@pytest.mark.parametrize(
    ("args", "values", "warnings"),
    [
        (["--gpus", "all"], {"gpus_text": "all"}, ()),
        (["--gpus=all"], {"gpus_text": "all"}, ()),
        (["--gpus", "2"], {"gpu_count": 2}, ()),
        (["--gpus", "count=2"], {"gpu_count": 2}, ()),
        (["--gpus", '"device=0,1"'], {"gpus_text": "0,1"}, ()),
        (['--gpus="device=0,1"'], {"gpus_text": "0,1"}, ()),
        (["--gpus", "device=0,1"], {"gpus_text": "0,1"}, ()),
        (["--gpus", "'\"device=2\"'"], {"gpus_text": "2"}, ()),
        (
            ["--gpus", "all,capabilities=compute,utility"],
            {"gpus_text": "all"},
            ("runArgs --gpus capabilities",),
        ),
        (["--gpus", "1", "--gpus", "all"], {"gpus_text": "all"}, ()),
        (["--shm-size=16g"], {"shm_size": "16g"}, ()),
        (["--shm-size", "2gb"], {"shm_size": "2g"}, ()),
        (["--memory", "64G"], {"memory": "64g"}, ()),
        (["-m", "512m"], {"memory": "512m"}, ()),
        (["-m16g"], {"memory": "16g"}, ()),
        (["-m=4GiB"], {"memory": "4g"}, ()),
        (["--cpus", "8"], {"cpus": 8.0}, ()),
        (["--cpus=0.5"], {"cpus": 0.5}, ()),
        (
            ["--privileged", "--network", "host", "-e", "A=1", "--cap-add=SYS_PTRACE", "stray"],
            {},
            ("runArgs --privileged", "runArgs --network", "runArgs -e", "runArgs --cap-add", "runArgs stray"),
        ),
    ],
)
def test_run_args_that_devbox_applies_and_the_rest_named(
    tmp_path: Path, args: list[str], values: dict, warnings: tuple[str, ...]
) -> None:
    got, got_warnings = _load(tmp_path, runArgs=args)
    picked = {k: got[k] for k in ("gpus_text", "gpu_count", "shm_size", "memory", "cpus") if k in got}
    assert (picked, got_warnings) == (values, warnings)


@pytest.mark.parametrize(
    ("keys", "values", "warnings"),
    [
        ({"hostRequirements": {"gpu": True}}, {"gpu_count": 1}, ()),
        ({"hostRequirements": {"gpu": False}}, {}, ()),
        (
            {"hostRequirements": {"gpu": "optional"}},
            {},
            ('hostRequirements.gpu "optional" (no GPU unless runArgs --gpus)',),
        ),
        (
            {"hostRequirements": {"gpu": {"cores": 1000, "memory": "32gb"}}},
            {"gpu_count": 1},
            ("hostRequirements.gpu.cores", "hostRequirements.gpu.memory"),
        ),
        ({"hostRequirements": {"gpu": True}, "runArgs": ["--gpus", "all"]}, {"gpus_text": "all"}, ()),
        ({"runArgs": ["--gpus", "device=0,1"], "hostRequirements": {"gpu": True}}, {"gpus_text": "0,1"}, ()),
        (
            {"hostRequirements": {"cpus": 8, "memory": "64gb", "storage": "100gb"}},
            {},
            ("hostRequirements.cpus", "hostRequirements.memory", "hostRequirements.storage"),
        ),
    ],
)
def test_host_requirements_gpu_asks_for_one_gpu_unless_run_args_say_which(
    tmp_path: Path, keys: dict, values: dict, warnings: tuple[str, ...]
) -> None:
    got, got_warnings = _load(tmp_path, **keys)
    picked = {k: got[k] for k in ("gpus_text", "gpu_count") if k in got}
    assert (picked, got_warnings) == (values, warnings)


def test_gpu_lines_point_at_the_key_that_gave_them(tmp_path: Path) -> None:
    path = _write(tmp_path, _img('"hostRequirements": {"gpu": true}'))
    assert load(path)[0].where("gpu_count") == f"{path}:3"


# ---------------------------------------------------------------- mounts and the workspace


def test_bind_mounts_in_both_forms_map_and_others_are_named(tmp_path: Path) -> None:
    values, warnings = _load(
        tmp_path,
        mounts=[
            "source=/srv/data,target=/data,type=bind,readonly",
            "type=bind,src=/srv/models,dst=/models,ro=true,consistency=cached",
            '"source=/srv/a,b",target=/ab,type=bind',
            {"source": "/srv/x", "target": "/x", "type": "bind"},
            {"source": "/srv/y", "target": "/y", "type": "bind", "readonly": True},
            "source=node_modules,target=/w/node_modules,type=volume",
            "target=/tmp/scratch,type=tmpfs",
            "source=vol,target=/v",
            "source=/srv/p,target=/p,type=bind,bind-propagation=rslave",
        ],
    )
    assert values["mounts"] == (
        f"{tmp_path}/proj:/workspaces/proj",
        "/srv/data:/data:ro",
        "/srv/models:/models:ro",
        "/srv/a,b:/ab",
        "/srv/x:/x",
        "/srv/y:/y:ro",
        "/srv/p:/p",
    )
    assert warnings == (
        "mounts /w/node_modules (type=volume)",
        "mounts /tmp/scratch (type=tmpfs)",
        "mounts /v (type=volume)",
        "mounts /p (bind-propagation)",
    )


def test_the_default_workspace_mount_stays_at_workspaces_folder_whatever_workspace_folder_says(
    tmp_path: Path,
) -> None:
    values, _ = _load(tmp_path, workspaceFolder="/workspaces/proj/sub")
    assert values["workdir"] == "/workspaces/proj/sub"
    assert values["mounts"] == (f"{tmp_path}/proj:/workspaces/proj",)


def test_a_workspace_mount_replaces_the_default_and_an_empty_one_means_none(tmp_path: Path) -> None:
    values, _ = _load(
        tmp_path,
        workspaceMount="source=${localWorkspaceFolder},target=/workspace,type=bind,consistency=cached",
        workspaceFolder="/workspace",
    )
    assert (values["mounts"], values["workdir"]) == ((f"{tmp_path}/proj:/workspace",), "/workspace")
    values, _ = _load(tmp_path, workspaceMount="", workspaceFolder="/workspace")
    assert "mounts" not in values


def test_a_volume_workspace_mount_is_named_not_applied(tmp_path: Path) -> None:
    values, warnings = _load(tmp_path, workspaceMount="source=ws,target=/workspace,type=volume")
    assert "mounts" not in values
    assert warnings == ("workspaceMount /workspace (type=volume)",)


def test_the_workspace_of_a_single_file_is_its_own_folder(tmp_path: Path) -> None:
    path = _write(tmp_path / "My Repo", '{"image": "u"}', ".devcontainer.json")
    values = load(path)[0].values
    assert values["workdir"] == "/workspaces/My Repo"
    assert values["mounts"] == (f"{tmp_path}/My Repo:/workspaces/My Repo",)


def test_a_file_in_a_subfolder_of_dot_devcontainer_has_the_repository_as_workspace(tmp_path: Path) -> None:
    path = _write(tmp_path / "repo", '{"image": "u"}', ".devcontainer/gpu/devcontainer.json")
    assert load(path)[0].values["workdir"] == "/workspaces/repo"


# ---------------------------------------------------------------- env, ports, setup


def test_remote_env_wins_over_container_env_and_null_unsets(tmp_path: Path) -> None:
    values, warnings = _load(
        tmp_path,
        containerEnv={"A": "1", "B": "2", "C": 3, "D": True},
        remoteEnv={"B": "two", "A": None, "E": "5"},
    )
    assert values["envs"] == ("B=two", "C=3", "D=true", "E=5")
    assert warnings == ()


def test_an_env_value_that_needs_the_container_s_env_is_named_not_applied(tmp_path: Path) -> None:
    values, warnings = _load(
        tmp_path, remoteEnv={"PATH": "${containerEnv:PATH}:/opt/bin", "ID": "${devcontainerId}", "K": "v"}
    )
    assert values["envs"] == ("K=v",)
    assert warnings == ("remoteEnv.PATH (${containerEnv:PATH})", "remoteEnv.ID (${devcontainerId})")


def test_forward_ports_keep_the_box_s_own_ports_and_name_the_rest(tmp_path: Path) -> None:
    values, warnings = _load(
        tmp_path,
        forwardPorts=[8888, "localhost:6006", "127.0.0.1:5000", "db:5432", 8888, "3000"],
        appPort=[3000],
    )
    assert values["ports"] == ("8888", "6006", "5000", "3000")
    assert warnings == ("forwardPorts db:5432", "appPort")


def test_setup_runs_in_lifecycle_order_whatever_the_file_order(tmp_path: Path) -> None:
    values, warnings = _load(
        tmp_path,
        postStartCommand="nvidia-smi",
        postCreateCommand={
            "deps": "pip install -e .",
            "hooks": ["pre-commit", "install", "--hook-type", "x y"],
        },
        onCreateCommand=["bash", "-c", "echo 'it''s'"],
        updateContentCommand="make data",
        postAttachCommand="git status",
        initializeCommand="docker login",
    )
    assert values["setup"] == (
        shlex.join(["bash", "-c", "echo 'it''s'"]),
        "make data",
        "pip install -e .",
        "pre-commit install --hook-type 'x y'",
    )
    assert warnings == ("postStartCommand", "postAttachCommand", "initializeCommand")


def test_empty_commands_add_nothing(tmp_path: Path) -> None:
    values, _ = _load(tmp_path, postCreateCommand="  ", onCreateCommand=[], updateContentCommand={})
    assert "setup" not in values


def test_container_variables_in_setup_are_left_to_the_box_s_shell(tmp_path: Path) -> None:
    values, warnings = _load(
        tmp_path,
        onCreateCommand="echo ${containerEnv:HOME} ${HOME} $USER",
        postCreateCommand=["ls", "${containerEnv:HOME}/a b", "${containerWorkspaceFolder}"],
        updateContentCommand={"id": "echo ${devcontainerId}", "ok": "true"},
    )
    assert values["setup"] == (
        "echo ${HOME} ${HOME} $USER",
        "true",
        "ls \"${HOME}\"'/a b' /workspaces/proj",
    )
    assert warnings == ("updateContentCommand.id (${devcontainerId})",)


# ---------------------------------------------------------------- variables


def test_workspace_and_local_env_variables_are_substituted_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA", "/srv/data")
    monkeypatch.delenv("UNSET_FOR_DEVBOX", raising=False)
    monkeypatch.delenv("REGISTRY", raising=False)
    values, warnings = _load(
        tmp_path,
        image="${localEnv:REGISTRY:ghcr.io/acme}/${localWorkspaceFolderBasename}:latest",
        workspaceFolder="/work/${localWorkspaceFolderBasename}",
        mounts=["source=${localEnv:DATA},target=${containerWorkspaceFolder}/data,type=bind"],
        containerEnv={
            "ROOT": "${containerWorkspaceFolder}",
            "BASE": "${containerWorkspaceFolderBasename}",
            "LOCAL": "${localWorkspaceFolder}",
            "EMPTY": "${localEnv:UNSET_FOR_DEVBOX}",
            "OLD": "${env:DATA}",
            "PORTS": "${localEnv:UNSET_FOR_DEVBOX:a:b}",
        },
    )
    monkeypatch.setenv("REGISTRY", "x")  # read when the file is loaded, not later
    assert values["image"] == "ghcr.io/acme/proj:latest"
    assert values["workdir"] == "/work/proj"
    assert values["mounts"] == (f"{tmp_path}/proj:/workspaces/proj", "/srv/data:/work/proj/data")
    assert values["envs"] == (
        "ROOT=/work/proj",
        "BASE=proj",
        f"LOCAL={tmp_path}/proj",
        "EMPTY=",
        "OLD=/srv/data",
        "PORTS=a:b",
    )
    assert warnings == ()


def test_a_value_with_a_variable_devbox_cannot_know_is_named_not_applied(tmp_path: Path) -> None:
    values, warnings = _load(
        tmp_path,
        name="box-${devcontainerId}",
        mounts=["source=/a,target=/a-${devcontainerId},type=bind", "source=/b,target=/b,type=bind"],
        workspaceFolder="/w/${containerWorkspaceFolder}",
    )
    assert "name" not in values
    assert values["workdir"] == "/workspaces/proj"
    assert values["mounts"] == (f"{tmp_path}/proj:/workspaces/proj", "/b:/b")
    assert warnings == (
        "workspaceFolder (${containerWorkspaceFolder})",
        "name (${devcontainerId})",
        "mounts (${devcontainerId})",
    )


# ---------------------------------------------------------------- build and image


def test_build_paths_are_relative_to_the_file_and_the_context_defaults_to_its_folder(proj: Path) -> None:
    (proj / "docker").mkdir()
    (proj / "docker" / "gpu.Dockerfile").write_text("FROM x\n")
    path = _write(proj, json.dumps({"build": {"dockerfile": "../docker/gpu.Dockerfile"}}))
    assert load(path)[0].values["build"] == {
        "dockerfile": f"{proj}/docker/gpu.Dockerfile",
        "context": f"{proj}/.devcontainer",
        "args": (),
    }


def test_the_legacy_top_level_docker_file_and_context_still_work(proj: Path) -> None:
    path = _write(proj, json.dumps({"dockerFile": "Dockerfile", "context": ".."}))
    project, warnings = load(path)
    assert project.values["build"]["context"] == str(proj)
    assert project.where("build") == f"{path}:1"
    assert warnings == ()


def test_a_dockerfile_wins_over_an_image_as_in_the_devcontainer_cli(proj: Path) -> None:
    body = {"image": "u", "build": {"dockerfile": "Dockerfile", "target": "dev", "cacheFrom": "x"}}
    project, warnings = load(_write(proj, json.dumps(body)))
    assert "image" not in project.values
    assert project.values["build"]["dockerfile"] == f"{proj}/.devcontainer/Dockerfile"
    assert warnings == ("build.target", "build.cacheFrom", "image (the Dockerfile is used)")


def test_a_build_without_a_dockerfile_is_named_not_applied(tmp_path: Path) -> None:
    values, warnings = _load(tmp_path, build={"args": {"A": "1"}}, context="..")
    assert values["image"] == "ubuntu:24.04" and "build" not in values
    assert warnings == ("context", "build (no dockerfile)")


def test_a_top_level_spelling_that_build_overrides_is_named_not_applied(proj: Path) -> None:
    body = {"dockerFile": "Other", "context": "..", "build": {"dockerfile": "Dockerfile"}}
    project, warnings = load(_write(proj, json.dumps(body)))
    assert project.values["build"]["dockerfile"] == f"{proj}/.devcontainer/Dockerfile"
    assert project.values["build"]["context"] == str(proj)  # build has none: the top-level one is used
    assert warnings == ("dockerFile",)


# ---------------------------------------------------------------- find


def test_find_prefers_the_folder_form_and_the_nearest_folder(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert devcontainer.find(deep) is None
    single = _write(tmp_path, "{}", ".devcontainer.json")
    assert devcontainer.find(deep) == single
    folder_form = _write(tmp_path, "{}")
    assert devcontainer.find(deep) == folder_form
    nearer = _write(tmp_path / "a", "{}", ".devcontainer.json")
    assert devcontainer.find(deep) == nearer


def test_find_starts_from_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "{}")
    monkeypatch.chdir(tmp_path / ".devcontainer")
    assert devcontainer.find() == path


# ---------------------------------------------------------------- the warning line


def test_the_line_is_one_line_without_terminal_escapes_and_without_repeats() -> None:
    line = not_applied_line(["\x1b[31mred\x1b[0m", "two\nlines", "features", "features"])
    assert line == "devcontainer.json: not applied: red, two lines, features"


# ---------------------------------------------------------------- properties

_KEYS = [
    "name",
    "image",
    "build",
    "dockerFile",
    "context",
    "runArgs",
    "hostRequirements",
    "mounts",
    "workspaceMount",
    "workspaceFolder",
    "containerEnv",
    "remoteEnv",
    "forwardPorts",
    "postCreateCommand",
    "onCreateCommand",
    "features",
]
_WORDS = st.sampled_from(
    [
        "--gpus",
        "all",
        "device=0,1",
        "--shm-size",
        "-m",
        "8g",
        "--cpus",
        "source=/a,target=/b,type=bind",
        "${containerEnv:X}",
        "${devcontainerId}",
        "${localWorkspaceFolder}",
        "localhost:80",
        "Dockerfile",
        "gpu",
        "optional",
    ]
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12) | _WORDS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6) | _WORDS, inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=6), _JSON, max_size=5))
def test_any_json_object_gives_values_or_a_one_line_project_error(tmp_path: Path, data: dict) -> None:
    path = _write(tmp_path, json.dumps(data))
    try:
        project, warnings = load(path)
    except ProjectError as exc:
        assert "\n" not in str(exc)
        return
    line = not_applied_line(warnings)
    assert line is None or "\n" not in line
    assert all(project.where(k) != str(path) for k in project.values)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from('{}[]:,"/*\\ \n\tab1-' + "\x00"), max_size=40))
def test_any_text_is_read_or_a_project_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / ".devcontainer.json"
    path.write_text(text)
    with contextlib.suppress(ProjectError):
        load(path)


@given(_JSON)
def test_plain_json_passes_through_the_stripper_unchanged(value: object) -> None:
    text = json.dumps(value, indent=1)
    assert strip_jsonc(text) == text


@given(_JSON)
def test_comments_and_trailing_commas_anywhere_between_tokens_change_nothing(value: object) -> None:
    text = json.dumps(value, indent=1)
    noisy = re.sub(r"\n( *)([\]}])", r",/* ] */\n\1\2", text.replace(",\n", ", // x, y\n"))
    assert json.loads(strip_jsonc(noisy)) == value
