"""Ports, builds and devcontainer.json end to end, as an ordinary user: a server in the box is
reached on this machine's 127.0.0.1 through the box's LocalForward and through `devbox forward`;
a local port in use is one line naming it; a project's Dockerfile is built and used; a
devcontainer.json in VS Code's style (comments, trailing commas, ${localWorkspaceFolder}) becomes
the box it describes."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from .conftest import User
from .servers import free_port

# A web server in the box (perl is in every Debian, python is not in the test image): answers
# each request with one line, as Jupyter or TensorBoard would with a page.
SERVER = (
    'use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 8888, '
    "Listen => 5, ReuseAddr => 1) or die $!; while (my $c = $s->accept) { "
    'print $c "HTTP/1.0 200 OK\\r\\n\\r\\nhello from the box\\n"; close $c }'
)


def fetch(port: int, timeout: float = 60.0) -> str:
    """GET / on 127.0.0.1:`port`, retried until it answers (the forward or the server may still be
    starting); the body."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := conn.recv(4096):
                    data += chunk
            if b"hello" in data:
                return data.decode()
            last = data.decode(errors="replace")
        except OSError as exc:
            last = str(exc)
        time.sleep(0.3)
    raise AssertionError(f"nothing answered on 127.0.0.1:{port} within {timeout} s ({last})")


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def served(user: User, name: str) -> Iterator[tuple[str, int]]:
    """A box made with --port 8888:LOCAL and a web server on its 8888 (a devbox job)."""
    local = free_port()
    user.ok("up", name, "--port", f"8888:{local}")
    user.ok("run", name, "--name", "web", "--", "perl", "-e", SERVER)
    yield name, local
    user.devbox("rm", name, "--purge")


def test_a_server_in_the_box_is_reached_through_the_localforward_while_ssh_is_connected(
    user: User, served: tuple[str, int]
) -> None:
    name, local = served
    block = user.ok("ssh-config", name).stdout
    assert f"LocalForward 127.0.0.1:{local} 127.0.0.1:8888" in block
    assert not listening(local), "nothing forwards before ssh connects"
    held = user.popen("ssh", "-F", str(user.ssh_config), "-N", f"devbox-{name}")
    try:
        assert fetch(local).endswith("hello from the box\n")
    finally:
        os.killpg(held.pid, signal.SIGTERM)
        held.wait(timeout=10)
    # `devbox ls --json` says which ports the box forwards.
    found = next(b for b in json.loads(user.ok("ls", "--json").stdout) if b["name"] == name)
    assert found["ports"] == [f"8888:{local}"]


