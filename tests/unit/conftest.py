"""Unit-test settings shared by every module here."""

import subprocess
from pathlib import Path

import pytest
from hypothesis import settings

from devbox.boxes import Box
from devbox.errors import UsageError

# The 2-core CI machine also runs a dockerd and e2e boxes: wall-clock deadlines would make
# property tests flaky without making them any stricter.
settings.register_profile("devbox", deadline=None)
settings.load_profile("devbox")


@pytest.fixture
def clean_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $HOME, and none of devbox's or XDG's variables: the real hosts.yaml, ~/.ssh and
    agent are never read."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in (
        "XDG_CONFIG_HOME",
        "XDG_RUNTIME_DIR",
        "DEVBOX_SSH_CONFIG",
        "DEVBOX_HOST_PREFIX",
        "DEVBOX_HOST",
        "SSH_AUTH_SOCK",
    ):
        monkeypatch.delenv(var, raising=False)
    return home


def usage_error(fn, *args, **kwargs) -> UsageError:
    """The UsageError `fn` raises: exit code 2 and a single line, as the CLI prints it."""
    with pytest.raises(UsageError) as info:
        fn(*args, **kwargs)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)
    return info.value


def ssh_g(argv: list[str]) -> dict[str, str]:
    """What the real OpenSSH client makes of `argv` (ssh … TARGET): `ssh -G`, first value per key."""
    assert argv[0] == "ssh"
    done = subprocess.run(
        ["ssh", "-G", *argv[1:]], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=10
    )
    assert done.returncode == 0, done.stderr
    values: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        values.setdefault(key, value)
    return values


def make_box(name: str = "b", owner: str = "alice", **fields: object) -> Box:
    """A Box as Docker's labels would describe it, for tests that need one without an engine."""
    base: dict[str, object] = {
        "name": name,
        "owner": owner,
        "user": owner,
        "uid": 1000,
        "gid": 1000,
        "status": "running",
        "port": 20022,
        "gpus": (),
        "image": "devbox/base",
        "workdir": "/workspace",
        "volume": f"devbox-{owner}-{name}.home",
        "container": f"devbox-{owner}-{name}",
        "container_id": "0123456789ab",
        "identity": "",
    }
    return Box(**{**base, **fields})  # type: ignore[arg-type]
