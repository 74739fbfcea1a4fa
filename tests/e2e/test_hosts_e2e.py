"""Remote hosts end to end: devbox on a laptop, boxes on GPU servers reached over the user's own ssh.

The "servers" are unprivileged sshds on 127.0.0.1 logging in as devbox-tester2, whose sessions see
a test engine (gpu1: the first, gpu2: the second dockerd) and a fake nvidia-smi with a different
GPU count each. The laptop user is devbox-tester with a temporary HOME, an ssh config with Include
and absolute paths, and no Docker engine of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from .conftest import User, image_tags, make_user, remove_devbox_objects
from .servers import (
    LOCALHOST,
    FreezingProxy,
    SilentServer,
    Sshd,
    free_port,
    make_client_key,
    write_client_config,
)
from .test_ports_e2e import SERVER, fetch
from .test_tui_e2e import PILOT

GPU1_COUNT, GPU2_COUNT = 2, 4


def server_env(env: dict[str, str], docker_host: str, gpus: int) -> dict[str, str]:
    return {
        "DOCKER_HOST": docker_host,
        "PATH": f"{env['DEVBOX_TEST_GPU_PATH']}:/usr/local/bin:/usr/bin:/bin",
        "FAKE_NVIDIA_SMI_COUNT": str(gpus),
    }


@pytest.fixture(scope="module")
def docker_host2() -> str:
    host = os.environ.get("DEVBOX_TEST_DOCKER_HOST2")
    if not host:
        pytest.fail("remote-host tests need DEVBOX_TEST_DOCKER_HOST2: run them through `bash tests/run.sh`")
    return host


@pytest.fixture(scope="module")
def client2(docker_host2: str) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=docker_host2)
    images_before = image_tags(c)
    yield c
    remove_devbox_objects(c, images_before)
    c.close()


@pytest.fixture(scope="module")
def gpu1(env: dict[str, str]) -> Iterator[Sshd]:
    with Sshd(env["DEVBOX_TEST_USER2"], server_env(env, env["DOCKER_HOST"], GPU1_COUNT)) as server:
        yield server


@pytest.fixture(scope="module")
def gpu2(env: dict[str, str], docker_host2: str) -> Iterator[Sshd]:
    with Sshd(env["DEVBOX_TEST_USER2"], server_env(env, docker_host2, GPU2_COUNT)) as server:
        yield server


@pytest.fixture(scope="module")
def bastion(env: dict[str, str]) -> Iterator[Sshd]:
    with Sshd(env["DEVBOX_TEST_USER2"]) as server:
        yield server


@dataclass
class Laptop:
    user: User
    key: Path
    known_hosts: Path

    def ok(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        return self.user.ok(*args, **kw)

    def devbox(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        return self.user.devbox(*args, **kw)

    def trust(self, *servers: Sshd) -> None:
        with self.known_hosts.open("a") as f:
            f.writelines(s.known_hosts_line() + "\n" for s in servers)

    def trust_line(self, line: str) -> None:
        with self.known_hosts.open("a") as f:
            f.write(line + "\n")


@pytest.fixture
def laptop(
    env: dict[str, str], client: docker.DockerClient, gpu1: Sshd, gpu2: Sshd, bastion: Sshd, client2
) -> Iterator[Laptop]:
    """devbox-tester's laptop: no Docker of its own, an ssh config that reaches gpu1 and gpu2
    directly and `gpu1-behind` through the bastion (from an Included file), their keys known."""
    user = make_user(env)
    del user.env["DOCKER_HOST"]
    key, public = make_client_key(user.home, user.uid, user.gid)
    for server in (gpu1, gpu2, bastion):
        server.authorize(public)
    ssh_dir = user.home / ".ssh"
    known_hosts = ssh_dir / "known_hosts"
    common = {"IdentityFile": key, "IdentitiesOnly": "yes", "UserKnownHostsFile": known_hosts}
    owner = (user.uid, user.gid)
    lab = write_client_config(
        ssh_dir / "lab.conf",
        {
            "bastion": {"HostName": LOCALHOST, "Port": bastion.port, "User": bastion.account},
            "gpu1-behind": {
                "HostName": LOCALHOST,
                "Port": gpu1.port,
                "User": gpu1.account,
                "ProxyJump": "bastion",
            },
        },
        owner=owner,
    )
    write_client_config(
        user.ssh_config,
        {
            "gpu1": {"HostName": LOCALHOST, "Port": gpu1.port, "User": gpu1.account},
            "gpu2": {"HostName": LOCALHOST, "Port": gpu2.port, "User": gpu2.account},
            "*": common,
        },
        includes=[lab],
        owner=owner,
    )
    laptop = Laptop(user, key, known_hosts)
    known_hosts.touch()
    os.chown(known_hosts, user.uid, user.gid)
    laptop.trust(gpu1, gpu2, bastion)
    yield laptop
    # ssh masters devbox left running for this laptop, then every box it made on either engine.
    subprocess.run(["pkill", "-u", user.name, "-f", str(user.home)], check=False)
    for c in (client, client2):
        for ct in c.containers.list(all=True, filters={"label": f"devbox.owner={gpu1.account}"}):
            ct.remove(force=True)
        for vol in c.volumes.list(filters={"label": f"devbox.owner={gpu1.account}"}):
            vol.remove(force=True)
    shutil.rmtree(user.home, ignore_errors=True)


def ls_json(laptop: Laptop, *args: str) -> list[dict]:
    return json.loads(laptop.ok("ls", "--json", *args).stdout)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def boxes_on(c: docker.DockerClient, name: str) -> list:
    return c.containers.list(all=True, filters={"label": f"devbox.name={name}"})


# ---------------------------------------------------------------- host add / ls / check / rm


def test_host_add_checks_the_server_and_host_ls_lists_it(laptop: Laptop) -> None:
    added = laptop.ok("host", "add", "gpu1", "gpu1", "--default").stdout
    assert "Added host gpu1" in added
    assert "logged in as devbox-tester2 (uid 4343)" in added
    assert f"{GPU1_COUNT} × NVIDIA H100 80GB HBM3" in added
    listing = laptop.ok("host", "ls").stdout
    assert "gpu1" in listing and "yes" in listing.split("gpu1", 1)[1].splitlines()[0]
    check = [ln.split(maxsplit=2) for ln in laptop.ok("host", "check", "gpu1").stdout.splitlines()]
    assert [c[1] for c in check] == ["ssh", "docker", "nvidia", "gpus", "disk"]
    status = {c[1]: c[0] for c in check}
    assert status["ssh"] == status["docker"] == status["gpus"] == "ok"
    assert status["nvidia"] in ("ok", "warn") and status["disk"] in ("ok", "warn")
    assert check[1][2].startswith("Docker ")


def test_host_rm_forgets_the_host_and_stops_its_ssh_master(laptop: Laptop) -> None:
    laptop.ok("host", "add", "gpu2", "gpu2")
    masters = subprocess.run(
        ["pgrep", "-u", laptop.user.name, "-f", "ControlMaster=yes"], capture_output=True
    )
    assert masters.returncode == 0, "host add left a master for the next command"
    laptop.ok("host", "rm", "gpu2")
    assert "gpu2" not in laptop.ok("host", "ls").stdout
    cm = laptop.user.home / ".config" / "devbox" / "cm"
    assert not [p for p in cm.iterdir() if p.name.endswith((".docker", ".login"))]
    proc = laptop.devbox("ls", "--host", "gpu2")
    assert proc.returncode == 1
    assert "no host named 'gpu2'" in one_line_error(proc)


def test_the_server_login_is_asked_once_per_master_and_again_by_a_new_master_or_a_check(
    laptop: Laptop, gpu1: Sshd
) -> None:
    # Who devbox is on the server (a session over the link: a round trip) is the same for as long
    # as one master lives, so commands after the first do not ask again.
    def asked() -> int:
        return gpu1.log_text().count("Starting session: command")

    laptop.ok("host", "add", "gpu1", "gpu1")
    first = asked()
    for _ in range(3):
        assert laptop.ok("ls", "--host", "gpu1").returncode == 0
    assert asked() == first
    (remembered,) = (laptop.user.home / ".config" / "devbox" / "cm").glob("*.login")
    assert json.loads(remembered.read_text())["login"]["name"] == gpu1.account
    subprocess.run(["pkill", "-u", laptop.user.name, "-f", "ControlMaster=yes"], check=True)
    time.sleep(0.5)
    laptop.ok("ls", "--host", "gpu1")  # a new master: asked again
    assert asked() == first + 1
    laptop.ok("ls", "--host", "gpu1")
    assert asked() == first + 1
    (remembered,) = remembered.parent.glob("*.login")
    written = remembered.stat().st_mtime_ns
    assert laptop.ok("host", "check", "gpu1").stdout.split()[:2] == ["ok", "ssh"]
    assert remembered.stat().st_mtime_ns > written  # a check always asks


def test_bad_host_input_is_one_line_with_exit_2(laptop: Laptop) -> None:
    for args, message in [
        (["host", "add", "Bad Name", "gpu1"], "invalid host name"),
        (["host", "add", "local", "gpu1"], "invalid host name"),
        (["host", "add", "x", "--", "-oProxyCommand=evil"], "invalid ssh destination"),
        (["host", "add", "x", "a@b:99999"], "invalid ssh destination"),
        (["host", "add", "x", "gpu1", "--docker-socket", "relative.sock"], "invalid Docker socket"),
    ]:
        proc = laptop.devbox(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in one_line_error(proc)
    assert not (laptop.user.home / ".config" / "devbox" / "hosts.yaml").exists()


# ---------------------------------------------------------------- boxes on a remote host


def test_up_on_a_remote_host_works_from_the_laptop_with_plain_ssh_scp_and_sftp(
    laptop: Laptop, client: docker.DockerClient, gpu1: Sshd
) -> None:
    laptop.ok("host", "add", "gpu1", "gpu1")
    out = laptop.ok("up", "rbox", "--host", "gpu1", "--gpus", "1").stdout
    assert "Created rbox: user devbox-tester2 (uid 4343), GPUs 1, ssh on gpu1's 127.0.0.1:" in out
    (ct,) = boxes_on(client, "rbox")
    assert ct.labels["devbox.owner"] == gpu1.account
    assert ct.labels["devbox.uid"] == "4343"
    # The box's sshd is published on the server's loopback only.
    assert ct.attrs["HostConfig"]["PortBindings"]["22/tcp"][0]["HostIp"] == "127.0.0.1"

    cfg = str(laptop.user.ssh_config)
    who = laptop.user.run(
        "ssh", "-F", cfg, "-o", "BatchMode=yes", "devbox-rbox", "id -u; echo $NVIDIA_VISIBLE_DEVICES"
    )
    assert who.returncode == 0, who.stderr
    assert who.stdout.split() == ["4343", "1"]
    block = laptop.ok("ssh-config", "rbox").stdout
    assert "ProxyJump gpu1" in block and "StrictHostKeyChecking yes" in block

    src = laptop.user.home / "notes.txt"
    src.write_text("from the laptop\n")
    os.chown(src, laptop.user.uid, laptop.user.gid)
    scp = laptop.user.run("scp", "-F", cfg, "-o", "BatchMode=yes", str(src), "devbox-rbox:notes.txt")
    assert scp.returncode == 0, scp.stderr
    sftp = laptop.user.run(
        "sftp", "-F", cfg, "-o", "BatchMode=yes", "-b", "-", "devbox-rbox", input="ls -1\n"
    )
    assert sftp.returncode == 0, sftp.stderr
    assert "notes.txt" in sftp.stdout
    cat = laptop.user.run("ssh", "-F", cfg, "-o", "BatchMode=yes", "devbox-rbox", "cat notes.txt")
    assert cat.stdout == "from the laptop\n"

    # devbox ssh finds the box's host by itself; ls shows it under its host.
    assert laptop.ok("ssh", "rbox", "--", "hostname").stdout.strip() == "rbox"
    (listed,) = ls_json(laptop)
    assert (listed["name"], listed["host"], listed["owner"]) == ("rbox", "gpu1", gpu1.account)
    gpus = json.loads(laptop.ok("gpus", "--host", "gpu1", "--json").stdout)
    assert len(gpus["gpus"]) == GPU1_COUNT
    assert gpus["gpus"][1]["holder"] == f"{gpu1.account}/rbox"

    doctor = laptop.ok("doctor", "rbox").stdout
    assert "box rbox" in doctor and "answers with its pinned key" in doctor

    laptop.ok("rm", "rbox", "--purge")
    assert boxes_on(client, "rbox") == []
    assert "devbox-rbox" not in (laptop.user.home / ".ssh" / "devbox" / "config").read_text()


def test_mount_sources_are_checked_and_tilde_expanded_on_the_server(
    laptop: Laptop, client: docker.DockerClient, gpu1: Sshd
) -> None:
    laptop.ok("host", "add", "gpu1", "gpu1")
    server_home = Path(pwd.getpwnam(gpu1.account).pw_dir)
    proc = laptop.devbox("up", "mnt", "--host", "gpu1", "--mount", "~/no-such-dir:/data")
    assert proc.returncode == 2
    assert f"mount source {server_home}/no-such-dir does not exist on gpu1" in one_line_error(proc)
    assert boxes_on(client, "mnt") == []
    laptop.ok("up", "mnt", "--host", "gpu1", "--mount", "~:/srv/server-home:ro")
    (ct,) = boxes_on(client, "mnt")
    binds = {m["Destination"]: m["Source"] for m in ct.attrs["Mounts"] if m["Type"] == "bind"}
    assert binds == {"/srv/server-home": str(server_home)}
    laptop.ok("rm", "mnt", "--purge")


def test_the_remote_host_example_comes_up_on_gpu1_with_the_server_s_folders(
    env: dict[str, str], laptop: Laptop, client: docker.DockerClient, gpu1: Sshd
) -> None:
    """examples/remote-host from a copy on the laptop: `host: gpu1` in the file, its `~/` mounts
    the server login's folders. The test image replaces PyTorch's (no registry here) and one CPU
    its 8 (this machine has 2): flags over the file."""
    laptop.ok("host", "add", "gpu1", "gpu1")
    server = pwd.getpwnam(gpu1.account)
    made: list[Path] = []
    for folder in (Path(server.pw_dir) / "datasets", Path(server.pw_dir) / "runs" / "lab-train"):
        if not folder.exists():
            top = folder
            while not top.parent.exists():
                top = top.parent
            folder.mkdir(parents=True)
            made.append(top)
            for path in (folder, folder.parent):
                os.chown(path, server.pw_uid, server.pw_gid)
    example = laptop.user.home / "remote-host"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "remote-host", example)
    for path in (example, *example.iterdir()):
        os.chown(path, laptop.user.uid, laptop.user.gid)
    try:
        laptop.ok("up", "--image", env["DEVBOX_TEST_IMAGE"], "--cpus", "1", cwd=example)
        (ct,) = boxes_on(client, "lab-train")
        binds = {m["Destination"]: m["Source"] for m in ct.attrs["Mounts"] if m["Type"] == "bind"}
        assert binds == {"/data": f"{server.pw_dir}/datasets", "/runs": f"{server.pw_dir}/runs/lab-train"}
        assert ct.labels["devbox.gpus"] and ct.attrs["HostConfig"]["Memory"] == 64 * 1024**3
        out = laptop.user.ssh("devbox-lab-train", "pwd; echo $HF_HOME").stdout
        assert out == "/runs\n/data/hf\n", out
    finally:
        laptop.devbox("rm", "lab-train", "--purge", cwd=example)
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)


def test_a_server_behind_a_bastion_is_reached_through_it(
    laptop: Laptop, client: docker.DockerClient, bastion: Sshd, gpu1: Sshd
) -> None:
    laptop.ok("host", "add", "behind", "gpu1-behind")
    laptop.ok("up", "viajump", "--host", "behind")
    who = laptop.user.run(
        "ssh", "-F", str(laptop.user.ssh_config), "-o", "BatchMode=yes", "devbox-viajump", "id -un"
    )
    assert who.returncode == 0, who.stderr
    assert who.stdout.strip() == gpu1.account
    # The bastion forwarded to the server's sshd: the only way this laptop's config reaches it.
    assert f"port {gpu1.port}" in bastion.log_text()
    laptop.ok("rm", "viajump", "--purge")
    assert boxes_on(client, "viajump") == []


def test_a_box_name_taken_on_another_host_is_refused(laptop: Laptop, client: docker.DockerClient) -> None:
    laptop.ok("host", "add", "gpu1", "gpu1")
    laptop.ok("host", "add", "gpu2", "gpu2")
    laptop.ok("up", "twin", "--host", "gpu1")
    proc = laptop.devbox("up", "twin", "--host", "gpu2")
    assert proc.returncode == 2
    assert "already have a box named 'twin' on gpu1" in one_line_error(proc)
    laptop.ok("rm", "twin")
    assert boxes_on(client, "twin") == []


def test_jobs_on_a_remote_box_run_log_wait_and_attach_from_the_laptop(laptop: Laptop) -> None:
    laptop.ok("host", "add", "gpu2", "gpu2")
    laptop.ok("up", "far", "--host", "gpu2", "--gpus", "1")
    ran = laptop.devbox("run", "far", "--name", "train", "--wait", "--", "sh", "-c", "echo epoch 1; exit 6")
    assert ran.returncode == 6 and ran.stdout == "epoch 1\n", ran.stderr
    laptop.ok("run", "far", "--name", "bg", "--", "sleep", "300")
    (bg,) = [j for j in json.loads(laptop.ok("jobs", "far", "--json").stdout) if j["name"] == "bg"]
    assert bg["state"] == "running" and bg["gpus"] == ["1"]
    # The job sits in the tmux server that plain ssh to the box (ProxyJump gpu2) sees.
    shown = laptop.user.run(*_tmux_sessions(laptop, "far"))
    assert "bg" in shown.stdout.split(), shown.stderr
    assert "bg: killed by TERM" in laptop.ok("kill", "far", "bg").stdout
    assert laptop.ok("logs", "far", "train").stdout == "epoch 1\n"
    laptop.ok("rm", "far", "--purge")


def test_a_remote_box_s_port_opens_on_the_laptop_through_the_server_hop(laptop: Laptop) -> None:
    laptop.ok("host", "add", "gpu1-behind", "gpu1-behind")  # laptop → bastion → gpu1 → box
    local = free_port()
    laptop.ok("up", "webby", "--host", "gpu1-behind", "--port", f"8888:{local}")
    laptop.ok("run", "webby", "--name", "web", "--", "perl", "-e", SERVER)
    user = laptop.user
    held = user.popen("ssh", "-F", str(user.ssh_config), "-N", "devbox-webby")
    try:
        assert fetch(local).endswith("hello from the box\n")
    finally:
        os.killpg(held.pid, signal.SIGTERM)
        held.wait(timeout=10)
    laptop.ok("rm", "webby", "--purge")


def _tmux_sessions(laptop: Laptop, box: str) -> list[str]:
    return ["ssh", "-F", str(laptop.user.ssh_config), f"devbox-{box}", "tmux ls -F '#{session_name}'"]


def test_a_network_that_lets_boxes_talk_is_refused_and_nothing_is_created(
    laptop: Laptop, client2: docker.DockerClient
) -> None:
    # On gpu2's engine, where no other test keeps a box: the network is only replaceable unused.
    for net in client2.networks.list(names=["devbox-isolated"]):
        net.remove()
    impostor = client2.networks.create("devbox-isolated", driver="bridge")
    try:
        laptop.ok("host", "add", "gpu2", "gpu2")
        proc = laptop.devbox("up", "talky", "--host", "gpu2")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        # The layer build before it talks on stderr too; the failure itself is one line.
        (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert "lets containers reach each other" in line and "docker network rm devbox-isolated" in line
        assert boxes_on(client2, "talky") == []
        assert client2.volumes.list(filters={"label": "devbox.name=talky"}) == []
        impostor.remove()
        laptop.ok("up", "talky", "--host", "gpu2")  # and then devbox makes its own
        (box,) = boxes_on(client2, "talky")
        assert list(box.attrs["NetworkSettings"]["Networks"]) == ["devbox-isolated"]
        laptop.ok("rm", "talky", "--purge")
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            impostor.remove()


# ---------------------------------------------------------------- trust


def test_unknown_server_key_is_refused_until_host_trust(
    laptop: Laptop, env: dict[str, str], client: docker.DockerClient
) -> None:
    with Sshd(env["DEVBOX_TEST_USER2"], server_env(env, env["DOCKER_HOST"], 1)) as stranger:
        stranger.authorize(Path(f"{laptop.key}.pub").read_text())
        before = laptop.known_hosts.read_text()
        added = laptop.devbox("host", "add", "new", f"{stranger.account}@{LOCALHOST}:{stranger.port}")
        # Saved, but not usable yet: exit 1, pointing at `host trust`.
        assert added.returncode == 1 and "devbox host trust new" in added.stdout, added.stdout
        proc = laptop.devbox("up", "nokey", "--host", "new")
        assert proc.returncode == 1
        line = one_line_error(proc)
        fingerprint = subprocess.run(
            ["ssh-keygen", "-l", "-f", str(stranger.host_key_path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[1]
        assert "host key is not in your known_hosts" in line and fingerprint in line
        assert "devbox host trust new" in line
        assert boxes_on(client, "nokey") == []
        assert laptop.known_hosts.read_text() == before

        trusted = laptop.ok("host", "trust", "new", "--yes").stdout
        assert fingerprint in trusted
        assert laptop.known_hosts.read_text().startswith(before)
        assert f"[{LOCALHOST}]:{stranger.port}" in laptop.known_hosts.read_text()
        assert "already" in laptop.ok("host", "trust", "new", "--yes").stdout
        assert laptop.ok("host", "check", "new").stdout.startswith("ok")

        # A changed key is always fatal, and `host trust` will not paper over it.
        stranger.regenerate_host_key()
        subprocess.run(["pkill", "-u", laptop.user.name, "-f", str(laptop.user.home)], check=False)
        proc = laptop.devbox("ls", "--host", "new")
        assert proc.returncode == 1
        assert "CHANGED" in one_line_error(proc)
        proc = laptop.devbox("host", "trust", "new", "--yes")
        assert proc.returncode == 1
        assert "CHANGED" in one_line_error(proc)


# ---------------------------------------------------------------- never hang


def test_a_silent_server_is_one_unreachable_row_within_the_deadline(
    laptop: Laptop, client: docker.DockerClient
) -> None:
    laptop.ok("host", "add", "gpu1", "gpu1")
    laptop.ok("up", "alive", "--host", "gpu1")
    with SilentServer() as silent:
        added = laptop.devbox("host", "add", "hung", f"someone@{LOCALHOST}:{silent.port}")
        assert added.returncode == 1 and "hung is added but failed a check" in added.stderr  # saved
        started = time.monotonic()
        proc = laptop.ok("ls")
        elapsed = time.monotonic() - started
        assert silent.connections >= 1
    assert elapsed < 20, f"ls took {elapsed:.1f} s"
    rows = {ln.split()[0] + " " + ln.split()[1]: ln for ln in proc.stdout.splitlines()[1:]}
    assert "alive gpu1" in rows
    assert "unreachable" in rows["- hung"]
    single = laptop.devbox("ls", "--host", "hung")
    assert single.returncode == 1
    assert "hung" in one_line_error(single)
    laptop.ok("rm", "alive")


def test_the_tui_shows_a_host_that_stops_answering_unreachable_while_the_rest_refresh(
    laptop: Laptop, gpu1: Sshd
) -> None:
    """Textual's Pilot, as the laptop user: gpu1 behind a proxy that freezes mid-run (the sshd and
    the ssh master stay connected, no byte passes), gpu2 alive beside it."""
    user = laptop.user
    with FreezingProxy(gpu1.port) as proxy:
        with user.ssh_config.open("a") as f:
            f.write(f"Host flaky\n    HostName {LOCALHOST}\n    Port {proxy.port}\n    User {gpu1.account}\n")
        laptop.trust_line(gpu1.known_hosts_line(f"[{LOCALHOST}]:{proxy.port}"))
        laptop.ok("host", "add", "flaky", "flaky")
        laptop.ok("host", "add", "gpu2", "gpu2")
        laptop.ok("up", "steady", "--host", "gpu2")
        python = str(Path(user.env["DEVBOX_VENV"]) / "bin" / "python")
        driver = user.popen(python, str(PILOT), "unreachable", "flaky", "gpu2")
        watchdog = threading.Timer(300, driver.kill)
        watchdog.start()
        try:
            first = driver.stdout.readline() if driver.stdout else ""
            assert first.strip() == "READY", first + driver.communicate()[1][-3000:]
            proxy.freeze()
            out, err = driver.communicate()
        finally:
            watchdog.cancel()
    assert driver.returncode == 0, f"{out}\n{err[-3000:]}"
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["hosts"]["flaky"] is False and seen["hosts"]["gpu2"] is True
    assert "flaky unreachable" in seen["status"] and "gpu2 updated" in seen["status"]
    assert any(r[0] == "flaky" and "unreachable" in " ".join(r) for r in seen["rows"]), seen["rows"]
    assert any(r[:2] == ["gpu2", "steady"] for r in seen["rows"]), seen["rows"]
    # gpu2 kept its cadence while flaky hung (refresh 1 s, flaky's deadline 4 s), and after.
    assert seen["live_updates_while_hanging"] >= 2
    assert seen["live_updates_after"] >= 3
    assert seen["filter_opened"] is True
    laptop.ok("rm", "steady", "--host", "gpu2", "--purge")


# ---------------------------------------------------------------- placement


def test_auto_placement_picks_the_host_with_free_gpus_and_never_shares_one(
    laptop: Laptop, client: docker.DockerClient, client2: docker.DockerClient
) -> None:
    laptop.ok("host", "add", "gpu1", "gpu1")
    laptop.ok("host", "add", "gpu2", "gpu2")
    # Only gpu2 has 3 GPUs.
    placed = laptop.ok("up", "big", "--host", "auto", "--gpu-count", "3")
    assert "Placed on gpu2" in placed.stderr
    assert "skipped gpu1: only 2 of 2 GPUs free" in placed.stderr
    assert [c.labels["devbox.gpus"] for c in boxes_on(client2, "big")] != []
    laptop.ok("rm", "big", "--purge")

    # Capacity for three 2-GPU boxes: two on gpu2, one on gpu1. Three at once get exactly that.
    names = ["race-a", "race-b", "race-c"]
    with ThreadPoolExecutor(3) as pool:
        procs = list(pool.map(lambda n: laptop.devbox("up", n, "--host", "auto", "--gpu-count", "2"), names))
    for p in procs:
        assert p.returncode == 0, p.stderr
    held = {}
    for engine, c in (("gpu1", client), ("gpu2", client2)):
        for n in names:
            for ct in boxes_on(c, n):
                held.setdefault(engine, []).extend(ct.labels["devbox.gpus"].split(","))
    assert sorted(held["gpu1"]) == ["0", "1"]
    assert sorted(held["gpu2"]) == ["0", "1", "2", "3"], "no GPU is shared"
    full = laptop.devbox("up", "race-d", "--host", "auto", "--gpu-count", "1")
    assert full.returncode == 1
    assert "no host has 1 free GPU" in one_line_error(full)


def test_local_boxes_keep_working_beside_remote_hosts(env: dict[str, str], laptop: Laptop, client) -> None:
    laptop.user.env["DOCKER_HOST"] = env["DOCKER_HOST"]
    laptop.ok("host", "add", "gpu2", "gpu2")
    laptop.ok("up", "here")
    (ct,) = boxes_on(client, "here")
    assert ct.labels["devbox.owner"] == laptop.user.name
    rows = {(b["name"], b["host"]) for b in ls_json(laptop)}
    assert ("here", "local") in rows
    who = laptop.user.run(
        "ssh", "-F", str(laptop.user.ssh_config), "-o", "BatchMode=yes", "devbox-here", "id -u"
    )
    assert who.stdout.strip() == str(laptop.user.uid)
    laptop.ok("rm", "here", "--purge")
    assert boxes_on(client, "here") == []
