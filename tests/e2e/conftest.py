"""End-to-end fixtures: a real dockerd (started by tests/run.sh), an ordinary user in the docker
group driving the real `devbox` CLI through runuser, a temporary HOME, and cleanup of every
container, volume and image tag the tests create."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import paramiko
import pytest

REQUIRED = (
    "DOCKER_HOST",
    "DEVBOX_TEST_USER",
    "DEVBOX_TEST_USER2",
    "DEVBOX_TEST_VENV",
    "DEVBOX_TEST_GPU_PATH",
    "DEVBOX_TEST_IMAGE",
    "DEVBOX_TEST_MIN_IMAGE",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def env() -> dict[str, str]:
    missing = [k for k in REQUIRED if not os.environ.get(k)]
    if missing:
        pytest.fail(
            f"e2e tests need {', '.join(missing)}: run them through `bash tests/run.sh`", pytrace=False
        )
    return {k: os.environ[k] for k in REQUIRED}


@pytest.fixture(scope="session")
def client(env: dict[str, str]) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=env["DOCKER_HOST"])
    images_before = image_tags(c)
    yield c
    _cleanup(c, images_before)
    c.close()


def _cleanup(c: docker.DockerClient, images_before: set[str]) -> None:
    # ssh ControlPersist masters and agents the test users left behind.
    for account in ("DEVBOX_TEST_USER", "DEVBOX_TEST_USER2"):
        subprocess.run(["pkill", "-u", os.environ[account]], check=False)
    remove_devbox_objects(c, images_before)


def image_tags(c: docker.DockerClient) -> set[str]:
    return {t for img in c.images.list() for t in img.tags}


def remove_devbox_objects(c: docker.DockerClient, images_before: set[str]) -> None:
    """Every box, lock, home volume and devbox network on engine `c`, and every image tag made since
    `images_before`."""
    for ct in c.containers.list(all=True, filters={"label": "devbox.name"}):
        ct.remove(force=True)
    for ct in c.containers.list(all=True, filters={"label": "devbox.lock"}):
        ct.remove(force=True)
    for vol in c.volumes.list(filters={"label": "devbox.name"}):
        vol.remove(force=True)
    for net in c.networks.list(filters={"label": "devbox.network"}):
        net.remove()
    for img in c.images.list():
        for tag in img.tags:
            if tag not in images_before:
                c.images.remove(tag, force=True)


@dataclass
class User:
    """The unprivileged test user, with a fresh HOME, running devbox as a person would."""

    name: str
    uid: int
    gid: int
    home: Path
    env: dict[str, str] = field(default_factory=dict)

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**self.env, **(extra or {})}

    def argv(
        self, *argv: str | Path, extra_env: dict[str, str] | None = None, drop: tuple[str, ...] = ()
    ) -> list[str]:
        """`argv` as this user would run it: runuser, and only their environment (less `drop`)."""
        env = [f"{k}={v}" for k, v in self.environ(extra_env).items() if k not in drop]
        return ["runuser", "-u", self.name, "--", "env", "-i", *env, *(str(a) for a in argv)]

    def run(
        self,
        *argv: str,
        extra_env: dict[str, str] | None = None,
        timeout: float = 600,
        input: str | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*argv, extra_env=extra_env),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            cwd=cwd or self.home,
        )

    def popen(self, *argv: str) -> subprocess.Popen[str]:
        """`argv` as this user, in the background, stdout and stderr piped; in a session of its own
        so Ctrl-C (os.killpg) reaches the whole group, as a terminal sends it (runuser does not
        pass SIGINT on)."""
        return subprocess.Popen(
            self.argv(*argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.home,
            start_new_session=True,
        )

    def devbox(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        return self.run(str(Path(self.env["DEVBOX_VENV"]) / "bin" / "devbox"), *args, **kw)

    def ok(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        proc = self.devbox(*args, **kw)
        assert proc.returncode == 0, (
            f"devbox {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
        return proc

    def ssh(
        self, alias: str, *command: str, options: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            "ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", *options, alias, *command, timeout=60
        )

    @property
    def ssh_config(self) -> Path:
        return self.home / ".ssh" / "config"

    @property
    def key_path(self) -> Path:
        return self.home / ".config" / "devbox" / "id_ed25519"

    def paramiko(
        self, box: dict, username: str | None = None, key: paramiko.PKey | None = None
    ) -> paramiko.SSHClient:
        """A real paramiko login to `box` (an `ls --json` entry) against its pinned host key."""
        keytype, blob = self.pinned_host_key(box["ssh_alias"])
        client = paramiko.SSHClient()
        client.get_host_keys().add(
            f"[127.0.0.1]:{box['port']}",
            keytype,
            paramiko.PKey.from_type_string(keytype, base64.b64decode(blob)),
        )
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            "127.0.0.1",
            port=box["port"],
            username=username or self.name,
            pkey=key or paramiko.PKey.from_path(self.key_path),
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
        return client

    def pinned_host_key(self, alias: str) -> tuple[str, str]:
        for line in (self.home / ".config" / "devbox" / "known_hosts").read_text().splitlines():
            host, keytype, blob = line.split()[:3]
            if host == alias:
                return keytype, blob
        raise AssertionError(f"no pinned key for {alias}")


def make_user(env: dict[str, str], account: str = "DEVBOX_TEST_USER") -> User:
    pw = pwd.getpwnam(env[account])
    home = Path(tempfile.mkdtemp(prefix="devbox-e2e-home-", dir="/tmp"))
    os.chown(home, pw.pw_uid, pw.pw_gid)
    home.chmod(0o700)
    user_env = {
        "HOME": str(home),
        "USER": pw.pw_name,
        "LOGNAME": pw.pw_name,
        "XDG_CONFIG_HOME": str(home / ".config"),
        "DOCKER_HOST": env["DOCKER_HOST"],
        "PATH": f"{env['DEVBOX_TEST_GPU_PATH']}:{env['DEVBOX_TEST_VENV']}/bin:/usr/local/bin:/usr/bin:/bin",
        "DEVBOX_IMAGE": env["DEVBOX_TEST_IMAGE"],
        "DEVBOX_VENV": env["DEVBOX_TEST_VENV"],
        "LANG": "C.UTF-8",
        "COLUMNS": "200",
    }
    return User(pw.pw_name, pw.pw_uid, pw.pw_gid, home, user_env)


@pytest.fixture(scope="module")
def user(env: dict[str, str], client: docker.DockerClient) -> Iterator[User]:
    u = make_user(env)
    yield u
    for ct in client.containers.list(all=True, filters={"label": f"devbox.owner={u.name}"}):
        ct.remove(force=True)
    # Home volumes a failed test left (by name: one Docker made itself would carry no labels).
    for vol in client.volumes.list():
        if vol.name.startswith(f"devbox-{u.name}."):
            vol.remove(force=True)
    shutil.rmtree(u.home, ignore_errors=True)


@pytest.fixture
def fresh_user(env: dict[str, str], client: docker.DockerClient) -> Iterator[User]:
    """A user with an empty HOME for tests that must start from nothing."""
    u = make_user(env)
    yield u
    shutil.rmtree(u.home, ignore_errors=True)


@pytest.fixture
def colleague(env: dict[str, str], client: docker.DockerClient) -> Iterator[User]:
    """A second ordinary user on the same engine, with boxes of their own."""
    u = make_user(env, "DEVBOX_TEST_USER2")
    yield u
    for ct in client.containers.list(all=True, filters={"label": f"devbox.owner={u.name}"}):
        ct.remove(force=True)
    for vol in client.volumes.list(filters={"label": f"devbox.owner={u.name}"}):
        vol.remove(force=True)
    shutil.rmtree(u.home, ignore_errors=True)


@pytest.fixture
def name() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def derived_image(env: dict[str, str], client: docker.DockerClient) -> Iterator:
    """Build a throwaway base image from a Dockerfile body (FROM the test base); removed afterwards."""
    tags: list[str] = []

    def build(body: str, base: str | None = None) -> str:
        tag = f"devbox-test/derived:{uuid.uuid4().hex[:10]}"
        dockerfile = f"FROM {base or env['DEVBOX_TEST_IMAGE']}\n{body}\n"
        client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, forcerm=True)
        tags.append(tag)
        return tag

    yield build
    for tag in tags:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(tag, force=True)


def box_container(client: docker.DockerClient, name: str):
    found = client.containers.list(all=True, filters={"label": f"devbox.name={name}"})
    assert found, f"no container for box {name}"
    return found[0]


def devbox_containers(client: docker.DockerClient, name: str) -> list:
    return client.containers.list(all=True, filters={"label": f"devbox.name={name}"})


@contextlib.contextmanager
def holding_proxy(
    docker_host: str, marker: bytes, hold_s: float, seen: list[str] | None = None
) -> Iterator[tuple[str, threading.Event]]:
    """A unix socket passing Docker API traffic on to `docker_host`, holding each request whose
    first line holds `marker` for `hold_s` first: one step of a devbox run made slow on purpose.
    Yields the socket's path and an event set once a request is held; `seen` collects each
    request's method and path."""
    upstream = docker_host.removeprefix("unix://")
    where = tempfile.mkdtemp(prefix="devbox-proxy-")
    os.chmod(where, 0o755)  # the test user connects to it
    path = os.path.join(where, "docker.sock")
    held = threading.Event()
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    os.chmod(path, 0o666)
    server.listen()

    def pump(src: socket.socket, dst: socket.socket, hold: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                first = data.split(b"\r\n", 1)[0]
                if hold and seen is not None and first.split(b" ")[0] in (b"GET", b"POST", b"PUT", b"DELETE"):
                    seen.append(" ".join(first.decode().split()[:2]))
                if hold and marker in first:
                    held.set()
                    time.sleep(hold_s)
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                up = socket.socket(socket.AF_UNIX)
                up.connect(upstream)
                threading.Thread(target=pump, args=(conn, up, True), daemon=True).start()
                threading.Thread(target=pump, args=(up, conn, False), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield path, held
    finally:
        server.close()
        shutil.rmtree(where, ignore_errors=True)
