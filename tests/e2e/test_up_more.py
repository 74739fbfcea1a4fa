"""`devbox up` options and failure paths: what is left behind, what the user is told."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from .conftest import User, box_container, devbox_containers, holding_proxy


def _leftovers(client, name: str) -> tuple[list, list]:
    return devbox_containers(client, name), client.volumes.list(filters={"label": f"devbox.name={name}"})


def test_sshd_that_never_starts_fails_with_its_log_and_leaves_nothing(
    user: User, client, derived_image, name
):
    image = derived_image(
        "RUN printf '#!/bin/sh\\necho sshd-boom: cannot bind >&2\\nexit 1\\n' > /usr/sbin/sshd"
    )
    proc = user.devbox("up", name, "--image", image, "--timeout", "30")
    assert proc.returncode == 1
    assert "sshd-boom: cannot bind" in proc.stderr and "Traceback" not in proc.stderr
    assert _leftovers(client, name) == ([], [])
    assert f"devbox-{name}" not in (user.home / ".config" / "devbox" / "known_hosts").read_text()

    kept = user.devbox("up", name, "--image", image, "--timeout", "30", "--keep-on-failure")
    assert kept.returncode == 1
    containers, volumes = _leftovers(client, name)
    assert len(containers) == 1 and len(volumes) == 1
    user.ok("rm", name, "--purge")
    assert _leftovers(client, name) == ([], [])


def test_base_without_a_package_manager_is_refused_clearly(user: User, client, env, derived_image, name):
    image = derived_image("RUN rm -f /usr/bin/apt-get /usr/bin/apt", base=env["DEVBOX_TEST_MIN_IMAGE"])
    proc = user.devbox("up", name, "--image", image)
    assert proc.returncode == 1
    assert "no apt-get, dnf, yum, microdnf or apk" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _leftovers(client, name) == ([], [])


def test_existing_user_with_the_same_uid_and_group_with_the_same_gid_give_way(
    user: User, derived_image, name
):
    image = derived_image(
        f"RUN groupadd -g {user.gid} clash && useradd -u {user.uid} -g {user.gid} -m squatter"
    )
    user.ok("up", name, "--image", image)
    proc = user.ssh(f"devbox-{name}", "id -un; id -u; id -g; stat -c %u:%g ~; test -w ~ && echo writable")
    assert proc.stdout.split() == [
        user.name,
        str(user.uid),
        str(user.gid),
        f"{user.uid}:{user.gid}",
        "writable",
    ]
    user.ok("rm", name, "--purge")


def test_user_names_the_login_over_the_image_s_own_account_of_that_name(
    user: User, client, derived_image, name
) -> None:
    # Dev Containers images ship a `vscode` account (UID 1000); the box's login takes its name, the
    # test user's UID/GID and a home of its own, and a later `up` asking another name is refused.
    image = derived_image("RUN useradd -u 1234 -m -s /bin/sh vscode && touch /home/vscode/from-image")
    user.ok("up", name, "--image", image, "--user", "vscode")
    proc = user.ssh(f"devbox-{name}", "id -un; id -u; id -g; echo $HOME; stat -c %u ~ ~/from-image")
    uid = str(user.uid)
    assert proc.stdout.split() == ["vscode", uid, str(user.gid), "/home/vscode", uid, uid], proc.stdout
    assert user.ok("ssh-config", name).stdout.count("User vscode\n") == 1
    assert "Ready" in user.ok("up", name).stdout  # the name it was made with is kept
    other = user.devbox("up", name, "--user", "alice")
    assert other.returncode == 2 and "already exists with other options (user" in other.stderr, other.stderr
    refused = user.devbox("up", name + "r", "--user", "root")
    assert refused.returncode == 2 and "never allows root logins" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not devbox_containers(client, name + "r")
    user.ok("rm", name, "--purge")


def test_ups_of_one_name_at_once_make_one_box_and_keep_its_home(user: User, client, name) -> None:
    # A box without GPUs takes no engine lock: Docker's unique container name keeps two `up`s of
    # one name apart, and the one that loses must not take the winner's home volume with it.
    with ThreadPoolExecutor(max_workers=4) as pool:
        procs = list(pool.map(lambda _: user.devbox("up", name), range(4)))
    try:
        for proc in procs:
            assert proc.returncode == 0 or (
                proc.returncode == 1 and "was just created by another devbox run" in proc.stderr
            ), proc.stderr
            assert "Traceback" not in proc.stderr
        assert sum("Created" in p.stdout for p in procs) == 1, [p.stdout for p in procs]
        (container,) = devbox_containers(client, name)
        assert container.status == "running"
        (volume,) = client.volumes.list(filters={"label": f"devbox.name={name}"})
        assert any(m.get("Name") == volume.name for m in container.attrs["Mounts"])
        assert user.ssh(f"devbox-{name}", "touch ~/kept && echo ok").stdout == "ok\n"
    finally:
        user.devbox("rm", name, "--purge")


def test_up_of_a_box_another_up_is_still_setting_up_waits_for_it_and_both_end_with_it(
    user: User, client, env, name
) -> None:
    # The first `up` is held between creating the box and copying its files in (the window where
    # the box is listed but has no /etc/devbox yet); a second `up` of the name must wait for it.
    with holding_proxy(env["DOCKER_HOST"], b"/archive", hold_s=3) as (sock, held):
        argv = user.argv(
            str(Path(env["DEVBOX_TEST_VENV"]) / "bin" / "devbox"),
            "up",
            name,
            extra_env={"DOCKER_HOST": f"unix://{sock}"},
        )
        first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert held.wait(60), "the first up never copied files into its box"
            (box,) = devbox_containers(client, name)
            assert box.status == "created"
            second = user.devbox("up", name)
            out, err = first.communicate(timeout=120)
            assert first.returncode == 0, out + err
            assert second.returncode == 0, second.stdout + second.stderr
            assert "Created" in out and "Created" not in second.stdout
            assert user.ssh(f"devbox-{name}", "echo ok").stdout == "ok\n"
        finally:
            first.kill()
            first.wait()
            user.devbox("rm", name, "--purge")


def test_a_kill_while_docker_creates_the_box_removes_the_box_and_the_home_it_made(
    user: User, client, env, name
) -> None:
    # The kill lands while the create request is out (held by the proxy): Docker makes the box a
    # moment later. `up` acts on the kill only once it has the answer, the box's id it removes it by.
    with holding_proxy(env["DOCKER_HOST"], b"/containers/create", hold_s=2) as (sock, held):
        devbox = str(Path(env["DEVBOX_TEST_VENV"]) / "bin" / "devbox")
        argv = user.argv(devbox, "up", name, extra_env={"DOCKER_HOST": f"unix://{sock}"})
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert held.wait(60), "up never asked Docker to create the box"
            # devbox itself, not runuser (which would follow up with a KILL of its own).
            found = subprocess.run(
                ["pgrep", "-u", user.name, "-f", f"bin/devbox up {name}$"], capture_output=True, text=True
            )
            (pid,) = found.stdout.split()
            os.kill(int(pid), 15)
            out, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
            proc.wait()
    try:
        assert proc.returncode == 143, out + err
        assert "Traceback" not in err
        assert devbox_containers(client, name) == []
        assert client.volumes.list(filters={"label": f"devbox.name={name}"}) == []
    finally:
        user.devbox("rm", name, "--purge")


def test_up_that_loses_the_name_keeps_the_home_volume_it_made_for_the_winner(
    user: User, client, env, name
) -> None:
    # The winner of a name holds it from the start of its create, before Docker counts its use of
    # the home volume: the loser (here: its create refused by a container already holding the name)
    # must leave the volume it made in that window, or Docker makes the winner a bare one.
    holder = client.containers.create(env["DEVBOX_TEST_IMAGE"], "true", name=f"devbox-{user.name}.{name}")
    try:
        proc = user.devbox("up", name)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "was just created by another devbox run" in proc.stderr and "Traceback" not in proc.stderr
        (volume,) = client.volumes.list(filters={"label": f"devbox.name={name}"})
        assert volume.attrs["Labels"] == {"devbox.name": name, "devbox.owner": user.name}
    finally:
        holder.remove(force=True)
        for vol in client.volumes.list(filters={"label": f"devbox.name={name}"}):
            vol.remove(force=True)


def test_up_of_a_running_box_re_pins_a_stale_host_key_and_re_authorizes_a_removed_key(
    user: User, client, name
) -> None:
    # `up` of a running box first just logs in; when that fails it re-reads both through the API.
    user.ok("up", name)
    alias = f"devbox-{name}"
    box_key = user.pinned_host_key(alias)
    pins = user.home / ".config" / "devbox" / "known_hosts"
    other = (  # a real key, so the first login is refused for the key, not for a malformed pin
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
        .split()[1]
    )
    pins.write_text(pins.read_text().replace(box_key[1], other))
    assert user.pinned_host_key(alias) == ("ssh-ed25519", other)
    assert "Ready" in user.ok("up", name).stdout
    assert user.pinned_host_key(alias) == box_key
    box = box_container(client, name)
    assert box.exec_run(["sh", "-c", ": > /etc/devbox/authorized_keys"]).exit_code == 0
    assert user.ssh(alias, "true").returncode != 0  # a fresh connection is turned down now
    assert "Ready" in user.ok("up", name).stdout
    assert user.ssh(alias, "echo back").stdout == "back\n"
    user.ok("rm", name, "--purge")


def test_name_defaults_to_the_directory_name_made_valid(user: User, client) -> None:
    project = user.home / "My_Project"
    project.mkdir()
    os.chown(project, user.uid, user.gid)
    proc = user.devbox("up", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert box_container(client, "my-project").labels["devbox.owner"] == user.name
    user.ok("rm", "my-project", "--purge")


def test_sudo_is_passwordless_by_default_and_absent_with_no_sudo(user: User, name: str) -> None:
    user.ok("up", name)
    assert user.ssh(f"devbox-{name}", "sudo -n id -u").stdout.strip() == "0"
    user.ok("rm", name)
    user.ok("up", name + "n", "--no-sudo")
    proc = user.ssh(f"devbox-{name}n", "sudo -n true")
    assert proc.returncode != 0
    user.ok("rm", name + "n", "--purge")
    user.devbox("rm", name, "--purge")


def test_identity_flag_logs_in_with_the_users_own_key(user: User, name: str) -> None:
    key = user.home / "mykey"
    made = user.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    assert made.returncode == 0, made.stderr
    user.ok("up", name, "--identity", str(key))
    block = user.ok("ssh-config", name).stdout
    assert f"IdentityFile {key}\n" in block
    authorized = user.ssh(f"devbox-{name}", "cat /etc/devbox/authorized_keys").stdout
    assert authorized.split()[:2] == (user.home / "mykey.pub").read_text().split()[:2]
    user.ok("restart", name)  # restart re-verifies with the same key
    user.ok("rm", name, "--purge")


def test_ls_table_shows_name_status_gpus_and_port(user: User, name: str) -> None:
    user.ok("up", name, "--gpus", "3", "--cpus", "1", "--memory", "2g", "--shm-size", "1g")
    table = user.ok("ls").stdout
    row = next(ln for ln in table.splitlines() if ln.split()[:1] == [name])
    assert "running" in row and " 3 " in row and "127.0.0.1:" in row
    user.ok("stop", name)
    row = next(ln for ln in user.ok("ls").stdout.splitlines() if ln.split()[:1] == [name])
    assert "exited" in row
    user.ok("rm", name, "--purge")


def test_resources_reach_the_container(user: User, client, name: str) -> None:
    user.ok("up", name, "--cpus", "1.5", "--memory", "2g", "--shm-size", "1g", "--workdir", "/tmp")
    host = box_container(client, name).attrs["HostConfig"]
    assert host["NanoCpus"] == 1_500_000_000
    assert host["Memory"] == 2 * 1024**3
    assert host["ShmSize"] == 1024**3
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    df = user.ssh(f"devbox-{name}", "df -k /dev/shm | tail -1").stdout.split()
    assert int(df[1]) == 1024 * 1024
    user.ok("rm", name, "--purge")


def test_up_on_a_stopped_box_starts_it(user: User, client, name: str) -> None:
    user.ok("up", name)
    user.ok("stop", name)
    proc = user.ok("up", name)
    assert "Ready" in proc.stdout
    assert box_container(client, name).status == "running"
    assert user.ssh(f"devbox-{name}", "true").returncode == 0
    user.ok("rm", name, "--purge")


def test_passphrase_key_needs_an_agent_and_works_through_one(user: User, client, name: str) -> None:
    key = user.home / "locked"
    made = user.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret pass", "-f", str(key))
    assert made.returncode == 0, made.stderr
    refused = user.devbox("up", name, "--identity", str(key))
    assert refused.returncode == 2 and "passphrase-protected and no ssh-agent" in refused.stderr
    assert devbox_containers(client, name) == []

    askpass = user.home / "askpass"
    askpass.write_text("#!/bin/sh\necho 's3cret pass'\n")
    askpass.chmod(0o755)
    os.chown(askpass, user.uid, user.gid)
    sock = user.home / "agent.sock"
    agent = user.run("ssh-agent", "-a", str(sock))
    assert agent.returncode == 0, agent.stderr
    env = {
        "SSH_AUTH_SOCK": str(sock),
        "SSH_ASKPASS": str(askpass),
        "SSH_ASKPASS_REQUIRE": "force",
        "DISPLAY": ":0",
    }
    try:
        # Other keys first: devbox must offer only the right one (sshd allows 4 tries).
        for i in range(5):
            other = user.home / f"other{i}"
            user.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other))
            assert user.run("ssh-add", str(other), extra_env=env).returncode == 0
        added = user.run("ssh-add", str(key), extra_env=env)
        assert added.returncode == 0, added.stderr
        user.ok("up", name, "--identity", str(key), extra_env=env)
        proc = user.ssh(f"devbox-{name}", "id -un", options=("-o", f"IdentityAgent={sock}"))
        assert proc.stdout.strip() == user.name, proc.stderr
    finally:
        user.run("sh", "-c", f"SSH_AUTH_SOCK={sock} ssh-agent -k", extra_env={"SSH_AGENT_PID": ""})
        user.run("pkill", "-u", user.name, "-f", f"ssh-agent -a {sock}")
        user.devbox("rm", name, "--purge")


def test_read_only_mount_inside_home_and_a_new_workdir_work_for_the_user(user: User, name: str) -> None:
    data = user.home / "ds"
    data.mkdir()
    (data / "f.txt").write_text("x\n")
    os.chown(data, 0, 0)
    # Root's directory: mountable read-only without sudo in the box (with it, root could read it all).
    proc = user.ok(
        "up", name, "--mount", f"{data}:/home/{user.name}/ds:ro", "--workdir", "/workspace", "--no-sudo"
    )
    assert "Created" in proc.stdout
    assert os.stat(data).st_uid == 0 and os.stat(data / "f.txt").st_uid == 0  # the host's files untouched
    out = user.ssh(f"devbox-{name}", "cat ~/ds/f.txt && touch /workspace/ok && stat -c %U /workspace")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["x", user.name]
    user.ok("rm", name, "--purge")


def test_up_with_a_new_identity_switches_the_key_for_good(user: User, name: str) -> None:
    user.ok("up", name)
    key = user.home / f"newkey-{name}"
    assert user.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)).returncode == 0
    user.ok("up", name, "--identity", str(key))
    assert f"IdentityFile {key}\n" in user.ok("ssh-config", name).stdout
    user.ok("stop", name)
    user.ok("start", name)  # uses the key the last `up` switched to
    out = user.ssh(f"devbox-{name}", "true", options=("-o", "ControlPath=none"))
    assert out.returncode == 0, out.stderr
    user.ok("rm", name, "--purge")


def test_up_whose_ssh_dir_is_not_writable_finishes_with_the_fix_and_no_error(
    fresh_user: User, client, name: str
) -> None:
    ssh_dir = fresh_user.home / ".ssh"
    ssh_dir.mkdir(mode=0o500)
    os.chown(ssh_dir, fresh_user.uid, fresh_user.gid)
    try:
        proc = fresh_user.devbox("up", name)
        assert proc.returncode == 0, proc.stderr
        assert f"warning: {name} is up, but its ssh entry could not be written" in proc.stderr
        assert "devbox ssh-config" in proc.stderr
        assert box_container(client, name).status == "running"
        ssh_dir.chmod(0o700)
        fresh_user.ok("ssh-config")
        assert fresh_user.ssh(f"devbox-{name}", "true").returncode == 0
    finally:
        ssh_dir.chmod(0o700)
        fresh_user.devbox("rm", name, "--purge")


def test_start_whose_ssh_dir_is_not_writable_finishes_with_the_fix_and_no_error(
    fresh_user: User, client, name: str
) -> None:
    fresh_user.ok("up", name)
    fresh_user.ok("stop", name)
    ssh_dir = fresh_user.home / ".ssh"
    shutil.rmtree(ssh_dir)
    ssh_dir.mkdir(mode=0o500)
    os.chown(ssh_dir, fresh_user.uid, fresh_user.gid)
    try:
        proc = fresh_user.devbox("start", name)
        assert proc.returncode == 0, proc.stderr
        assert f"warning: {name} is up, but its ssh entry could not be written" in proc.stderr
        assert "devbox ssh-config" in proc.stderr
        assert box_container(client, name).status == "running"
    finally:
        ssh_dir.chmod(0o700)
        fresh_user.devbox("rm", name, "--purge")


def test_rm_cleans_up_the_alias_a_box_was_made_under_after_the_prefix_changed(
    user: User, client, name: str
) -> None:
    alias = f"gpu-{name}"
    managed = user.home / ".ssh" / "devbox" / "config"
    known_hosts = user.home / ".config" / "devbox" / "known_hosts"

    def pinned() -> bool:
        return any(line.split()[:1] == [alias] for line in known_hosts.read_text().splitlines())

    user.ok("up", name, extra_env={"DEVBOX_HOST_PREFIX": "gpu-"})
    assert f"Host {alias}\n" in managed.read_text() and pinned()
    user.ok("rm", name, "--purge")
    assert devbox_containers(client, name) == []
    assert alias not in managed.read_text()
    assert not pinned()


def test_an_unusable_host_prefix_is_refused_before_anything_is_made(
    fresh_user: User, client, name: str
) -> None:
    proc = fresh_user.devbox("up", name, extra_env={"DEVBOX_HOST_PREFIX": "bad prefix*"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "DEVBOX_HOST_PREFIX='bad prefix*'" in lines[0]
    assert devbox_containers(client, name) == []


def test_rm_removes_a_box_whose_labels_are_damaged(user: User, client, env, name: str) -> None:
    damaged = client.containers.create(
        env["DEVBOX_TEST_IMAGE"],
        entrypoint=["true"],
        name=f"devbox-{user.name}.{name}",
        labels={"devbox.name": name, "devbox.owner": user.name, "devbox.port": "not-a-port"},
    )
    listed = user.ok("ls", "--json").stdout
    assert name not in listed
    user.ok("rm", name)
    assert devbox_containers(client, name) == []
    with pytest.raises(docker.errors.NotFound):
        damaged.reload()


def test_doctor_checks_engine_ssh_setup_keys_and_each_box_login(fresh_user: User, name: str) -> None:
    fresh_user.ok("up", name)
    try:
        lines = fresh_user.ok("doctor").stdout.splitlines()
        status = {ln.split()[1]: ln.split()[0] for ln in lines}
        assert status["docker"] == status["ssh"] == status["key"] == status["box"] == "ok", lines
        assert any(f"box {name}" in ln and "answers with its pinned key" in ln for ln in lines)
        fresh_user.key_path.chmod(0o644)
        proc = fresh_user.devbox("doctor", name)
        assert proc.returncode == 1
        assert f"chmod 600 {fresh_user.key_path}" in proc.stdout
    finally:
        fresh_user.key_path.chmod(0o600)
        fresh_user.devbox("rm", name, "--purge")


def test_one_connection_to_the_engine_serves_a_command_s_calls(env, monkeypatch, user: User, name) -> None:
    # Each call opening a connection of its own costs a round trip more per call on a server
    # (a channel through its ssh master); only Engine.connect's own version check has its own.
    from devbox import boxes
    from devbox.engine import Engine

    user.ok("up", name)
    monkeypatch.setenv("DOCKER_HOST", env["DOCKER_HOST"])
    engine = Engine.connect()
    connects: list[object] = []
    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", lambda s, *a: connects.append(a) or real_connect(s, *a))
    (box,) = [b for b in boxes.list_boxes(engine) if b.name == name]
    engine.client.api.inspect_container(box.container_id)
    engine.client.volumes.list()
    engine.client.images.get(env["DEVBOX_TEST_IMAGE"])
    engine.client.containers.get(box.container_id).reload()
    assert len(connects) == 1, connects
    user.ok("rm", name, "--purge")


def test_ls_and_rm_read_boxes_from_one_list_call(env, monkeypatch, user: User, client, name) -> None:
    # A listing that inspects each box costs a round trip per box on a server: `ls` and `rm` read
    # only what Docker's list has, and see the same box an inspect shows (less its start time and limits).
    from dataclasses import replace

    from devbox import boxes
    from devbox.engine import Engine

    data = user.home / f"data-{name}"
    data.mkdir()
    os.chown(data, user.uid, user.gid)
    try:
        user.ok("up", name, "--mount", f"{data}:/workspace/data:ro", "--memory", "1g", "--cpus", "1")
        user.ok("up", f"{name}b")
        monkeypatch.setenv("DOCKER_HOST", env["DOCKER_HOST"])
        engine = Engine.connect()
        calls: list[str] = []
        engine.client.api.hooks["response"].append(lambda r, *a, **kw: calls.append(r.url))
        brief = boxes.list_boxes(engine, user.name, brief=True)
        assert len(calls) == 1, calls
        full = boxes.list_boxes(engine, user.name)
        assert [b.name for b in brief] == [name, f"{name}b"]
        assert full[0].mounts == (f"{data}:/workspace/data:ro",) and full[0].memory == 1 << 30
        assert full[0].started and full[0].networks
        assert brief == [replace(b, started="", memory=0, cpus=0.0, shm_size=0) for b in full]

        seen: list[str] = []
        with holding_proxy(env["DOCKER_HOST"], b"no request holds this", 0, seen) as (sock, _):
            through = {"DOCKER_HOST": f"unix://{sock}"}
            listed = json.loads(user.ok("ls", "--json", extra_env=through).stdout)
            assert listed == [b.to_json() for b in full]
            assert [s for s in seen if "/containers/" in s] == [seen[1]], seen  # after the version check
            seen.clear()
            user.ok("rm", f"{name}b", extra_env=through)
            box_calls = [s for s in seen if "/containers/" in s]
            assert [s.split()[0] for s in box_calls] == ["GET", "DELETE"], seen
        assert devbox_containers(client, f"{name}b") == []
        assert f"{name}b" not in user.ok("ls").stdout
    finally:
        user.devbox("rm", name, "--purge")
        user.devbox("rm", f"{name}b", "--purge")
        shutil.rmtree(data)
