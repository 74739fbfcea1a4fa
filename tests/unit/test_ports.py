"""Port forwards and Dockerfile builds as specs: --port into LocalForward lines the real OpenSSH
client reads back, the local-port checks `devbox forward` and `up` make, --build's checks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devbox import forward, paths, spec, sshconfig
from devbox.errors import UsageError
from devbox.sshconfig import HostEntry


@pytest.fixture(autouse=True)
def home(clean_home: Path) -> Path:
    return clean_home


def entry(forwards: tuple[str, ...] = ()) -> HostEntry:
    return HostEntry(
        "devbox-x", 40123, "alice", paths.user_key_path(), paths.known_hosts_path(), forwards=forwards
    )


def ssh_forwards(config: Path, alias: str) -> list[str]:
    """Every LocalForward the real OpenSSH client makes of `config` for `alias` (`ssh -G`)."""
    out = subprocess.run(
        ["ssh", "-G", "-F", str(config), alias],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("localforward ")]


def test_ports_become_localforwards_on_loopback_that_openssh_reads(home: Path) -> None:
    sshconfig.upsert(entry(("8888", "6006:16006")))
    found = ssh_forwards(sshconfig.managed_config_path(), "devbox-x")
    assert found == ["[127.0.0.1]:8888 [127.0.0.1]:8888", "[127.0.0.1]:16006 [127.0.0.1]:6006"]


def test_forwards_read_back_from_our_file(home: Path) -> None:
    sshconfig.upsert(entry(("8888", "6006:16006")))
    assert sshconfig.read_entries() == [entry(("8888", "6006:16006"))]


def test_an_entry_without_ports_has_no_localforward(home: Path) -> None:
    sshconfig.upsert(entry())
    assert "LocalForward" not in sshconfig.managed_config_path().read_text()
    assert ssh_forwards(sshconfig.managed_config_path(), "devbox-x") == []


@pytest.mark.parametrize("bad", ["", "x", "8888:", "1:2:3", "8888 -oProxyCommand=x"])
def test_an_entry_refuses_a_forward_that_is_not_ports(bad: str) -> None:
    with pytest.raises(ValueError, match="port forward"):
        entry((bad,))


def test_a_hand_edited_localforward_elsewhere_makes_the_block_unreadable_not_wrong(home: Path) -> None:
    sshconfig.upsert(entry(("8888",)))
    ours = sshconfig.managed_config_path()
    ours.write_text(ours.read_text() + "    LocalForward 0.0.0.0:1 example.com:2\n")
    assert sshconfig.read_entries() == []  # read back as "?": never a forward devbox did not write


def test_from_flags_takes_ports_and_refuses_two_on_one_local_port() -> None:
    facts = spec.HostFacts.unchecked()
    made = spec.from_flags(name="x", image="ubuntu:24.04", ports=["8888", "6006:16006", "8888"], facts=facts)
    assert made.ports == ("8888", "6006:16006")
    assert "ports" not in made.fingerprint()  # a new port never recreates a box
    with pytest.raises(UsageError, match="both forward to port 8888"):
        spec.from_flags(name="x", image="ubuntu:24.04", ports=["8888", "9999:8888"], facts=facts)
    with pytest.raises(UsageError, match="'70000' is not a port"):
        spec.from_flags(name="x", image="ubuntu:24.04", ports=["70000"], facts=facts)


def test_build_is_checked_and_replaces_the_image(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    made = spec.from_flags(
        name="x",
        image="ubuntu:24.04",
        build=spec.Build.checked(str(tmp_path / "Dockerfile"), None, ["A=1"]),
        facts=spec.HostFacts.unchecked(),
    )
    assert made.build == spec.Build(str(tmp_path / "Dockerfile"), str(tmp_path), ("A=1",))
    assert made.image == ""  # named once built, on the box's host
    from_file = {"dockerfile": str(tmp_path / "Dockerfile"), "context": str(tmp_path), "args": ()}
    again = spec.from_flags(name="x", image="ubuntu:24.04", build=from_file, facts=spec.HostFacts.unchecked())
    assert again.build == spec.Build(str(tmp_path / "Dockerfile"), str(tmp_path), ())


@pytest.mark.parametrize(
    ("dockerfile", "context", "args", "message"),
    [
        ("missing/Dockerfile", None, (), "does not exist"),
        ("Dockerfile", "nowhere", (), "is not a folder"),
        ("Dockerfile", None, ("NOEQUALS",), "is not NAME=VALUE"),
        ("Dockerfile", None, ("A B=1",), "is not NAME=VALUE"),
    ],
)
def test_build_refuses_what_docker_build_would(
    tmp_path: Path, dockerfile: str, context: str | None, args: tuple[str, ...], message: str
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(UsageError, match=message):
        spec.Build.checked(str(tmp_path / dockerfile), context and str(tmp_path / context), args)


def test_a_local_port_in_use_is_refused_naming_it_and_a_free_one() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert forward.in_use(port)
        assert forward.busy((f"80:{port}",)) == [(port, "is already in use")]
        with pytest.raises(UsageError) as caught:
            forward.plan("devbox-x", "x", f"8888:{port}")
        assert f"port {port} on this machine is already in use" in caught.value.message
        suggested = int(caught.value.hint.rsplit(":", 1)[1].rstrip("`"))
        assert suggested != port and not forward.in_use(suggested)
    assert not forward.in_use(port)
    assert forward.plan("devbox-x", "x", f"8888:{port}") == forward.Forward("devbox-x", 8888, port)


def test_a_privileged_local_port_is_called_privileged_not_in_use() -> None:
    # As an ordinary user (root may listen anywhere): port 81, free, is below the first
    # unprivileged port (1024 unless the system says otherwise).
    first = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    assert first > 81, "this system lets anyone listen on port 81"
    code = "from devbox import forward; print(forward.unusable(81)); print(forward.unusable(0))"
    argv = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        user = os.environ.get("DEVBOX_TEST_USER")
        if not user:
            pytest.fail("needs DEVBOX_TEST_USER: run through `bash tests/run.sh`")
        argv = ["runuser", "-u", user, "--", *argv]
    env = {"PATH": "/usr/sbin:/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    # From / : the checkout's devbox/ folder would shadow the installed package.
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=env, cwd="/")
    assert done.stdout.splitlines() == ["is privileged: only root may listen on it", "None"], done.stderr


def test_forward_refuses_a_bad_port_in_one_line() -> None:
    with pytest.raises(UsageError, match="'http' is not a port"):
        forward.plan("devbox-x", "x", "http")
