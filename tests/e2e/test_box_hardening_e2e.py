"""Hardening of the box itself, end to end as an ordinary user: nothing root runs in the box writes
through a mount, mounts give no more than the user has, --env values reach every kind of session
exactly (and stay out of labels), sessions start in --workdir, and sshd audits clean."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import User, box_container, devbox_containers

# Values that broke on their way to a session: quotes, backslashes, shell syntax, runs of spaces,
# a leading '#', and text beyond ASCII.
ENV = {
    "DQUOTE": 'say "hi"',
    "BACKSLASH": "C:\\temp\\new \\\\ end\\",
    "SHELLISH": "$HOME `id` $(id) ${X:-y} ; | & > <",
    "SQUOTE": "it's 'quoted'",
    "SPACES": "  two  spaces  ",
    "HASH": "#not a comment",
    "UNICODE": "ünïcødé ✓ 数据",
    "EMPTY": "",
}
NAMES = list(ENV)
PRINT = "printenv " + " ".join(NAMES)
EXPECTED = "".join(f"{ENV[n]}\n" for n in NAMES)


def _leftovers(client, name: str) -> tuple[list, list]:
    return devbox_containers(client, name), client.volumes.list(filters={"label": f"devbox.name={name}"})


def _as_user(user: User, path: Path, mode: int) -> Path:
    os.chown(path, user.uid, user.gid)
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def envbox(user: User, client) -> Iterator[dict]:
    """One box with hostile --env values and a --workdir, shared by the session checks below."""
    args = ["up", "hardened", "--workdir", "/workspace"]
    for k, v in ENV.items():
        args += ["--env", f"{k}={v}"]
    user.ok(*args)
    box = next(b for b in json.loads(user.ok("ls", "--json").stdout) if b["name"] == "hardened")
    yield box
    user.devbox("rm", "hardened", "--purge")


def _login_shell(user: User, alias: str, script: str) -> str:
    """What an interactive login shell (a pty, like a terminal or VS Code's) prints for `script`,
    between two markers computed by the shell, so the terminal's echo of the input never matches."""
    proc = user.run(
        "ssh",
        "-F",
        str(user.ssh_config),
        "-o",
        "BatchMode=yes",
        "-tt",
        alias,
        input=f"echo ==$((6*7))==; {script}; echo ==$((6*8))==; exit\n",
        timeout=60,
    )
    text = proc.stdout.replace("\r\n", "\n")
    match = re.search(r"==42==\n(.*?)==48==", text, re.DOTALL)
    assert match, f"no marked output from the login shell:\n{text}\n{proc.stderr}"
    return match.group(1)


# --- --env ---------------------------------------------------------------------------------------------


def test_env_values_reach_devbox_ssh_commands_exactly(user: User, envbox: dict) -> None:
    proc = user.devbox("ssh", "hardened", "--", *PRINT.split())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == EXPECTED


def test_env_values_reach_plain_ssh_commands_exactly(user: User, envbox: dict) -> None:
    proc = user.ssh("devbox-hardened", PRINT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == EXPECTED


def test_env_values_reach_interactive_login_shells_exactly(user: User, envbox: dict) -> None:
    assert _login_shell(user, "devbox-hardened", PRINT) == EXPECTED


def test_env_values_reach_paramiko_sessions_exactly(user: User, envbox: dict) -> None:
    ssh = user.paramiko(envbox)
    try:
        _, out, _ = ssh.exec_command(PRINT)
        assert out.read().decode() == EXPECTED
    finally:
        ssh.close()


def test_env_values_are_not_copied_into_docker_labels(user: User, envbox: dict, client) -> None:
    labels = box_container(client, "hardened").labels
    text = json.dumps(labels)
    for value in ('say \\"hi\\"', "it's 'quoted'", "two  spaces", "#not a comment"):
        assert value not in text
    recorded = json.loads(labels["devbox.spec"])["env"]
    assert sorted(e.split("=", 1)[0] for e in recorded) == sorted(NAMES)


def test_up_again_tells_the_same_env_from_a_changed_one(user: User, envbox: dict) -> None:
    same = ["up", "hardened"] + [a for k, v in ENV.items() for a in ("--env", f"{k}={v}")]
    assert "Ready hardened" in user.ok(*same).stdout
    changed = user.devbox("up", "hardened", "--env", "DQUOTE=other")
    assert changed.returncode == 2
    assert "already exists with other options (env" in changed.stderr
    assert 'say "hi"' not in changed.stderr


@pytest.mark.parametrize("value", ["line1\nline2", "trailing\n"])
def test_env_value_with_a_newline_is_refused_before_anything_is_made(
    user: User, client, name: str, value: str
) -> None:
    proc = user.devbox("up", name, "--env", f"K={value}")
    assert proc.returncode == 2
    assert "--env K holds a newline" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert _leftovers(client, name) == ([], [])


# --- --workdir -----------------------------------------------------------------------------------------


def test_every_kind_of_session_starts_in_the_workdir(user: User, envbox: dict) -> None:
    assert user.ssh("devbox-hardened", "pwd").stdout == "/workspace\n"
    assert user.devbox("ssh", "hardened", "--", "pwd").stdout == "/workspace\n"
    assert _login_shell(user, "devbox-hardened", "pwd") == "/workspace\n"
    sftp = user.run(
        "sftp", "-F", str(user.ssh_config), "-o", "BatchMode=yes", "-b", "-", "devbox-hardened", input="pwd\n"
    )
    assert sftp.returncode == 0, sftp.stderr
    assert "Remote working directory: /workspace" in sftp.stdout
    # The home is still the home.
    assert user.ssh("devbox-hardened", 'echo "$HOME"').stdout == f"/home/{user.name}\n"


# --- sshd ------------------------------------------------------------------------------------------------


def test_sshd_audits_clean_with_post_quantum_key_exchange_first(user: User, envbox: dict, client) -> None:
    audit = user.run(
        str(Path(user.env["DEVBOX_VENV"]) / "bin" / "ssh-audit"),
        "-j",
        "--skip-rate-test",
        "-p",
        str(envbox["port"]),
        "127.0.0.1",
        timeout=120,
    )
    report = json.loads(audit.stdout)
    notes = [
        (part, a["algorithm"], level, text)
        for part in ("kex", "key", "enc", "mac")
        for a in report[part]
        for level, texts in a.get("notes", {}).items()
        for text in texts
    ]
    assert [n for n in notes if n[2] == "fail"] == []
    warnings = [n for n in notes if n[2] == "warn"]
    # The only warning: the classical fallback kept for clients without post-quantum kex (paramiko).
    assert {(part, alg) for part, alg, _, _ in warnings} <= {
        ("kex", "curve25519-sha256"),
        ("kex", "curve25519-sha256@libssh.org"),
    }
    assert all("post-quantum" in text for *_, text in warnings)
    assert report["cves"] == []
    kex = [a["algorithm"] for a in report["kex"]]
    assert kex[0].startswith(("mlkem768x25519", "sntrup761x25519"))
    assert "sntrup761x25519-sha512@openssh.com" in kex
    assert all(m["algorithm"].endswith("-etm@openssh.com") for m in report["mac"])
    # Debian 12's OpenSSH 9.2 has no ML-KEM: the box dropped that name instead of failing to start.
    assert "mlkem768x25519-sha256" not in kex
    container = box_container(client, "hardened")
    assert "lacks mlkem768x25519-sha256" in container.logs().decode()
    # The layer's build recorded which names this sshd knows; asking sshd now gives the same answer,
    # which is what a box whose sshd_config wants other names does at its start.
    recorded = container.exec_run(["cat", "/usr/local/lib/devbox/sshd_algorithms"])
    asked = container.exec_run(
        ["sh", "/usr/local/lib/devbox/algorithms.sh", "/run/devbox/sshd_config", "/etc/devbox/sshd_config"]
    )
    assert recorded.exit_code == 0 == asked.exit_code, (recorded.output, asked.output)
    binary, *answers = recorded.output.decode().splitlines()
    assert answers == asked.output.decode().splitlines()
    assert answers[0].endswith(" mlkem768x25519-sha256")
    # ...for this sshd binary: another one (upgraded in the box) is asked again at the next start.
    checksum = container.exec_run(["sh", "-c", "cksum </usr/sbin/sshd"]).output.decode().strip()
    assert binary == f"sshd {checksum}"
    # ...and both kinds of client still get in.
    assert user.ssh("devbox-hardened", "true").returncode == 0
    user.paramiko(envbox).close()


# --- mounts ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/etc/passwd",
        "/etc/group",
        "/etc/shadow",
        "/etc/sudoers.d",
        "/etc/profile.d",
        "/run/devbox",
        "/etc/ssh",
    ],
)
def test_mount_over_what_the_entrypoint_writes_is_refused_before_anything_is_made(
    user: User, client, name: str, target: str
) -> None:
    src = user.home / f"src-{name}"
    src.write_text("the user's own file\n")
    _as_user(user, src, 0o644)
    proc = user.devbox("up", name, "--mount", f"{src}:{target}", "--env", "SECRET=s3cret")
    assert proc.returncode == 2
    assert f"cannot mount over {target}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert _leftovers(client, name) == ([], [])
    assert src.read_text() == "the user's own file\n"


