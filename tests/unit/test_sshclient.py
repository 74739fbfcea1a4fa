"""Logging in to a box with paramiko: a refused key is blamed on the key that was used."""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest
from devbox.keys.keypair import Identity, generate_ed25519

from devbox import sshclient
from devbox.errors import DevboxError

TARGET = sshclient.Target("devbox-box", 2222, "alice")
LINE = generate_ed25519("alice@laptop").public_line


def refused_login(monkeypatch: pytest.MonkeyPatch, identity: Identity) -> DevboxError:
    def connect(*_args: object, **_kwargs: object) -> None:
        raise paramiko.AuthenticationException("Authentication failed.")

    monkeypatch.setattr(sshclient, "connect", connect)
    with pytest.raises(DevboxError) as info:
        sshclient.wait_ready(TARGET, identity, timeout=5, still_running=lambda: None)
    assert "\n" not in str(info.value)
    return info.value


def test_a_refused_devbox_key_is_called_devboxs_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = Path("/home/alice/.config/devbox/id_ed25519")
    err = refused_login(monkeypatch, Identity(key, LINE, devbox_key=True))
    assert err.message == f"devbox-box refused devbox's key {key}: Authentication failed."
    assert "--identity" not in str(err)


def test_a_refused_identity_names_the_users_own_key_file(monkeypatch: pytest.MonkeyPatch) -> None:
    key = Path("/home/alice/.ssh/id work")
    err = refused_login(monkeypatch, Identity(key, LINE))
    assert err.message == f"devbox-box refused your key {key} (--identity): Authentication failed."
    assert "devbox's key" not in str(err)
    assert f"--identity '{key}'" in (err.hint or "")


def test_a_direct_login_dials_without_nagles_algorithm() -> None:
    """paramiko's login writes small packets back to back; with Nagle's algorithm on, each login
    waited 40 ms for the server's delayed ACK."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:
        target = sshclient.Target("devbox-box", server.getsockname()[1], "alice")
        sock = sshclient._dial(target, timeout=2.0)
        try:
            assert isinstance(sock, socket.socket)
            assert sock.getpeername() == server.getsockname()
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        finally:
            sock.close()


def test_a_login_through_a_servers_master_dials_its_proxy_command() -> None:
    target = sshclient.Target("devbox-box", 2222, "alice", proxy="cat")
    sock = sshclient._dial(target, timeout=2.0)
    try:
        assert isinstance(sock, paramiko.ProxyCommand)
        sock.send(b"echo")
        assert sock.recv(4) == b"echo"
    finally:
        sock.close()
