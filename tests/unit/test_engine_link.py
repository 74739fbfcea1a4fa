"""A connection to the engine lost mid-command is one DevboxError line, not requests' own error."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from devbox.engine import Engine
from devbox.errors import DevboxError


def _serve_then_drop(path: Path, answered: int) -> threading.Thread:
    """A unix socket that answers `answered` requests like an engine's /version, then closes the
    connection on the next one without a word, as a dropped ssh link or a dying dockerd does."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    body = json.dumps({"ApiVersion": "1.41", "Version": "20.10.24"}).encode()
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )

    left = [answered]

    def talk(conn: socket.socket) -> None:
        with conn:
            while conn.recv(65536):
                if not left[0]:
                    return  # closed with the request unanswered
                left[0] -= 1
                conn.sendall(reply)

    def serve() -> None:
        with server:
            while True:  # each connection the client opens (its pools) served on its own
                threading.Thread(target=talk, args=(server.accept()[0],), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_connection_dropped_mid_command_is_one_devbox_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock = tmp_path / "docker.sock"
    _serve_then_drop(sock, answered=1)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    engine = Engine.connect()
    with pytest.raises(DevboxError) as caught:
        engine.client.containers.list()
    assert caught.value.message.startswith("lost the Docker engine: ")
    assert "Connection aborted" in caught.value.message
    assert caught.value.hint == "check that Docker still runs here"
