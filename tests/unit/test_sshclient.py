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
