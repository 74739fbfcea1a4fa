"""The remote-host test infrastructure works: an unprivileged sshd on 127.0.0.1 reached with the
system ssh client (directly and through a jump host) lands on the test engine and the fake GPUs,
a silent server makes ssh give up at its deadline, and the second engine publishes ports on
127.0.0.1."""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator

import docker
import pytest

from .conftest import User, make_user
from .servers import LOCALHOST, SilentServer, Sshd, make_client_key, write_client_config

FAKE_GPUS = 2
INFRA_LABEL = "devbox-test.infra"


@pytest.fixture(scope="module")
def host2(env: dict[str, str]) -> str:
    host = os.environ.get("DEVBOX_TEST_DOCKER_HOST2")
    if not host:
        pytest.fail("the infra tests need DEVBOX_TEST_DOCKER_HOST2: run them through `bash tests/run.sh`")
    return host


@pytest.fixture
def laptop(env: dict[str, str]) -> Iterator[User]:
    """devbox-tester on their laptop: a temp HOME with a key pair and an empty ssh config."""
    u = make_user(env)
    yield u
    shutil.rmtree(u.home, ignore_errors=True)


@pytest.fixture
def laptop_key(laptop: User) -> str:
    _, public = make_client_key(laptop.home, laptop.uid, laptop.gid)
    return public


def remote_env(env: dict[str, str]) -> dict[str, str]:
    """What a login on the stand-in GPU host sees: the test engine and the fake nvidia-smi."""
    return {
        "DOCKER_HOST": env["DOCKER_HOST"],
        "PATH": f"{env['DEVBOX_TEST_GPU_PATH']}:/usr/local/bin:/usr/bin:/bin",
        "FAKE_NVIDIA_SMI_COUNT": str(FAKE_GPUS),
    }


@pytest.fixture
def gpu_host(env: dict[str, str], laptop_key: str) -> Iterator[Sshd]:
    with Sshd(env["DEVBOX_TEST_USER2"], remote_env(env)) as server:
        server.authorize(laptop_key)
        yield server


def host_block(laptop: User, server: Sshd, **extra: str) -> dict[str, str | int]:
    return {
        "HostName": LOCALHOST,
        "Port": server.port,
        "User": server.account,
        "IdentityFile": str(laptop.home / ".ssh" / "id_ed25519"),
        "IdentitiesOnly": "yes",
        "UserKnownHostsFile": str(laptop.home / ".ssh" / "known_hosts"),
        "StrictHostKeyChecking": "yes",
        **extra,
    }


def pin(laptop: User, *servers: Sshd) -> None:
    known_hosts = laptop.home / ".ssh" / "known_hosts"
    known_hosts.write_text("".join(s.known_hosts_line() + "\n" for s in servers))
    os.chown(known_hosts, laptop.uid, laptop.gid)


def remote(laptop: User, alias: str, command: str) -> str:
    proc = laptop.ssh(alias, command)
    assert proc.returncode == 0, f"ssh {alias} {command!r} failed ({proc.returncode}):\n{proc.stderr}"
    return proc.stdout.strip()


def test_login_runs_as_the_sshd_account_against_the_test_engine_and_fake_gpus(
    env: dict[str, str], client: docker.DockerClient, laptop: User, gpu_host: Sshd
) -> None:
    pin(laptop, gpu_host)
    write_client_config(
        laptop.ssh_config, {"gpu1": host_block(laptop, gpu_host)}, owner=(laptop.uid, laptop.gid)
    )

    assert remote(laptop, "gpu1", "id -u") == "4343"
    gpus = remote(laptop, "gpu1", "nvidia-smi -L").splitlines()
    assert len(gpus) == FAKE_GPUS and all(line.startswith("GPU ") for line in gpus), gpus
    assert (
        remote(laptop, "gpu1", "docker version --format '{{.Server.Version}}'") == client.version()["Version"]
    )
    # The data root names the engine: the first and second test engines differ there.
    assert (
        remote(laptop, "gpu1", "docker info --format '{{.DockerRootDir}}'") == client.info()["DockerRootDir"]
    )


