"""devbox.yaml parsing: every rule's error names the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from devbox import project, spec
from devbox.errors import UsageError
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
        ("name: a\nuser: root\n", 2, "user: --user root: a box never allows root logins"),
        ("user: Big Name\n", 1, "user: --user 'Big Name' is not a login name"),
        ("user: sshd\n", 1, "user: --user sshd: that is a system account"),
        ("user: [a]\n", 1, "user: must be a login name, not a list"),
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


def test_user_names_the_login_in_the_box(tmp_path: Path) -> None:
    assert project.load(_write(tmp_path, "user: vscode\n")).options == {"user": "vscode"}


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


# ---------------------------------------------------------------- ports


def test_ports_are_box_ports_or_box_to_local_pairs_deduplicated_in_order(tmp_path: Path) -> None:
    body = 'ports: [8888, "6006:16006", 8888, "22:22", 8888:59]\n'
    # 8888:59 unquoted is a base-60 number to YAML 1.1; devbox reads it as written.
    assert project.load(_write(tmp_path, body)).values["ports"] == ("8888", "6006:16006", "22", "8888:59")


def test_a_single_port_needs_no_list(tmp_path: Path) -> None:
    assert project.load(_write(tmp_path, "ports: 8888\n")).values["ports"] == ("8888",)


def test_ports_come_in_the_shape_devcontainer_forward_ports_gives(tmp_path: Path) -> None:
    from devbox import devcontainer

    folder = tmp_path / "dc"
    (folder / ".devcontainer").mkdir(parents=True)
    json_path = folder / ".devcontainer" / "devcontainer.json"
    json_path.write_text('{"image": "ubuntu:24.04", "forwardPorts": [8888, "localhost:6006"]}')
    from_json = devcontainer.load(json_path)[0].values["ports"]
    from_yaml = project.load(_write(tmp_path, "ports: [8888, 6006]\n")).values["ports"]
    assert from_json == from_yaml == ("8888", "6006")


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("ports:\n  - 8888\n  - abc\n", 3, "ports: 'abc' is not a port"),
        ("ports: [0]\n", 1, "ports: '0' is not a port"),
        ("ports: [65536]\n", 1, "ports: '65536' is not a port"),
        ('ports: ["8888:0"]\n', 1, "ports: '8888:0' is not a port"),
        ('ports: ["1:2:3"]\n', 1, "ports: '1:2:3' is not a port"),
        ('ports: ["localhost:8888"]\n', 1, "ports: 'localhost:8888' is not a port"),
        ("ports: [8888.5]\n", 1, "ports: '8888.5' is not a port"),
        ("ports: [!!int abc]\n", 1, "ports: 'abc' is not a port"),
        ("ports: [true]\n", 1, "ports: each entry must be a port or PORT:LOCAL, not true/false"),
        ("ports:\n  - {a: 1}\n", 2, "ports: each entry must be a port or PORT:LOCAL, not a mapping"),
        (
            'ports: [8888, "9:8888"]\n',
            1,
            "ports: '8888' and '9:8888' both forward to port 8888 on this machine",
        ),
    ],
)
def test_every_ports_problem_names_file_line_and_key(
    tmp_path: Path, body: str, line: int, message: str
) -> None:
    _assert_error(tmp_path, body, line, message)


def test_parse_port_is_the_one_rule_for_the_file_and_the_flag() -> None:
    assert spec.parse_port("06006:16006") == "6006:16006"
    assert spec.parse_ports(["8888", "8888:8888", "6006"]) == ("8888", "6006")
    with pytest.raises(UsageError, match="is not a port"):
        spec.parse_port("８８８８")  # fullwidth digits: int() takes them, a port does not


# ---------------------------------------------------------------- build


def _recipe(tmp_path: Path) -> Path:
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "Dockerfile").write_text("FROM ubuntu:24.04\n")
    return tmp_path / "docker" / "Dockerfile"


def test_build_as_a_path_builds_in_the_dockerfile_s_folder(tmp_path: Path) -> None:
    dockerfile = _recipe(tmp_path)
    values = project.load(_write(tmp_path, "build: docker/Dockerfile\n")).values
    assert values["build"] == {"dockerfile": str(dockerfile), "context": str(dockerfile.parent), "args": ()}
    assert "image" not in values


def test_build_as_a_mapping_resolves_against_the_file_and_keeps_args_as_written(tmp_path: Path) -> None:
    dockerfile = _recipe(tmp_path)
    body = (
        "build:\n  dockerfile: ./docker/Dockerfile\n  context: .\n  args: {CUDA: 12.10, SLIM: true, V: x}\n"
    )
    assert project.load(_write(tmp_path, body)).values["build"] == {
        "dockerfile": str(dockerfile),
        "context": str(tmp_path),
        "args": ("CUDA=12.10", "SLIM=true", "V=x"),
    }


def test_build_with_only_a_context_uses_its_dockerfile_as_docker_build_does(tmp_path: Path) -> None:
    dockerfile = _recipe(tmp_path)
    build = project.load(_write(tmp_path, "build: {context: docker}\n")).values["build"]
    assert (build["dockerfile"], build["context"]) == (str(dockerfile), str(dockerfile.parent))


def test_build_comes_in_the_shape_devcontainer_build_gives(tmp_path: Path) -> None:
    from devbox import devcontainer

    _recipe(tmp_path)
    json_path = tmp_path / "devcontainer.json"
    json_path.write_text('{"build": {"dockerfile": "docker/Dockerfile", "context": ".", "args": {"A": "1"}}}')
    from_json = devcontainer.load(json_path)[0].values["build"]
    yaml_body = "build: {dockerfile: docker/Dockerfile, context: ., args: {A: 1}}\n"
    assert project.load(_write(tmp_path, yaml_body)).values["build"] == from_json


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("build: nope/Dockerfile\n", 1, "build: Dockerfile '{tmp}/nope/Dockerfile' does not exist"),
        ("build: docker\n", 1, "build: Dockerfile '{tmp}/docker' is not a file"),
        (
            "build:\n  dockerfile: docker/Dockerfile\n  context: nope\n",
            3,
            "build context '{tmp}/nope' is not",
        ),
        ("build: {context: docker/Dockerfile}\n", 1, "build: build context '{tmp}/docker/Dockerfile' is not"),
        ("build:\n  context: .\n", 2, "build: Dockerfile '{tmp}/Dockerfile' does not exist"),
        ("build:\n  dockerfile: docker/Dockerfile\n  contxt: .\n", 3, "build: unknown key 'contxt'"),
        ("build: {args: {A: b}}\n", 1, "build: needs a dockerfile (or a context holding one)"),
        ("build: {dockerfile: ''}\n", 1, "build: dockerfile is empty"),
        ("build: 3\n", 1, "build: dockerfile must be a path, not a number"),
        (
            "build:\n  dockerfile: docker/Dockerfile\n  args: [A=1]\n",
            3,
            "build: args must map names to values",
        ),
        (
            "build:\n  context: docker\n  args:\n    A:\n",
            4,
            "build: args.A must be text or a number, not empty",
        ),
        ("build:\n  context: docker\n  args: {'A B': 1}\n", 3, "build: 'A B' is not a build argument name"),
        ("build:\n  context: docker\n  args:\n    A: 1\n    A: 2\n", 5, "build.args.A: duplicate key"),
        (
            "image: ubuntu:24.04\nbuild: docker/Dockerfile\n",
            2,
            "build: both image (line 1) and build are given",
        ),
        (
            "build: docker/Dockerfile\nimage: ubuntu:24.04\n",
            2,
            "image: both build (line 1) and image are given",
        ),
    ],
)
def test_every_build_problem_names_file_line_and_key(
    tmp_path: Path, body: str, line: int, message: str
) -> None:
    _recipe(tmp_path)
    _assert_error(tmp_path, body, line, message.format(tmp=tmp_path))


# ---------------------------------------------------------------- what YAML itself can do


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("cpus: !!int abc\n", 1, "cpus: cannot read 'abc' as !!int"),
        ("cpus: !!float x\n", 1, "cpus: cannot read 'x' as !!float"),
        ("gpu_count: !!timestamp x\n", 1, "gpu_count: cannot read 'x' as !!timestamp"),
        ("memory: !!python/name:os.system x\n", 1, "memory: cannot read 'x' as !!python/name:os.system"),
        ("jobs:\n  t:\n    command: x\n    gpus:\n      - !!int b\n", 5, "jobs: cannot read 'b' as !!int"),
        (f"memory: {'9' * 5000}\n", 1, "memory: cannot read '9999"),
    ],
)
def test_a_value_yaml_cannot_read_is_an_error_on_its_line(
    tmp_path: Path, body: str, line: int, message: str
) -> None:
    _assert_error(tmp_path, body, line, message)


def test_an_error_about_a_binary_value_names_the_place_once(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: !!binary aGVsbG8=\n")
    with pytest.raises(ProjectError) as caught:
        project.load(path)
    assert caught.value.message == f"{path}:1: name: must be text, not bytes"


def test_a_binary_env_value_is_refused_not_written_as_python_bytes(tmp_path: Path) -> None:
    _assert_error(tmp_path, "env:\n  A: !!binary aGVsbG8=\n", 2, "env.A: must be text or a number")


def _nested_aliases(count: int) -> list[str]:
    """List items, each one 40 lists deep around the one before it."""
    return [f"      - &a{i} {'[' * 40}{f'*a{i - 1}' if i else 1}{']' * 40}\n" for i in range(count)]


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("name: " + "[" * 10000 + "\n", 1),
        ("name:\n" + "".join("  " * i + "-\n" for i in range(60)), 51),
        # Each alias repeats its anchor's levels: a short file can nest as deep as it likes.
        ("jobs:\n  t:\n    command: x\n    cwd:\n" + "".join(_nested_aliases(30)), 6),
    ],
)
def test_nesting_too_deep_is_a_yaml_error_on_its_line_not_a_recursion_error(
    tmp_path: Path, body: str, line: int
) -> None:
    _assert_error(tmp_path, body, line, "not valid YAML: nested more than 50 levels deep")


@pytest.mark.parametrize("body", ["env: &x {A: *x}\n", "jobs: {t: {command: x, gpus: &x [*x]}}\n"])
def test_an_alias_inside_its_own_anchor_is_a_yaml_error(tmp_path: Path, body: str) -> None:
    _assert_error(tmp_path, body, 1, "not valid YAML: an alias inside its own anchor")


def test_anchors_shared_between_keys_still_work(tmp_path: Path) -> None:
    proj = project.load(_write(tmp_path, "env: &common {A: 1}\njobs:\n  t: {command: x, env: *common}\n"))
    assert (proj.values["envs"], proj.jobs["t"].env) == (("A=1",), ("A=1",))


def test_cpus_with_hundreds_of_digits_is_an_error_not_an_overflow(tmp_path: Path) -> None:
    _assert_error(tmp_path, f"cpus: {'9' * 400}\n", 1, "cpus: is far more CPUs than any machine has")


def test_env_numbers_are_kept_as_written(tmp_path: Path) -> None:
    values = project.load(_write(tmp_path, "env: {CUDA: 12.10, N: 007, ON: yes}\n")).values
    assert values["envs"] == ("CUDA=12.10", "N=007", "ON=true")


# ---------------------------------------------------------------- devbox init


def test_the_starter_mentions_ports_and_build_and_loads_with_every_comment_removed(tmp_path: Path) -> None:
    text = project.write_starter(tmp_path).read_text()
    assert "\n# ports: [8888, 6006]" in text
    assert "\n# build:" in text
    (tmp_path / "Dockerfile").write_text("FROM ubuntu:24.04\n")
    (tmp_path / "data").mkdir()
    # Every key the starter shows, uncommented, is one devbox takes (build: instead of image:).
    _, keys = text.split("\nname:")
    body = "name:" + "\n".join(
        line.removeprefix("# ") for line in keys.splitlines() if not line.startswith("image:")
    )
    proj = project.load(_write(tmp_path, body + "\n"))
    assert proj.values["ports"] == ("8888", "6006")
    assert proj.values["build"] == {
        "dockerfile": str(tmp_path / "Dockerfile"),
        "context": str(tmp_path),
        "args": ("TORCH_VERSION=2.4.1",),
    }
    assert set(proj.lines) >= set(project._READERS) - {"gpus", "share_gpus", "image"}


def _assert_error(tmp_path: Path, body: str, line: int, message: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ProjectError) as caught:
        project.load(path)
    assert caught.value.message.startswith(f"{path}:{line}: "), caught.value.message
    assert message in caught.value.message, caught.value.message
    assert caught.value.exit_code == 2


# ---------------------------------------------------------------- review: values as written, bombs, names


def test_job_env_values_are_kept_as_written_like_the_top_level_env(tmp_path: Path) -> None:
    body = "jobs:\n  show:\n    command: env\n    env: {CUDA: 12.10, FLAG: true, ZIP: 01234}\n"
    job = project.load(_write(tmp_path, body)).jobs["show"]
    assert job.env == ("CUDA=12.10", "FLAG=true", "ZIP=01234")


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("env: {NULLV: }", "jobs.t.env.NULLV: must be text or a number"),
        ("env: {L: [1, 2]}", "jobs.t.env.L: must be text or a number"),
        ("cwd: [/a]", "jobs.t: cwd must be text or a number, not a list"),
        ("gpus: {a: 1}", "jobs.t: gpus must be text or a number, not a mapping"),
    ],
)
def test_a_job_field_that_is_not_a_scalar_is_refused(tmp_path: Path, field: str, message: str) -> None:
    with pytest.raises(ProjectError) as caught:
        project.load(_write(tmp_path, f"jobs:\n  t: {{command: x, {field}}}\n"))
    assert message in caught.value.message


def test_an_alias_bomb_in_a_job_is_refused_at_once_without_building_it(tmp_path: Path) -> None:
    import resource
    import time

    levels = ["B0: &a0 [" + ", ".join(["x" * 50] * 2) + "]"]
    levels += [f"B{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    body = "jobs:\n  t:\n    command: env\n    env:\n" + "".join(f"      {line}\n" for line in levels)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    with pytest.raises(ProjectError) as caught:
        project.load(_write(tmp_path, body))
    assert "jobs.t.env.B0: must be text or a number" in caught.value.message
    assert time.monotonic() - start < 5  # built, it is 10^8 strings: minutes and gigabytes
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


def test_job_gpus_take_the_list_form_of_the_top_level(tmp_path: Path) -> None:
    job = project.load(_write(tmp_path, "jobs:\n  g: {command: x, gpus: [0, 1]}\n")).jobs["g"]
    assert job.gpus == "0,1"


def test_argv_items_are_kept_as_written(tmp_path: Path) -> None:
    job = project.load(_write(tmp_path, "jobs:\n  t: [python, x.py, --lr, 0.10, --flag, yes]\n")).jobs["t"]
    assert job.argv == ("python", "x.py", "--lr", "0.10", "--flag", "yes")


def test_setup_commands_are_taken_as_written_even_where_yaml_reads_a_boolean(tmp_path: Path) -> None:
    proj = project.load(_write(tmp_path, "setup: [echo a, false, 'true', 1]\n"))
    assert proj.setup == ("echo a", "false", "true", "1")
    with pytest.raises(ProjectError) as caught:
        project.load(_write(tmp_path, "setup:\n  - echo a\n  -\n"))
    assert caught.value.message.endswith("devbox.yaml:3: setup: each entry must be a shell command")


@pytest.mark.parametrize("folder", ["2024", "yes", "null", "0x1f", "2024-01-01", "on"])
def test_init_writes_a_name_that_reads_back_whatever_the_folder_is_called(
    tmp_path: Path, folder: str
) -> None:
    (tmp_path / folder).mkdir()
    proj = project.load(project.write_starter(tmp_path / folder))
    assert proj.box_name == spec.default_name(tmp_path / folder)


@pytest.mark.parametrize(
    ("written", "name"), [("2024", "2024"), ("yes", "yes"), ("2024-01-01", "2024-01-01")]
)
def test_a_name_yaml_reads_as_a_number_bool_or_date_is_the_name_written(
    tmp_path: Path, written: str, name: str
) -> None:
    assert project.load(_write(tmp_path, f"name: {written}\n")).box_name == name


def test_the_box_name_comes_from_the_project_folder_not_the_current_one(tmp_path: Path) -> None:
    root = tmp_path / "My_Proj"
    (root / "src").mkdir(parents=True)
    path = _write(root, "image: x\n")
    assert project.find(root / "src") == path
    assert project.load(path).box_name == "my-proj"


def test_a_dangling_devbox_yaml_is_found_and_reported_not_skipped(tmp_path: Path) -> None:
    (tmp_path / "devbox.yaml").symlink_to(tmp_path / "gone.yaml")
    assert project.find(tmp_path) == tmp_path / "devbox.yaml"
    with pytest.raises(ProjectError, match="cannot read"):
        project.load(tmp_path / "devbox.yaml")


def test_the_nearest_project_file_wins_whichever_kind(tmp_path: Path) -> None:
    from devbox import devcontainer

    names = (*project.FILENAMES, *devcontainer.FILENAMES)
    _write(tmp_path, "image: x\n")
    inner = tmp_path / "svc"
    (inner / ".devcontainer").mkdir(parents=True)
    (inner / ".devcontainer" / "devcontainer.json").write_text('{"image": "y"}')
    assert project.find(inner, names) == inner / ".devcontainer" / "devcontainer.json"
    _write(inner, "image: z\n")  # in one folder, devbox.yaml first
    assert project.find(inner, names) == inner / "devbox.yaml"


def test_typed_build_args_and_context_apply_to_the_file_s_build(tmp_path: Path) -> None:
    from devbox.cli import _typed_build

    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "ctx").mkdir()
    body = "build: {dockerfile: docker/Dockerfile, args: {X: file, Y: kept}}\n"
    proj = project.load(_write(tmp_path, body))
    built = _typed_build(None, str(tmp_path / "ctx"), ("X=typed",), proj)
    dockerfile = str(tmp_path / "docker" / "Dockerfile")
    assert built == spec.Build(dockerfile, str(tmp_path / "ctx"), ("Y=kept", "X=typed"))
    with pytest.raises(UsageError, match="is not a folder"):
        _typed_build(None, str(tmp_path / "nonexistent"), (), proj)
    with pytest.raises(UsageError, match="apply to a build, and none is given"):
        _typed_build(None, None, ("X=1",), project.load(_write(tmp_path, "image: x\n")))
