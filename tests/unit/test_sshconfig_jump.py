"""devbox's ssh config for boxes on remote hosts: ProxyJump, per-host sync scopes, and how the user's
own config and paths are handed to `ssh`."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devbox import paths, sshconfig
from devbox.sshconfig import HostEntry


@pytest.fixture(autouse=True)
def home(clean_home: Path) -> Path:
    return clean_home


def entry(alias: str = "devbox-x", port: int = 40123, jump: str = "") -> HostEntry:
    return HostEntry(alias, port, "alice", paths.user_key_path(), paths.known_hosts_path(), proxy_jump=jump)


def ssh_dump(config: Path, alias: str) -> dict[str, str]:
    """What the real OpenSSH client makes of `alias` in `config`: `ssh -G`, first value per keyword."""
    out = subprocess.run(
        ["ssh", "-F", str(config), "-G", alias],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    values: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        values.setdefault(key, value)
    return values


def aliases() -> list[str]:
    return [e.alias for e in sshconfig.read_entries()]


# -- ProxyJump -----------------------------------------------------------------------------------------


def test_remote_box_block_has_a_proxy_jump_right_after_its_port() -> None:
    block = sshconfig.render_block(entry(jump="alice@gpu1.example.com:2222"), Path("/cm"))
    lines = block.splitlines()
    assert lines[:4] == [
        "Host devbox-x",
        "    HostName 127.0.0.1",
        "    Port 40123",
        "    ProxyJump alice@gpu1.example.com:2222",
    ]
    assert block.count("ProxyJump") == 1


def test_local_box_block_has_no_proxy_jump() -> None:
    assert "ProxyJump" not in sshconfig.render_block(entry(), Path("/cm"))


def test_block_bounds_the_connect_time() -> None:
    assert "    ConnectTimeout 15\n" in sshconfig.render_block(entry(), Path("/cm"))


@pytest.mark.parametrize("jump", ["gpu1", "alice@gpu1", "alice@gpu1.example.com:2222", "bob@10.0.0.5:22"])
def test_proxy_jump_reads_back_identically(jump: str) -> None:
    sshconfig.upsert(entry(jump=jump))
    assert sshconfig.read_entries() == [entry(jump=jump)]


def test_local_and_remote_boxes_read_back_side_by_side() -> None:
    sshconfig.upsert(entry("devbox-a", 40101, jump="gpu1"))
    sshconfig.upsert(entry("devbox-b", 40102))

    assert sshconfig.read_entries() == [entry("devbox-a", 40101, "gpu1"), entry("devbox-b", 40102)]


@pytest.mark.parametrize("jump", ["gpu1", "alice@gpu1.example.com:2222"])
def test_openssh_reads_the_proxy_jump_of_a_box(jump: str) -> None:
    sshconfig.upsert(entry(jump=jump))

    got = ssh_dump(sshconfig.managed_config_path(), "devbox-x")

    assert got["proxyjump"] == jump
    assert got["hostname"] == "127.0.0.1"
    assert got["port"] == "40123"


def test_openssh_sees_no_proxy_jump_for_a_local_box() -> None:
    sshconfig.upsert(entry())
    assert "proxyjump" not in ssh_dump(sshconfig.managed_config_path(), "devbox-x")


@pytest.mark.parametrize(
    "jump",
    [
        "-oProxyCommand=x",
        "gpu1 gpu2",
        "gpu1\nProxyCommand x",
        "gpu%h",
        '"gpu1"',
        "gpu1#c",
        "gpu1,gpu2",
        "gpu1\\",
        "gpu1/x",
        "gpü",
    ],
)
def test_proxy_jumps_that_could_inject_into_the_config_are_refused(jump: str) -> None:
    with pytest.raises(ValueError, match="invalid ProxyJump"):
        entry(jump=jump)


def test_a_block_with_an_unreadable_proxy_jump_is_left_out_on_read() -> None:
    sshconfig.upsert(entry("devbox-a", 40101))
    path = sshconfig.managed_config_path()
    path.write_text(
        path.read_text() + "\nHost devbox-bad\n    HostName 127.0.0.1\n    Port 40102\n    ProxyJump -oX=y\n"
        f"    User alice\n    IdentityFile {paths.user_key_path()}\n"
        f"    UserKnownHostsFile {paths.known_hosts_path()}\n"
    )
    assert aliases() == ["devbox-a"]


_JUMP = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.@:\[\]-]{0,40}", fullmatch=True)


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_JUMP)
def test_any_valid_proxy_jump_round_trips_through_the_file(jump: str) -> None:
    e = entry(jump=jump)
    sshconfig.sync([e])
    assert sshconfig.read_entries() == [e]


# -- sync with a scope -----------------------------------------------------------------------------------


@pytest.fixture
def two_hosts() -> None:
    """Boxes a, b on gpu1; c on gpu2; d local."""
    sshconfig.sync(
        [
            entry("devbox-a", 40101, "gpu1"),
            entry("devbox-b", 40102, "gpu1"),
            entry("devbox-c", 40103, "gpu2"),
            entry("devbox-d", 40104),
        ]
    )


def on(jump: str):
    return lambda e: e.proxy_jump == jump


@pytest.mark.usefixtures("two_hosts")
def test_sync_with_a_scope_replaces_only_that_hosts_blocks() -> None:
    sshconfig.sync([entry("devbox-e", 40105, "gpu1")], scope=on("gpu1"))

    assert sshconfig.read_entries() == [
        entry("devbox-c", 40103, "gpu2"),
        entry("devbox-d", 40104),
        entry("devbox-e", 40105, "gpu1"),
    ]


@pytest.mark.usefixtures("two_hosts")
def test_sync_of_a_host_with_no_boxes_left_removes_only_its_blocks() -> None:
    sshconfig.sync([], scope=on("gpu2"))
    assert aliases() == ["devbox-a", "devbox-b", "devbox-d"]


@pytest.mark.usefixtures("two_hosts")
def test_sync_scope_for_the_local_engine_keeps_every_remote_block() -> None:
    sshconfig.sync([], scope=lambda e: not e.proxy_jump)
    assert aliases() == ["devbox-a", "devbox-b", "devbox-c"]


@pytest.mark.usefixtures("two_hosts")
def test_sync_without_scope_or_prefix_replaces_everything() -> None:
    sshconfig.sync([entry("devbox-z", 40109, "gpu3")])
    assert sshconfig.read_entries() == [entry("devbox-z", 40109, "gpu3")]


@pytest.mark.usefixtures("two_hosts")
def test_sync_with_prefix_and_scope_replaces_only_blocks_both_accept() -> None:
    sshconfig.upsert(entry("other-a", 40110, "gpu1"))

    sshconfig.sync([], prefix="devbox-", scope=on("gpu1"))

    assert aliases() == ["devbox-c", "devbox-d", "other-a"]


@pytest.mark.usefixtures("two_hosts")
def test_sync_moves_a_box_that_now_lives_on_another_host() -> None:
    # Box c was recreated on gpu1: gpu1's sync brings its new block, gpu2 no longer lists it.
    sshconfig.sync([entry("devbox-c", 40200, "gpu1")], scope=on("gpu1"))

    assert entry("devbox-c", 40200, "gpu1") in sshconfig.read_entries()
    assert aliases() == ["devbox-c", "devbox-d"]


@pytest.mark.usefixtures("two_hosts")
def test_sync_with_a_scope_still_adds_the_include_line(home: Path) -> None:
    result = sshconfig.sync([], scope=on("gpu1"))
    assert result.manual_line is None
    assert (home / ".ssh" / "config").read_text().startswith("Include ")


# -- ssh_config_arg / ssh_command ------------------------------------------------------------------------

PASSWD_HOME = Path(pwd.getpwuid(os.getuid()).pw_dir)


def test_no_config_arg_when_the_user_has_no_config() -> None:
    assert sshconfig.ssh_config_arg() is None
    assert sshconfig.ssh_config_arg(Path("/nonexistent/ssh_config")) is None


def test_config_arg_names_an_existing_config_that_ssh_would_not_find(tmp_path: Path) -> None:
    config = tmp_path / "my config"
    config.write_text("Host gpu1\n")
    assert sshconfig.ssh_config_arg(config) == config


def test_config_arg_follows_devbox_ssh_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "cfg"
    config.write_text("")
    monkeypatch.setenv("DEVBOX_SSH_CONFIG", str(config))
    assert sshconfig.ssh_config_arg() == config


def test_config_arg_is_none_for_the_passwd_homes_own_config() -> None:
    assert sshconfig.ssh_config_arg(PASSWD_HOME / ".ssh" / "config") is None


def test_ssh_command_names_a_user_config_outside_the_passwd_home(home: Path) -> None:
    sshconfig.upsert(entry(jump="gpu1"))
    assert sshconfig.ssh_command("devbox-x") == ["ssh", "-F", str(home / ".ssh" / "config"), "devbox-x"]


def test_ssh_command_uses_our_file_alone_when_the_user_config_lacks_the_include(home: Path) -> None:
    sshconfig.upsert(entry())
    (home / ".ssh" / "config").write_text("Host other\n")
    assert sshconfig.ssh_command("devbox-x") == [
        "ssh",
        "-F",
        str(sshconfig.managed_config_path()),
        "devbox-x",
    ]


def test_ssh_command_reaches_a_remote_box_through_its_proxy_jump(home: Path) -> None:
    sshconfig.upsert(entry(jump="alice@gpu1.example.com:2222"))
    argv = sshconfig.ssh_command("devbox-x")

    got = ssh_dump(Path(argv[argv.index("-F") + 1]), "devbox-x")

    assert got["proxyjump"] == "alice@gpu1.example.com:2222"


# -- option_value ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("/home/alice/.ssh/id", "/home/alice/.ssh/id"),
        ("/home/my user/id", '"/home/my user/id"'),
        ("/srv/100%/id", "/srv/100%%/id"),
        ('/srv/q"uote/id', '"/srv/q\\"uote/id"'),
        ("/srv/#hash/id", '"/srv/#hash/id"'),
    ],
)
def test_option_value_quotes_and_escapes_a_path_for_ssh(path: str, value: str) -> None:
    assert sshconfig.option_value(Path(path)) == value


_PATH = st.lists(
    st.text(
        st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
        min_size=1,
        max_size=12,
    ).filter(lambda s: s not in (".", "..")),
    min_size=1,
    max_size=3,
).map(lambda parts: "/" + "/".join(parts))


@settings(max_examples=60)
@given(_PATH)
def test_openssh_reads_an_option_value_path_back_unchanged(path: str) -> None:
    done = subprocess.run(
        ["ssh", "-F", "/dev/null", "-G", "-o", f"ControlPath={sshconfig.option_value(Path(path))}", "x"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stdout.decode("utf-8", "surrogateescape").splitlines()]
    assert f"controlpath {path}" in lines
