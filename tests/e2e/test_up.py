"""`devbox up` end to end: real engine, real sshd, real paramiko, driven as an ordinary user."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess

import paramiko
import pytest
from devbox.keys.keypair import generate_ed25519

from .conftest import User, box_container, devbox_containers


@pytest.fixture(scope="module")
def box(user: User, client) -> dict:
    """One GPU box shared by the read-only checks below (an `up` costs seconds)."""
    data = user.home / "data-ro"
    data.mkdir()
    (data / "hello.txt").write_text("hi\n")
    os.chown(data, user.uid, user.gid)
    work = user.home / "work"
    work.mkdir()
    os.chown(work, user.uid, user.gid)
    user.ok(
        "up",
        "shared",
        "--gpus",
        "0,1",
        "--mount",
        f"{data}:/workspace/data:ro",
        "--mount",
        f"{work}:/workspace/work",
        "--env",
        "FOO=bar baz",
    )
    info = json.loads(user.ok("ls", "--json").stdout)
    return next(b for b in info if b["name"] == "shared")


def test_up_logs_in_as_non_root_user_with_matching_uid_gid(user: User, box: dict) -> None:
    ssh = user.paramiko(box)
    try:
        _, out, _ = ssh.exec_command("id -u; id -g; id -un")
        uid, gid, name = out.read().decode().split()
    finally:
        ssh.close()
    assert int(uid) == user.uid != 0
    assert int(gid) == user.gid
    assert name == user.name == box["user"]


def _transport(port: int) -> paramiko.Transport:
    t = paramiko.Transport(("127.0.0.1", port))
    t.start_client(timeout=10)
    return t


def test_password_and_keyboard_interactive_auth_are_refused(user: User, box: dict) -> None:
    t = _transport(box["port"])
    try:
        with pytest.raises(paramiko.BadAuthenticationType) as exc:
            t.auth_password(user.name, "anything")
        assert exc.value.allowed_types == ["publickey"]
        with pytest.raises(paramiko.BadAuthenticationType):
            t.auth_interactive(user.name, lambda *a: ["x"])
    finally:
        t.close()


def test_root_login_is_refused_even_with_the_right_key(user: User, box: dict) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        user.paramiko(box, username="root")


def test_another_key_is_refused(user: User, box: dict) -> None:
    other = generate_ed25519("someone-else").private_openssh.decode()
    with pytest.raises(paramiko.AuthenticationException):
        user.paramiko(box, key=paramiko.Ed25519Key.from_private_key(io.StringIO(other)))


def test_gpu_box_sees_exactly_its_gpus_in_ssh_sessions(user: User, box: dict, client) -> None:
    assert box["gpus"] == ["0", "1"]
    requests = box_container(client, "shared").attrs["HostConfig"]["DeviceRequests"]
    assert [(r["Driver"], r["DeviceIDs"], r["Capabilities"]) for r in requests] == [
        ("nvidia", ["0", "1"], [["gpu"]])
    ]
    proc = user.ssh("devbox-shared", "echo $NVIDIA_VISIBLE_DEVICES; echo $FOO")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["0,1", "bar baz"]


def test_box_without_gpus_gets_void(user: User, client, name: str) -> None:
    user.ok("up", name)
    env = box_container(client, name).attrs["Config"]["Env"]
    assert "NVIDIA_VISIBLE_DEVICES=void" in env
    proc = user.ssh(f"devbox-{name}", "echo $NVIDIA_VISIBLE_DEVICES")
    assert proc.stdout.strip() == "void"
    user.ok("rm", name, "--purge")


def test_ro_mount_is_read_only_and_rw_mount_files_belong_to_the_host_user(user: User, box: dict) -> None:
    proc = user.ssh(
        "devbox-shared", "cat /workspace/data/hello.txt; touch /workspace/data/x 2>&1; echo rc=$?"
    )
    assert proc.stdout.startswith("hi\n")
    assert "Read-only file system" in proc.stdout and "rc=1" in proc.stdout
    proc = user.ssh("devbox-shared", "echo made-in-box > /workspace/work/out.txt")
    assert proc.returncode == 0, proc.stderr
    st = (user.home / "work" / "out.txt").stat()
    assert (st.st_uid, st.st_gid) == (user.uid, user.gid)


def test_port_is_bound_to_loopback_only_and_survives_docker_restart(user: User, box: dict, client) -> None:
    c = box_container(client, "shared")
    bindings = c.attrs["NetworkSettings"]["Ports"]["22/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
    assert int(bindings[0]["HostPort"]) == box["port"]
    c.restart(timeout=5)
    c.reload()
    assert int(c.attrs["NetworkSettings"]["Ports"]["22/tcp"][0]["HostPort"]) == box["port"]
    user.ok("start", "shared")  # waits until sshd answers again
    assert user.ssh("devbox-shared", "true").returncode == 0


def test_home_survives_stop_start_and_rm_up(user: User, client, name: str) -> None:
    user.ok("up", name)
    assert user.ssh(f"devbox-{name}", "echo kept > ~/note.txt").returncode == 0
    user.ok("stop", name)
    assert box_container(client, name).status == "exited"
    user.ok("start", name)
    assert user.ssh(f"devbox-{name}", "cat ~/note.txt").stdout == "kept\n"
    user.ok("rm", name)
    assert not devbox_containers(client, name)
    user.ok("up", name)
    assert user.ssh(f"devbox-{name}", "cat ~/note.txt").stdout == "kept\n"
    user.ok("rm", name, "--purge")
    assert not client.volumes.list(filters={"label": f"devbox.name={name}"})


def test_bare_base_gets_sshd_installed_and_second_up_does_not_build(
    user: User, client, env, derived_image, name: str
) -> None:
    # A base of its own (new image ID), so no layer built earlier can be reused by accident.
    base = derived_image(f"LABEL test={name}", base=env["DEVBOX_TEST_MIN_IMAGE"])
    first = user.ok("up", name, "--image", base)
    assert "Building the devbox layer" in first.stderr
    assert "devbox: installing openssh-server tmux sudo" in first.stderr
    layer = box_container(client, name).image.id
    second = user.ok("up", name + "b", "--image", base)
    assert "Building" not in second.stderr
    assert box_container(client, name + "b").image.id == layer
    assert user.ssh(f"devbox-{name}b", "command -v sshd tmux sudo").returncode == 0
    user.ok("rm", name, "--purge")
    user.ok("rm", name + "b", "--purge")


def test_up_again_on_running_box_is_idempotent(user: User, box: dict) -> None:
    proc = user.ok(
        "up",
        "shared",
        "--gpus",
        "0,1",
        "--mount",
        f"{user.home}/data-ro:/workspace/data:ro",
        "--mount",
        f"{user.home}/work:/workspace/work",
        "--env",
        "FOO=bar baz",
    )
    assert "Ready shared" in proc.stdout


BAD_INPUTS = [
    (["up", "Bad_Name"], 2, "invalid box name"),
    (["up", "x", "--gpus", "0,,1"], 2, "invalid GPU selection"),
    (["up", "x", "--gpus", "3-1"], 2, "reversed"),
    (["up", "x", "--mount", "relative/path:/data"], 2, "not an absolute path"),
    (["up", "x", "--mount", "/does/not/exist:/data"], 2, "does not exist"),
    (["up", "x", "--mount", "/tmp"], 2, "invalid --mount"),
    (["up", "x", "--env", "NOEQUALS"], 2, "invalid --env"),
    (["up", "x", "--shm-size", "lots"], 2, "invalid --shm-size"),
    (["up", "x", "--image", "no-such-image-anywhere:1"], 2, "no-such-image-anywhere"),
    (["stop", "never-made"], 1, "no box named"),
]


@pytest.mark.parametrize(("args", "code", "needle"), BAD_INPUTS, ids=[" ".join(a) for a, _, _ in BAD_INPUTS])
def test_bad_input_gets_one_clear_line_and_leaves_nothing(user: User, client, args, code, needle) -> None:
    before = {c.id for c in client.containers.list(all=True)}
    proc = user.devbox(*args)
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert {c.id for c in client.containers.list(all=True)} == before


def test_unreachable_docker_daemon_is_one_line(user: User) -> None:
    proc = user.devbox("ls", extra_env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert proc.returncode == 1
    assert "cannot reach" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_up_with_different_options_says_how_to_recreate(user: User, box: dict, client) -> None:
    before = box_container(client, "shared").id
    proc = user.devbox("up", "shared", "--gpus", "2")
    assert proc.returncode == 2
    assert "already exists with other options (gpus 0-1 → 2)" in proc.stderr
    assert "devbox rm shared" in proc.stderr
    assert box_container(client, "shared").id == before


def test_bare_up_of_a_box_made_with_flags_just_starts_it(user: User, box: dict, client) -> None:
    box_container(client, "shared").stop(timeout=5)
    proc = user.ok("up", "shared")
    assert "Ready shared" in proc.stdout
    # The same GPUs in another order are the same request.
    assert "Ready shared" in user.ok("up", "shared", "--gpus", "1,0").stdout
    assert user.ssh("devbox-shared", "echo $NVIDIA_VISIBLE_DEVICES").stdout.strip() == "0,1"


def test_running_as_a_user_without_docker_access_is_one_line(user: User) -> None:
    proc = subprocess.run(
        [shutil.which("runuser"), "-u", "nobody", "--", f"{user.env['DEVBOX_VENV']}/bin/devbox", "ls"],
        capture_output=True,
        text=True,
        env={"DOCKER_HOST": user.env["DOCKER_HOST"], "HOME": "/tmp", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1
    assert "permission denied on the socket" in proc.stderr and "docker group" in proc.stderr