def test_devbox_forward_holds_a_port_until_ctrl_c_and_refuses_a_port_in_use(
    user: User, served: tuple[str, int]
) -> None:
    name, _ = served
    local = free_port()
    fwd = user.popen(str(Path(user.env["DEVBOX_VENV"]) / "bin" / "devbox"), "forward", name, f"8888:{local}")
    try:
        assert fwd.stderr is not None
        line = fwd.stderr.readline()
        assert f"Forwarding http://127.0.0.1:{local} → {name}:8888" in line, line + fwd.stderr.read()
        assert fetch(local).endswith("hello from the box\n")
        # A second forward to the same local port: one line naming it, with a free one to use.
        again = user.devbox("forward", name, f"8888:{local}")
        assert again.returncode == 2, again.stderr
        lines = [ln for ln in again.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, again.stderr
        assert lines[0].startswith(f"error: port {local} on this machine is already in use"), again.stderr
        assert "Traceback" not in again.stderr and f"devbox forward {name} 8888:" in again.stderr
    finally:
        os.killpg(fwd.pid, signal.SIGINT)
        fwd.wait(timeout=30)
    deadline = time.monotonic() + 10
    while listening(local) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not listening(local), "Ctrl-C must close the forward on the shared connection"


def test_up_warns_when_a_port_it_forwards_is_taken_here_and_port_flags_change_the_entry(
    user: User, name: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            made = user.ok("up", name, "--port", str(port))
            assert f"warning: port {port} on this machine is already in use" in made.stderr, made.stderr
            # A later `up --port` changes the forwards without recreating the box.
            again = user.ok("up", name, "--port", "6006:16006")
            assert "already exists" not in again.stderr
            block = user.ok("ssh-config", name).stdout
            assert "LocalForward 127.0.0.1:16006 127.0.0.1:6006" in block
            assert f"127.0.0.1:{port} " not in block
            # Stop and start keep the forwards `up` last asked for.
            user.ok("stop", name)
            user.ok("start", name)
            assert "LocalForward 127.0.0.1:16006 127.0.0.1:6006" in user.ok("ssh-config", name).stdout
        finally:
            user.devbox("rm", name, "--purge")


# ---------------------------------------------------------------- build


def test_a_dockerfile_in_devbox_yaml_is_built_with_its_args_and_used(
    env: dict[str, str], user: User, client: docker.DockerClient, name: str
) -> None:
    project = user.home / f"proj-{name}"
    (project / "docker").mkdir(parents=True)
    (project / "docker" / "Dockerfile").write_text(
        f"FROM {env['DEVBOX_TEST_IMAGE']}\nARG GREETING=unset\nCOPY note.txt /etc/note.txt\n"
        'RUN echo "$GREETING" > /etc/greeting\n'
    )
    (project / "note.txt").write_text("from the context\n")
    (project / "devbox.yaml").write_text(
        f"name: {name}\nbuild:\n  dockerfile: docker/Dockerfile\n  context: .\n"
        "  args:\n    GREETING: hi there\n"
    )
    for path in (project, project / "docker", project / "docker" / "Dockerfile", project / "note.txt"):
        os.chown(path, user.uid, user.gid)
    os.chown(project / "devbox.yaml", user.uid, user.gid)
    try:
        made = user.ok("up", cwd=project)
        assert "Building docker/Dockerfile on local" in made.stderr, made.stderr
        assert (
            user.ssh(f"devbox-{name}", "cat /etc/greeting /etc/note.txt").stdout
            == "hi there\nfrom the context\n"
        )
        tags = [t for img in client.images.list(name=f"devbox-build/{user.name}-{name}") for t in img.tags]
        assert tags and all(t.startswith(f"devbox-build/{user.name}-{name}:") for t in tags)
        # Nothing changed: the second up reuses the box (the build is cached, same image).
        again = user.ok("up", cwd=project)
        assert "already exists" not in again.stderr
        # A changed Dockerfile is a changed image: up says so instead of running the old one.
        (project / "docker" / "Dockerfile").write_text(
            (project / "docker" / "Dockerfile").read_text() + "RUN touch /etc/changed\n"
        )
        changed = user.devbox("up", cwd=project)
        assert changed.returncode == 2 and "already exists with other options (image" in changed.stderr
    finally:
        user.devbox("rm", name, "--purge", cwd=project)
    assert not client.images.list(name=f"devbox-build/{user.name}-{name}"), "rm --purge untags the builds"


def test_a_failing_dockerfile_is_one_line_with_its_output_and_creates_nothing(
    env: dict[str, str], user: User, client: docker.DockerClient, name: str
) -> None:
    dockerfile = user.home / f"Dockerfile-{name}"
    dockerfile.write_text(f"FROM {env['DEVBOX_TEST_IMAGE']}\nRUN echo about to fail && false\n")
    os.chown(dockerfile, user.uid, user.gid)
    failed = user.devbox("up", name, "--build", str(dockerfile))
    assert failed.returncode == 1
    error = [ln for ln in failed.stderr.splitlines() if ln.startswith("error:")]
    assert len(error) == 1 and f"building Dockerfile-{name} failed" in error[0], failed.stderr
    assert "about to fail" in error[0] and "Traceback" not in failed.stderr
    assert not client.containers.list(all=True, filters={"label": f"devbox.name={name}"})


# ---------------------------------------------------------------- devcontainer.json

DEVCONTAINER = """\
// VS Code wrote most of this.
{
    "name": "Research env",  // free text: not a box name
    "image": "%(image)s",
    "mounts": [
        "source=${localWorkspaceFolder}/data,target=/workspace/data,type=bind,readonly",
    ],
    "workspaceFolder": "/workspace",
    "containerEnv": { "WANDB_MODE": "offline", },
    "forwardPorts": [8888],
    "postCreateCommand": "echo created >> ~/created",
    "features": { "ghcr.io/devcontainers/features/common-utils:2": {} },
    "customizations": { "vscode": { "extensions": ["ms-python.python"] } },
}
"""


def test_up_in_a_folder_with_a_devcontainer_json_makes_the_box_it_describes(
    env: dict[str, str], user: User, client: docker.DockerClient
) -> None:
    folder = user.home / "research"
    (folder / ".devcontainer").mkdir(parents=True)
    (folder / "data").mkdir()
    (folder / "data" / "x.csv").write_text("1,2\n")
    (folder / ".devcontainer" / "devcontainer.json").write_text(
        DEVCONTAINER % {"image": env["DEVBOX_TEST_IMAGE"]}
    )
    for path in (folder, folder / ".devcontainer", folder / "data", folder / "data" / "x.csv"):
        os.chown(path, user.uid, user.gid)
    try:
        made = user.ok("up", cwd=folder)
        warning = [ln for ln in made.stderr.splitlines() if "not applied" in ln]
        assert len(warning) == 1, made.stderr
        assert "features" in warning[0] and "customizations" in warning[0]
        out = user.ssh(
            "devbox-research", "cat /workspace/data/x.csv; echo $WANDB_MODE; pwd; cat ~/created"
        ).stdout
        assert out == "1,2\noffline\n/workspace\ncreated\n", out
        assert "LocalForward 127.0.0.1:8888 127.0.0.1:8888" in user.ok("ssh-config", "research").stdout
        user.ok("up", cwd=folder)  # again: the box is reused and postCreateCommand does not run twice
        assert user.ssh("devbox-research", "cat ~/created").stdout == "created\n"
    finally:
        user.devbox("rm", "research", "--purge")
