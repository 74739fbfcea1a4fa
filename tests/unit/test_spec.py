"""BoxSpec inputs: box names, mounts, env, sizes, CPUs, the login user and the spec fingerprint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devbox.errors import UsageError
from devbox.gpus import GpuSelection
from devbox.spec import (
    DEFAULT_SHM,
    NAME_RE,
    BoxSpec,
    LoginUser,
    Mount,
    default_name,
    from_flags,
    local_user,
    parse_cpus,
    parse_env,
    parse_mount,
    parse_size,
    validate_name,
)

from .conftest import usage_error

# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "0", "mybox", "gpu-box-2", "9lives", "a" * 63])
def test_valid_box_names_are_returned_unchanged(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["MyBox", "my_box", "-box", "a" * 64, "", "my box", "box.1", "bøx", "box\n", "box/1"],
)
def test_invalid_box_names_are_usage_errors_quoting_the_name(name: str) -> None:
    err = usage_error(validate_name, name)
    assert err.message == f"invalid box name {name!r}"
    assert "1-63 lowercase letters" in (err.hint or "")


@pytest.mark.parametrize(
    ("dirname", "expected"),
    [
        ("My_Project", "my-project"),
        ("myproject", "myproject"),
        ("---", "box"),
        ("__init__", "init"),
        ("Ünïcödé Prøject", "n-c-d-pr-ject"),
        ("数据", "box"),
        ("repo.v2 (copy)", "repo-v2-copy"),
        ("a--b", "a--b"),
    ],
)
def test_default_name_makes_the_directory_name_valid(dirname: str, expected: str) -> None:
    name = default_name(Path("/work") / dirname)
    assert name == expected
    assert validate_name(name) == name


def test_default_name_of_a_long_directory_is_cut_to_63_without_trailing_dash() -> None:
    name = default_name(Path("/src") / ("x" * 62 + "_" + "y" * 37))
    assert name == "x" * 62
    assert NAME_RE.fullmatch(name)
    assert len(default_name(Path("/src") / ("z" * 100))) == 63


def test_default_name_of_root_is_box() -> None:
    assert default_name(Path("/")) == "box"


def test_default_name_uses_the_current_directory_when_none_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "Some_Repo"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert default_name() == "some-repo"


@given(st.text(max_size=120))
def test_default_name_of_any_directory_name_is_a_valid_box_name(text: str) -> None:
    name = default_name(Path("/base") / text.replace("\0", ""))
    assert NAME_RE.fullmatch(name)
    assert len(name) <= 63


# --- mounts ----------------------------------------------------------------------------------


def test_mount_source_tilde_expands_from_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_mount("~/data:/workspace/data") == Mount(str(tmp_path / "data"), "/workspace/data", False)


def test_mount_is_read_write_unless_ro(tmp_path: Path) -> None:
    src = str(tmp_path)
    assert parse_mount(f"{src}:/w").read_only is False
    assert parse_mount(f"{src}:/w:rw").read_only is False
    assert parse_mount(f"{src}:/w:ro").read_only is True


def test_mount_str_round_trips_through_parse_mount(tmp_path: Path) -> None:
    mount = parse_mount(f"{tmp_path}:/w:ro")
    assert str(mount) == f"{tmp_path}:/w:ro"
    assert parse_mount(str(mount)) == mount


def test_mount_paths_are_normalized(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    mount = parse_mount(f"{tmp_path}/./a/../a/:/workspace//data/./x/..")
    assert mount == Mount(str(tmp_path / "a"), "/workspace/data", False)


def test_missing_mount_source_is_refused_naming_the_expanded_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    err = usage_error(parse_mount, "~/nope:/data")
    assert err.message == f"mount source {tmp_path}/nope does not exist"


@pytest.mark.parametrize("source", ["data", "./data", "../data"])
def test_relative_mount_source_is_refused(source: str) -> None:
    err = usage_error(parse_mount, f"{source}:/data")
    assert err.message == f"mount source {source!r} is not an absolute path"


def test_relative_mount_target_is_refused(tmp_path: Path) -> None:
    err = usage_error(parse_mount, f"{tmp_path}:data")
    assert err.message == "mount target 'data' is not an absolute path"


@pytest.mark.parametrize(
    "text",
    ["/a:/b:/c:/d", "/a:/b:ro:x", "/a:/b:RO", "/a:/b:", "/a", ":/b", "/a:", "", "/a:/b:rx"],
)
def test_malformed_mount_is_refused_with_the_syntax_hint(text: str) -> None:
    err = usage_error(parse_mount, text)
    assert err.message == f"invalid --mount {text!r}"
    assert "SRC:DST[:ro|rw]" in (err.hint or "")


# --- env, sizes, cpus ------------------------------------------------------------------------


def test_env_value_keeps_every_equals_sign_after_the_first() -> None:
    assert parse_env("OPTS=a=b=c") == ("OPTS", "a=b=c")
    assert parse_env("EMPTY=") == ("EMPTY", "")
    assert parse_env("_x1=y") == ("_x1", "y")


@pytest.mark.parametrize("text", ["NOVALUE", "=x", "1ABC=x", "A-B=x", "A B=x", "ÄB=x", ""])
def test_malformed_env_is_refused(text: str) -> None:
    err = usage_error(parse_env, text)
    assert err.message == f"invalid --env {text!r}"
    assert err.hint == "use NAME=VALUE"


@pytest.mark.parametrize("text", ["DEVBOX_USER=root", "DEVBOX_=1", "DEVBOX_UID=0"])
def test_devbox_prefixed_env_is_reserved(text: str) -> None:
    err = usage_error(parse_env, text)
    assert err.message == f"--env {text.split('=')[0]} is reserved for devbox"


@pytest.mark.parametrize(
    ("text", "expected"), [("8g", "8g"), ("16G", "16g"), ("512m", "512m"), ("1.5g", "1.5g"), ("1024", "1024")]
)
def test_sizes_are_accepted_and_lowercased(text: str, expected: str) -> None:
    assert parse_size(text, "--shm-size") == expected


@pytest.mark.parametrize("text", ["", "g", "8gb", "-1g", "8 g", "1.g", ".5g", "8x", "lots", "1t"])
def test_malformed_size_is_refused_naming_the_flag(text: str) -> None:
    err = usage_error(parse_size, text, "--memory")
    assert err.message == f"invalid --memory {text!r}"


@pytest.mark.parametrize(
    ("text", "flag"), [("99999999999999999999g", "--memory"), ("2000000g", "--shm-size")]
)
def test_a_size_past_any_machine_is_refused_before_docker_s_int64_overflows(text: str, flag: str) -> None:
    err = usage_error(parse_size, text, flag)
    assert err.message == f"{flag} {text} is larger than any machine's memory"


@pytest.mark.parametrize("text", ["1k", "1b", "5m", "6291455"])
def test_memory_below_docker_s_least_limit_is_refused_up_front(text: str) -> None:
    err = usage_error(parse_size, text, "--memory")
    assert err.message == f"--memory {text} is below Docker's least limit, 6m"


def test_memory_of_docker_s_least_limit_and_a_small_shm_size_are_accepted() -> None:
    assert parse_size("6m", "--memory") == "6m"
    assert parse_size("6291456", "--memory") == "6291456"
    assert parse_size("1k", "--shm-size") == "1k"


@pytest.mark.parametrize("value", [65537.0, 1e10, 1e308])
def test_more_cpus_than_any_machine_are_refused_not_overflowed(value: float) -> None:
    err = usage_error(parse_cpus, value)
    assert err.message == f"--cpus {value:g} is more than any machine has"


def test_default_shm_size_parses() -> None:
    assert parse_size(DEFAULT_SHM, "--shm-size") == DEFAULT_SHM


@pytest.mark.parametrize("value", [0.5, 1.0, 8.0, 128.0])
def test_positive_cpus_are_accepted(value: float) -> None:
    assert parse_cpus(value) == value


@pytest.mark.parametrize("value", [0.0, -0.0, -1.0, -0.5, 0.001, float("nan"), float("inf")])
def test_zero_negative_tiny_or_non_finite_cpus_are_refused(value: float) -> None:
    err = usage_error(parse_cpus, value)
    assert err.message == f"invalid --cpus {value}"


# --- login user ------------------------------------------------------------------------------


def test_login_user_is_dev_1000_for_root_and_the_caller_otherwise() -> None:
    if os.getuid() == 0:
        assert local_user() == LoginUser("dev", 1000, 1000)
    else:
        user = local_user()
        assert (user.uid, user.gid) == (os.getuid(), os.getgid())
        assert user.name != "root"


# --- fingerprint -----------------------------------------------------------------------------


def make_spec(tmp_path: Path, **changes: object) -> BoxSpec:
    (tmp_path / "a").mkdir(exist_ok=True)
    (tmp_path / "b").mkdir(exist_ok=True)
    values: dict[str, object] = {
        "name": "box",
        "image": "ubuntu:24.04",
        "user": LoginUser("alice", 1001, 1001),
        "gpus": GpuSelection.of([0, 1]),
        "mounts": (parse_mount(f"{tmp_path}/a:/a"), parse_mount(f"{tmp_path}/b:/b:ro")),
        "env": (("A", "1"), ("B", "2")),
    }
    values.update(changes)
    return BoxSpec(**values)  # type: ignore[arg-type]


def test_fingerprint_ignores_the_order_of_mounts_and_env(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    shuffled = make_spec(tmp_path, mounts=spec.mounts[::-1], env=spec.env[::-1])
    assert spec.fingerprint() == shuffled.fingerprint()


def test_fingerprint_is_the_same_for_equal_specs_built_twice(tmp_path: Path) -> None:
    assert make_spec(tmp_path).fingerprint() == make_spec(tmp_path).fingerprint()


@pytest.mark.parametrize(
    "change",
    [
        {"gpus": GpuSelection.of([0])},
        {"gpus": GpuSelection.none()},
        {"gpus": GpuSelection.all()},
        {"image": "ubuntu:22.04"},
        {"user": LoginUser("alice", 1002, 1001)},
        {"env": (("A", "1"), ("B", "3"))},
        {"shm_size": "16g"},
        {"memory": "64g"},
        {"cpus": 4.0},
        {"workdir": "/workspace"},
        {"sudo": False},
    ],
)
def test_fingerprint_changes_with_options_that_shape_the_container(
    tmp_path: Path, change: dict[str, object]
) -> None:
    assert make_spec(tmp_path, **change).fingerprint() != make_spec(tmp_path).fingerprint()


def test_fingerprint_changes_when_a_mount_becomes_read_only(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    ro = make_spec(tmp_path, mounts=(parse_mount(f"{tmp_path}/a:/a:ro"), spec.mounts[1]))
    assert ro.fingerprint() != spec.fingerprint()


def test_fingerprint_does_not_depend_on_the_box_name(tmp_path: Path) -> None:
    assert make_spec(tmp_path, name="other").fingerprint() == make_spec(tmp_path).fingerprint()


def test_box_home_is_under_home_named_for_the_login_user(tmp_path: Path) -> None:
    assert make_spec(tmp_path).home == "/home/alice"


# --- from_flags: what a front end hands over ---------------------------------------------------


def test_from_flags_builds_a_spec_with_defaults(tmp_path: Path) -> None:
    spec = from_flags(name=None, image="img", cwd=tmp_path / "My_Project")
    assert spec.name == "my-project"
    assert spec.gpus.kind == "none" and spec.shm_size == DEFAULT_SHM and spec.sudo


def test_from_flags_refuses_gpus_together_with_gpu_count() -> None:
    with pytest.raises(UsageError, match="cannot be used together"):
        from_flags(name="x", image="img", gpus_text="0", gpu_count=1)


@pytest.mark.parametrize(
    "target",
    [
        "/",
        "/home",
        "/home/dev",
        "/etc",
        "/etc/devbox",
        "/etc/devbox/keys",
        "/run",
        "/run/devbox",
        "/usr/local",
    ],
)
def test_mounting_over_the_home_root_or_devbox_files_is_refused(tmp_path: Path, target: str) -> None:
    with pytest.raises(UsageError, match=f"cannot mount over {target}"):
        from_flags(name="x", image="img", mounts=[f"{tmp_path}:{target}"])


def test_two_mounts_on_one_target_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="two --mount flags target /data"):
        from_flags(name="x", image="img", mounts=[f"{tmp_path}:/data", f"{tmp_path}:/data:ro"])


def test_relative_workdir_is_refused_and_absolute_one_normalized() -> None:
    with pytest.raises(UsageError, match="not an absolute path"):
        from_flags(name="x", image="img", workdir="work")
    assert from_flags(name="x", image="img", workdir="/srv//work/").workdir == "/srv/work"


def test_user_renames_the_login_and_keeps_its_uid_and_gid() -> None:
    own = from_flags(name="x", image="img")
    named = from_flags(name="x", image="img", user="vscode")
    assert named.user == LoginUser("vscode", own.user.uid, own.user.gid)
    assert named.home == "/home/vscode"
    assert named.fingerprint()["user"] == ["vscode", own.user.uid, own.user.gid]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("root", "never allows root logins"),
        ("Alice", "is not a login name"),
        ("a b", "is not a login name"),
        ("", "is not a login name"),
        ("x" * 33, "is not a login name"),
        ("sshd", "system account"),
        ("nobody", "system account"),
    ],
)
def test_a_user_the_box_cannot_log_in_as_is_refused(name: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        from_flags(name="x", image="img", user=name)


def test_nvidia_visible_devices_cannot_be_set_by_env() -> None:
    with pytest.raises(UsageError, match="bypass GPU allocation"):
        parse_env("NVIDIA_VISIBLE_DEVICES=all")