def test_proxyjump_goes_through_the_jump_sshd(
    env: dict[str, str], laptop: User, laptop_key: str, gpu_host: Sshd
) -> None:
    with Sshd(env["DEVBOX_TEST_USER2"]) as bastion:
        bastion.authorize(laptop_key)
        pin(laptop, gpu_host, bastion)
        hosts = {
            "bastion": host_block(laptop, bastion),
            "gpu1": host_block(laptop, gpu_host, ProxyJump="bastion"),
        }
        write_client_config(laptop.ssh_config, hosts, owner=(laptop.uid, laptop.gid))

        assert remote(laptop, "gpu1", "id -u") == "4343"
        forwarded = rf"direct_tcpip: originator .* target {re.escape(LOCALHOST)} port {gpu_host.port}\b"
        assert re.search(forwarded, bastion.log_text()), bastion.log_text()[-2000:]


def test_regenerated_host_key_is_refused_by_a_pinned_client(laptop: User, gpu_host: Sshd) -> None:
    pin(laptop, gpu_host)
    write_client_config(
        laptop.ssh_config, {"gpu1": host_block(laptop, gpu_host)}, owner=(laptop.uid, laptop.gid)
    )
    old = gpu_host.host_key_public_line

    assert gpu_host.regenerate_host_key() != old
    proc = laptop.ssh("gpu1", "true")
    assert proc.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in proc.stderr


def test_silent_server_makes_ssh_give_up_at_its_connect_timeout(laptop: User) -> None:
    with SilentServer() as silent:
        block = {"HostName": LOCALHOST, "Port": silent.port, "ConnectTimeout": 2}
        write_client_config(laptop.ssh_config, {"hung": block}, owner=(laptop.uid, laptop.gid))
        started = time.monotonic()
        proc = laptop.ssh("hung", "true")
        elapsed = time.monotonic() - started

        assert proc.returncode == 255
        assert "banner exchange" in proc.stderr, proc.stderr
        assert 1.5 < elapsed < 10, elapsed
        assert silent.connections >= 1


def _ssh_banner(port: int, deadline: float) -> bytes:
    """The first line the server on 127.0.0.1:`port` sends; docker-proxy accepts before the
    container's sshd listens (and then hangs up), so retry until `deadline`."""
    while True:
        try:
            with socket.create_connection((LOCALHOST, port), timeout=2) as s:
                banner = s.recv(256)
            if banner:
                return banner
        except OSError:
            pass
        if time.monotonic() > deadline:
            return b""
        time.sleep(0.2)


def test_second_engine_publishes_a_container_port_on_localhost(
    env: dict[str, str], client: docker.DockerClient, host2: str
) -> None:
    engine2 = docker.DockerClient(base_url=host2)
    try:
        # Two engines, not two sockets of one: own data root, and (what tells hosts apart) own ID.
        assert engine2.info()["DockerRootDir"] != client.info()["DockerRootDir"]
        assert engine2.info()["ID"] != client.info()["ID"]
        container = engine2.containers.run(
            env["DEVBOX_TEST_IMAGE"],
            ["bash", "-c", "mkdir -p /run/sshd && ssh-keygen -A && exec /usr/sbin/sshd -D -e"],
            name=f"infra-{uuid.uuid4().hex[:8]}",
            labels={INFRA_LABEL: "1"},
            ports={"22/tcp": (LOCALHOST, None)},
            detach=True,
        )
        container.reload()
        binding = container.attrs["NetworkSettings"]["Ports"]["22/tcp"][0]
        assert binding["HostIp"] == LOCALHOST
        assert container.attrs["NetworkSettings"]["IPAddress"].startswith("10.213.0.")

        banner = _ssh_banner(int(binding["HostPort"]), time.monotonic() + 20)
        assert banner.startswith(b"SSH-2.0-OpenSSH"), (banner, container.logs()[-2000:])
    finally:
        for ct in engine2.containers.list(all=True, filters={"label": INFRA_LABEL}):
            ct.remove(force=True)
        engine2.close()