@pytest.mark.parametrize(
    ("link", "points_to", "mount_at", "written"),
    [
        ("/etc-link", "/etc", "/etc-link/passwd", "/etc/passwd"),
        ("/opt/profile", "/etc/profile.d", "/opt/profile", "/etc/profile.d/zz-devbox-env.sh"),
    ],
    ids=["passwd", "profile.d"],
)
def test_entrypoint_refuses_to_write_through_a_mount_that_slipped_past_the_checks(
    user: User, client, derived_image, name: str, link: str, points_to: str, mount_at: str, written: str
) -> None:
    # A symlink in the image makes Docker mount over the entrypoint's files under another name.
    image = derived_image(f"RUN ln -s {points_to} {link}")
    if mount_at.endswith("passwd"):
        src = user.home / f"passwd-{name}"
        src.write_text("mine\n")
        _as_user(user, src, 0o644)
    else:
        src = user.home / f"profile-{name}"
        src.mkdir()
        _as_user(user, src, 0o755)
    before = {p.name: p.read_bytes() for p in src.iterdir()} if src.is_dir() else src.read_bytes()
    proc = user.devbox(
        "up",
        name,
        "--image",
        image,
        "--mount",
        f"{src}:{mount_at}",
        "--env",
        "SECRET=s3cret",
        "--timeout",
        "30",
    )
    assert proc.returncode == 1
    assert f"devbox: cannot write {written}" in proc.stderr
    assert "Traceback" not in proc.stderr
    after = {p.name: p.read_bytes() for p in src.iterdir()} if src.is_dir() else src.read_bytes()
    assert after == before, "root in the box wrote into the user's host files"
    assert (src.stat().st_uid, src.stat().st_gid) == (user.uid, user.gid)
    assert _leftovers(client, name) == ([], [])


def test_a_host_directory_mounted_as_the_workdir_keeps_its_owner(user: User, client, name: str) -> None:
    # Root-owned but writable by the user's group: the user may mount it, not take it over; and
    # with sudo in the box (root could read all of it) only if it is theirs.
    shared = user.home / f"shared-{name}"
    shared.mkdir()
    os.chown(shared, 0, user.gid)
    shared.chmod(0o770)
    refused = user.devbox("up", name, "--mount", f"{shared}:/workspace", "--workdir", "/workspace")
    assert refused.returncode == 2 and f"you do not own {shared}" in refused.stderr
    assert "--no-sudo" in refused.stderr and _leftovers(client, name) == ([], [])
    user.ok("up", name, "--mount", f"{shared}:/workspace", "--workdir", "/workspace", "--no-sudo")
    try:
        assert user.ssh(f"devbox-{name}", "pwd").stdout == "/workspace\n"
        assert (shared.stat().st_uid, shared.stat().st_gid) == (0, user.gid)
    finally:
        user.devbox("rm", name, "--purge")


def test_a_mount_source_the_user_cannot_read_is_refused(user: User, client, name: str) -> None:
    proc = user.devbox("up", name, "--mount", "/etc/shadow:/mnt/x:ro")
    assert proc.returncode == 2
    assert "you cannot read mount source /etc/shadow" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert _leftovers(client, name) == ([], [])


def test_a_read_write_mount_the_user_cannot_write_is_refused_with_the_read_only_hint(
    user: User, client, name: str
) -> None:
    rootdir = user.home / f"rootdir-{name}"
    rootdir.mkdir()
    rootdir.chmod(0o755)  # root's, readable by all
    proc = user.devbox("up", name, "--mount", f"{rootdir}:/data")
    assert proc.returncode == 2
    assert f"you cannot write mount source {rootdir}" in proc.stderr
    assert f"{rootdir}:/data:ro" in proc.stderr
    assert _leftovers(client, name) == ([], [])


def test_boxes_run_with_only_the_capabilities_they_need(user: User, envbox: dict, client) -> None:
    host_config = box_container(client, envbox["name"]).attrs["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"]
    assert "NET_RAW" not in host_config["CapAdd"] and "SYS_ADMIN" not in host_config["CapAdd"]
    assert host_config["PidsLimit"] > 0
    # What the box is for still works: sudo, a pty login (AUDIT_WRITE), and sshd's privilege drop.
    proc = user.ssh(f"devbox-{envbox['name']}", "sudo -n true && id -u", options=("-tt",))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(user.uid)


def test_a_box_without_sudo_can_gain_no_privileges(user: User, client, name: str) -> None:
    user.ok("up", name, "--no-sudo")
    try:
        host_config = box_container(client, name).attrs["HostConfig"]
        assert "no-new-privileges" in host_config["SecurityOpt"]
        proc = user.ssh(f"devbox-{name}", "sudo -n true")
        assert proc.returncode != 0
    finally:
        user.devbox("rm", name, "--purge")


def test_boxes_sit_on_one_network_where_containers_cannot_reach_each_other(
    user: User, colleague: User, client, name: str
) -> None:
    # Inspected, never probed: tests send no traffic to bridge addresses.
    user.ok("up", name)
    colleague.ok("up", f"{name}-c")
    try:
        for box in (box_container(client, name), box_container(client, f"{name}-c")):
            assert list(box.attrs["NetworkSettings"]["Networks"]) == ["devbox-isolated"]
            published = {"HostIp": "127.0.0.1", "HostPort": box.labels["devbox.port"]}
            assert box.attrs["HostConfig"]["PortBindings"]["22/tcp"] == [published]
        net = client.networks.get("devbox-isolated")
        assert net.attrs["Driver"] == "bridge"
        assert net.attrs["Options"]["com.docker.network.bridge.enable_icc"] == "false"
        assert len(client.networks.list(names=["devbox-isolated"])) == 1
        # What answers on the bridge is a key-only sshd that lets in this box's user alone.
        sshd = box_container(client, name).exec_run(["/usr/sbin/sshd", "-T", "-f", "/run/devbox/sshd_config"])
        settings = sshd.output.decode()
        assert sshd.exit_code == 0, settings
        for line in ("passwordauthentication no", "permitrootlogin no", f"allowusers {user.name}"):
            assert line in settings.splitlines(), line
        doctor = user.ok("doctor", name).stdout
        assert f"box {name} network" in doctor and "other boxes cannot reach it" in doctor
    finally:
        user.devbox("rm", name, "--purge")
        colleague.devbox("rm", f"{name}-c", "--purge")
