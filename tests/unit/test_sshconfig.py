"""OpenSSH config integration: our own file, and one added line in the user's config."""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devbox import paths, sshconfig
from devbox.sshconfig import HostEntry


@pytest.fixture(autouse=True)
def home(clean_home: Path) -> Path:
    return clean_home


def entry(alias: str = "devbox-x", port: int = 40123) -> HostEntry:
    return HostEntry(alias, port, "alice", paths.user_key_path(), paths.known_hosts_path())


def our_line(home: Path) -> str:
    return f"Include {home}/.ssh/devbox/config"


def write_user_config(home: Path, data: bytes) -> Path:
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    config = ssh / "config"
    config.write_bytes(data)
    return config


def ssh_dump(user_config: Path, alias: str) -> dict[str, str]:
    return ssh_dump_argv(["ssh", "-F", str(user_config), alias])


def ssh_dump_argv(argv: list[str]) -> dict[str, str]:
    """What the real OpenSSH client makes of `argv`: `ssh -G`, first value per keyword."""
    out = subprocess.run(
        [argv[0], "-G", *argv[1:]], capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL
    ).stdout
    values: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        values.setdefault(key, value)
    return values


# -- the user's config: one added line, every other byte kept ------------------------------------

PRESERVED_CONFIGS = {
    "comments_and_host_star": b"# my config\n\nHost *\n    ServerAliveInterval 60\n    User me\n",
    "match_block": b'Match host *.corp exec "true"\n  ProxyJump bastion\n\nHost gh\n  HostName github.com\n',
    "crlf": b"# windows\r\nHost *\r\n    User me\r\n",
    "unicode": "# caf\u00e9 \u2603 \u65e5\u672c\nHost caf\u00e9\n    User \u00e9l\u00e8ve\n".encode(),
    "no_trailing_newline": b"Host a\n    Port 2222",
    "single_line_no_newline": b"# just a comment",
    "unrelated_include": b"Include ~/.ssh/work.conf\nHost work\n    User w\n",
    "empty": b"",
    "blank_lines_and_tabs": b"\n\n\tHost\tx\n\t\tPort 1\n   \n",
}


@pytest.mark.parametrize("original", PRESERVED_CONFIGS.values(), ids=PRESERVED_CONFIGS.keys())
def test_upsert_adds_only_the_include_line_on_top_of_the_original_bytes(home: Path, original: bytes) -> None:
    config = write_user_config(home, original)

    result = sshconfig.upsert(entry())

    newline = b"\r\n" if original.startswith(b"# windows\r\n") else b"\n"
    assert config.read_bytes() == our_line(home).encode() + newline + original
    assert result == sshconfig.IncludeResult(path=config, added=True, manual_line=None)
    assert (home / ".ssh" / "config.devbox-backup").read_bytes() == original


def test_backup_keeps_the_first_original_even_when_config_is_modified_again(home: Path) -> None:
    config = write_user_config(home, b"Host first\n")
    sshconfig.upsert(entry())
    config.write_bytes(b"Host second\n")  # the user drops our line and edits the file

    sshconfig.upsert(entry())

    assert config.read_bytes() == our_line(home).encode() + b"\nHost second\n"
    assert (home / ".ssh" / "config.devbox-backup").read_bytes() == b"Host first\n"


def test_user_config_keeps_its_file_mode(home: Path) -> None:
    config = write_user_config(home, b"Host a\n")
    config.chmod(0o640)

    sshconfig.upsert(entry())

    assert stat.S_IMODE(config.stat().st_mode) == 0o640


def test_missing_ssh_dir_and_config_are_created_private(home: Path) -> None:
    result = sshconfig.upsert(entry())

    config = home / ".ssh" / "config"
    assert result == sshconfig.IncludeResult(path=config, added=True, manual_line=None)
    assert config.read_text() == our_line(home) + "\n"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / ".ssh").stat().st_mode) == 0o700
    assert stat.S_IMODE((home / ".ssh" / "devbox").stat().st_mode) == 0o700
    assert stat.S_IMODE((home / ".ssh" / "devbox" / "config").stat().st_mode) == 0o600
    assert not (home / ".ssh" / "config.devbox-backup").exists()


def test_second_upsert_leaves_the_user_config_alone(home: Path) -> None:
    config = write_user_config(home, b"Host a\n")
    sshconfig.upsert(entry("devbox-a"))
    after_first = config.read_bytes()

    result = sshconfig.upsert(entry("devbox-b", 40124))

    assert config.read_bytes() == after_first
    assert result == sshconfig.IncludeResult(path=config, added=False, manual_line=None)


_WORD = st.text(
    st.characters(min_codepoint=33, max_codepoint=0x2FFF, blacklist_categories=("Cs",)), min_size=1
)
_FREE_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"))
_LINES = st.one_of(
    st.builds(lambda t: "#" + t, _FREE_TEXT),
    st.builds(lambda w: "Host " + w, _WORD),
    st.builds(lambda w: "Match host " + w, _WORD),
    st.builds(lambda i, k, v: i + k + " " + v, st.sampled_from(["", "  ", "    ", "\t"]), _WORD, _WORD),
    st.sampled_from(["", "   ", "\t"]),
    _FREE_TEXT,
)


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_LINES, max_size=12), newline=st.sampled_from(["\n", "\r\n"]), trailing=st.booleans())
def test_any_config_text_only_gains_the_include_line_and_is_stable(
    home: Path, tmp_path: Path, lines: list[str], newline: str, trailing: bool
) -> None:
    text = newline.join(lines) + (newline if trailing and lines else "")
    original = text.encode()
    config = Path(tempfile.mkdtemp(dir=tmp_path)) / "config"
    config.write_bytes(original)

    sshconfig.upsert(entry(), user_config=config)
    first = config.read_bytes()
    sshconfig.upsert(entry("devbox-y", 40200), user_config=config)

    expected_newline = newline if "\n" in text else "\n"
    assert first == (our_line(home) + expected_newline).encode() + original
    assert config.read_bytes() == first
    assert config.with_name("config.devbox-backup").read_bytes() == original


# -- recognising an Include that is already there ----------------------------------------------

ALREADY_INCLUDED = [
    "Include {ours}\n",
    "include {ours}\n",
    "INCLUDE\t{ours}   # devbox\n",
    "Include ~/.ssh/devbox/config\n",
    "Include ~/.ssh/devbox/*\n",
    "Include ~/.ssh/*/config\n",
    "Include devbox/config\n",
    "Include devbox/*\n",
    'Include "{ours}"\n',
    "Include=devbox/config\n",
    "Include = ~/.ssh/devbox/config\n",
    "Include ~/.ssh/work.conf devbox/config\n",
    "# my config\n\n  Include devbox/config\nHost *\n    User me\n",
]


@pytest.mark.parametrize("template", ALREADY_INCLUDED)
def test_config_that_already_includes_our_file_at_top_level_is_not_touched(home: Path, template: str) -> None:
    original = template.format(ours=home / ".ssh" / "devbox" / "config").encode()
    config = write_user_config(home, original)

    result = sshconfig.upsert(entry())

    assert config.read_bytes() == original
    assert result == sshconfig.IncludeResult(path=config, added=False, manual_line=None)
    assert not (home / ".ssh" / "config.devbox-backup").exists()


NOT_INCLUDED = [
    "Host foo\n    Include {ours}\n",
    "Match all\n    Include devbox/config\n",
    "Host *\nInclude ~/.ssh/devbox/config\n",
    "#Include {ours}\n",
    "Include devbox/config.d/*\n",
    "Include ~/.ssh/devbox/other\n",
    "Include ~/.ssh/?/config\n",
]


@pytest.mark.parametrize("template", NOT_INCLUDED)
def test_include_that_does_not_reach_our_file_from_top_level_gets_ours_added_first(
    home: Path, template: str
) -> None:
    original = template.format(ours=home / ".ssh" / "devbox" / "config").encode()
    config = write_user_config(home, original)

    result = sshconfig.upsert(entry())

    assert result.added
    assert config.read_bytes() == our_line(home).encode() + b"\n" + original


def test_include_through_a_symlinked_ssh_dir_is_recognised(home: Path, tmp_path: Path) -> None:
    real_ssh = tmp_path / "dotfiles" / "ssh"
    real_ssh.mkdir(parents=True)
    (home / ".ssh").symlink_to(real_ssh)
    original = f"Include {real_ssh}/devbox/config\n".encode()
    (real_ssh / "config").write_bytes(original)

    result = sshconfig.upsert(entry())

    assert not result.added
    assert (real_ssh / "config").read_bytes() == original


# -- configs we cannot or must not write -------------------------------------------------------


def test_read_only_config_is_left_alone_and_the_line_to_add_is_returned(home: Path) -> None:
    config = write_user_config(home, b"Host a\n")
    config.chmod(0o444)
    (home / ".ssh").chmod(0o555)
    try:
        result = sshconfig.ensure_include()
    finally:
        (home / ".ssh").chmod(0o700)

    assert result == sshconfig.IncludeResult(path=config, added=False, manual_line=our_line(home))
    assert config.read_bytes() == b"Host a\n"


def test_symlink_into_an_unwritable_location_is_kept_and_the_line_to_add_is_returned(
    home: Path, tmp_path: Path
) -> None:
    # Stands in for a home-manager link into the Nix store: writing the target fails with an OSError
    # (ENOTDIR here), which no amount of root privilege gets around.
    (tmp_path / "afile").write_text("not a directory")
    (home / ".ssh").mkdir()
    config = home / ".ssh" / "config"
    config.symlink_to(tmp_path / "afile" / "config")

    result = sshconfig.upsert(entry())

    assert result == sshconfig.IncludeResult(path=config, added=False, manual_line=our_line(home))
    assert config.is_symlink()
    assert [e.alias for e in sshconfig.read_entries()] == ["devbox-x"]


def test_symlink_to_a_read_only_file_is_kept_and_the_line_to_add_is_returned(
    home: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "ssh_config").write_bytes(b"Host managed\n")
    (store / "ssh_config").chmod(0o444)
    (home / ".ssh").mkdir()
    config = home / ".ssh" / "config"
    config.symlink_to(store / "ssh_config")

    result = sshconfig.upsert(entry())

    assert result.manual_line == our_line(home)
    assert config.is_symlink()
    assert (store / "ssh_config").read_bytes() == b"Host managed\n"


def test_explicit_config_under_a_regular_file_returns_the_line_to_add(home: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")

    result = sshconfig.ensure_include(tmp_path / "afile" / "config")

    assert result.manual_line == our_line(home)
    assert not result.added


def test_symlinked_writable_config_is_updated_through_the_link(home: Path, tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    (dotfiles / "ssh_config").write_bytes(b"Host a\n")
    (home / ".ssh").mkdir()
    config = home / ".ssh" / "config"
    config.symlink_to(dotfiles / "ssh_config")

    result = sshconfig.upsert(entry())

    assert result.added
    assert config.is_symlink()
    assert os.readlink(config) == str(dotfiles / "ssh_config")
    assert (dotfiles / "ssh_config").read_bytes() == our_line(home).encode() + b"\nHost a\n"


# -- where things are --------------------------------------------------------------------------


def test_user_config_path_prefers_explicit_then_env_then_home(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sshconfig.user_config_path() == home / ".ssh" / "config"
    monkeypatch.setenv("DEVBOX_SSH_CONFIG", str(tmp_path / "from-env"))
    assert sshconfig.user_config_path() == tmp_path / "from-env"
    assert sshconfig.user_config_path(tmp_path / "explicit") == tmp_path / "explicit"


def test_env_config_path_is_the_one_upsert_writes(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVBOX_SSH_CONFIG", str(tmp_path / "alt" / "config"))

    result = sshconfig.upsert(entry())

    assert result.path == tmp_path / "alt" / "config"
    assert (tmp_path / "alt" / "config").read_text() == our_line(home) + "\n"
    assert not (home / ".ssh" / "config").exists()


def test_host_alias_uses_explicit_prefix_then_env_then_devbox(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sshconfig.host_alias("mybox") == "devbox-mybox"
    monkeypatch.setenv("DEVBOX_HOST_PREFIX", "gpu-")
    assert sshconfig.host_alias("mybox") == "gpu-mybox"
    assert sshconfig.host_alias("mybox", prefix="") == "mybox"


def test_control_dir_is_under_the_config_dir_so_it_survives_reboots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "/home/alice/.config")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert sshconfig.control_dir() == Path("/home/alice/.config/devbox/cm")


def test_control_dir_uses_the_runtime_dir_when_the_config_dir_is_too_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "/home/" + "x" * 80)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert sshconfig.control_dir() == Path("/run/user/1000/devbox/cm")


def test_upsert_creates_the_control_dir_private(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pytest's tmp_path is too long for a socket dir; a short config dir stands in for ~/.config.
    short = Path(tempfile.mkdtemp(prefix="cfg", dir="/tmp"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(short))
    try:
        sshconfig.upsert(entry())

        assert stat.S_IMODE((short / "devbox" / "cm").stat().st_mode) == 0o700
        assert f"ControlPath {short}/devbox/cm/%C\n" in (home / ".ssh" / "devbox" / "config").read_text()
    finally:
        shutil.rmtree(short)


# -- the block we write -----------------------------------------------------------------------


def test_render_block_writes_every_option_with_absolute_paths(home: Path) -> None:
    block = sshconfig.render_block(entry("devbox-mybox"), Path("/run/user/1000/devbox/cm"))

    assert block == (
        "Host devbox-mybox\n"
        "    HostName 127.0.0.1\n"
        "    Port 40123\n"
        "    User alice\n"
        f"    IdentityFile {home}/.config/devbox/id_ed25519\n"
        "    IdentitiesOnly yes\n"
        "    HostKeyAlias devbox-mybox\n"
        f"    UserKnownHostsFile {home}/.config/devbox/known_hosts\n"
        "    StrictHostKeyChecking yes\n"
        "    CheckHostIP no\n"
        "    ConnectTimeout 15\n"
        "    ServerAliveInterval 30\n"
        "    ServerAliveCountMax 4\n"
        "    ControlMaster auto\n"
        "    ControlPath /run/user/1000/devbox/cm/%C\n"
        "    ControlPersist 10m\n"
    )
    assert "~" not in block


def test_paths_with_spaces_or_percent_are_quoted_and_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "my home"
    monkeypatch.setenv("HOME", str(home))
    odd = HostEntry("devbox-x", 40123, "alice", Path("/keys/100%/id"), paths.known_hosts_path())

    block = sshconfig.render_block(odd, home / "cm dir")

    assert "    IdentityFile /keys/100%%/id\n" in block
    assert f'    UserKnownHostsFile "{home}/.config/devbox/known_hosts"\n' in block
    assert f'    ControlPath "{home}/cm dir/%C"\n' in block
    assert sshconfig.include_line() == f'Include "{home}/.ssh/devbox/config"'


@pytest.mark.parametrize(
    "bad",
    [
        {"alias": "devbox x"},
        {"alias": "devbox-x\n    ProxyCommand sh"},
        {"alias": "devbox-*"},
        {"user": "alice bob"},
        {"port": 0},
        {"hostname": "h\nx"},
        {"identity_file": Path("relative/id")},
    ],
)
def test_host_entry_refuses_values_that_could_change_the_config_syntax(bad: dict[str, object]) -> None:
    values: dict[str, object] = {
        "alias": "devbox-x",
        "port": 40123,
        "user": "alice",
        "identity_file": Path("/k/id"),
        "known_hosts": Path("/k/known_hosts"),
    }
    with pytest.raises(ValueError):
        HostEntry(**{**values, **bad})  # type: ignore[arg-type]


# -- the real OpenSSH client reads what we wrote ------------------------------------------------


@pytest.mark.parametrize("home_name", ["home", "my home"])
def test_openssh_reads_our_block_ahead_of_the_users_host_star(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home_name: str
) -> None:
    home = tmp_path / home_name
    monkeypatch.setenv("HOME", str(home))
    config = write_user_config(home, b"Host *\n    Port 2222\n    StrictHostKeyChecking no\n")

    sshconfig.upsert(entry("devbox-x", 40123))
    dump = ssh_dump(config, "devbox-x")

    assert dump["port"] == "40123"
    assert dump["hostname"] == "127.0.0.1"
    assert dump["user"] == "alice"
    assert dump["hostkeyalias"] == "devbox-x"
    assert dump["userknownhostsfile"] == f"{home}/.config/devbox/known_hosts"
    assert dump["identityfile"] == f"{home}/.config/devbox/id_ed25519"
    assert dump["stricthostkeychecking"] == "true"
    assert dump["identitiesonly"] == "yes"
    assert dump["checkhostip"] == "no"
    assert dump["controlmaster"] == "auto"
    assert dump["controlpersist"] == "600"
    assert re.fullmatch(re.escape(f"{home}/.config/devbox/cm/") + "[0-9a-f]{40}", dump["controlpath"])


def test_openssh_leaves_other_hosts_to_the_users_config(home: Path) -> None:
    config = write_user_config(home, b"Host *\n    Port 2222\n")

    sshconfig.upsert(entry())

    assert ssh_dump(config, "elsewhere")["port"] == "2222"


# -- our own file --------------------------------------------------------------------------------


def test_our_file_has_a_header_and_blocks_sorted_by_alias(home: Path) -> None:
    sshconfig.upsert(entry("devbox-b", 2))
    sshconfig.upsert(entry("devbox-a", 1))

    text = (home / ".ssh" / "devbox" / "config").read_text()
    cm = home / ".config" / "devbox" / "cm"
    assert text == (
        sshconfig.HEADER
        + "\n"
        + sshconfig.render_block(entry("devbox-a", 1), cm)
        + "\n"
        + sshconfig.render_block(entry("devbox-b", 2), cm)
    )


def test_upsert_replaces_the_block_of_the_same_alias(home: Path) -> None:
    sshconfig.upsert(entry("devbox-a", 1))
    sshconfig.upsert(entry("devbox-a", 2))

    assert sshconfig.read_entries() == [entry("devbox-a", 2)]


def test_read_entries_round_trips_odd_paths(home: Path) -> None:
    odd = HostEntry("devbox-x", 1, "alice", Path("/a b/100%/id"), Path('/c"d/kh'), hostname="gpu1.lan")

    sshconfig.upsert(odd)

    assert sshconfig.read_entries() == [odd]


def test_read_entries_skips_blocks_it_cannot_read(home: Path) -> None:
    sshconfig.upsert(entry("devbox-a"))
    ours = home / ".ssh" / "devbox" / "config"
    ours.write_text(ours.read_text() + "\nHost devbox-broken\n    Port nope\n\nHost a b\n    Port 1\n")

    assert [e.alias for e in sshconfig.read_entries()] == ["devbox-a"]


def test_read_entries_is_empty_without_our_file() -> None:
    assert sshconfig.read_entries() == []


def test_remove_drops_exactly_that_block_and_keeps_the_include(home: Path) -> None:
    sshconfig.upsert(entry("devbox-a", 1))
    sshconfig.upsert(entry("devbox-b", 2))
    sshconfig.upsert(entry("devbox-c", 3))
    ours = home / ".ssh" / "devbox" / "config"
    before = ours.read_text()

    assert sshconfig.remove("devbox-b") is True

    cm = home / ".config" / "devbox" / "cm"
    assert ours.read_text() == before.replace("\n" + sshconfig.render_block(entry("devbox-b", 2), cm), "")
    assert sshconfig.read_entries() == [entry("devbox-a", 1), entry("devbox-c", 3)]
    assert (home / ".ssh" / "config").read_text() == our_line(home) + "\n"


def test_remove_of_an_unknown_alias_changes_nothing(home: Path) -> None:
    sshconfig.upsert(entry("devbox-a"))
    ours = home / ".ssh" / "devbox" / "config"
    before = ours.read_bytes()

    assert sshconfig.remove("devbox-zzz") is False
    assert ours.read_bytes() == before


def test_sync_makes_our_file_hold_exactly_the_given_entries(home: Path) -> None:
    sshconfig.upsert(entry("devbox-old"))

    result = sshconfig.sync([entry("devbox-b", 2), entry("devbox-a", 1)])

    assert sshconfig.read_entries() == [entry("devbox-a", 1), entry("devbox-b", 2)]
    assert result.path == home / ".ssh" / "config"


def test_sync_with_a_prefix_keeps_blocks_outside_it(home: Path) -> None:
    sshconfig.upsert(entry("gpu-keep", 1))
    sshconfig.upsert(entry("devbox-gone", 2))

    sshconfig.sync([entry("devbox-new", 3)], prefix="devbox-")

    assert [e.alias for e in sshconfig.read_entries()] == ["devbox-new", "gpu-keep"]


def test_sync_to_nothing_leaves_a_valid_empty_file(home: Path) -> None:
    sshconfig.upsert(entry())

    sshconfig.sync([])

    assert (home / ".ssh" / "devbox" / "config").read_text() == sshconfig.HEADER
    assert sshconfig.read_entries() == []


# -- concurrency -----------------------------------------------------------------------------------


def _upsert_from_another_process(home: str, alias: str, port: int) -> None:
    os.environ["HOME"] = home
    for var in ("XDG_CONFIG_HOME", "XDG_RUNTIME_DIR", "DEVBOX_SSH_CONFIG", "DEVBOX_HOST_PREFIX"):
        os.environ.pop(var, None)
    sshconfig.upsert(entry(alias, port))


def test_concurrent_upserts_from_threads_and_processes_keep_every_entry(home: Path) -> None:
    write_user_config(home, b"Host *\n    User me\n")
    spawn = multiprocessing.get_context("spawn")
    processes = [
        spawn.Process(target=_upsert_from_another_process, args=(str(home), f"devbox-p{i}", 41000 + i))
        for i in range(4)
    ]
    barrier = threading.Barrier(10)
    errors: list[BaseException] = []

    def upsert_in_thread(i: int) -> None:
        barrier.wait()
        try:
            sshconfig.upsert(entry(f"devbox-t{i}", 42000 + i))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=upsert_in_thread, args=(i,)) for i in range(10)]
    for process in processes:
        process.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in processes:
        process.join(timeout=60)

    assert errors == []
    assert [p.exitcode for p in processes] == [0] * 4
    expected = {f"devbox-p{i}": 41000 + i for i in range(4)} | {f"devbox-t{i}": 42000 + i for i in range(10)}
    assert {e.alias: e.port for e in sshconfig.read_entries()} == expected
    lines = (home / ".ssh" / "config").read_text().splitlines()
    assert [line for line in lines if line.startswith("Include")] == [our_line(home)]
    assert lines[1:] == ["Host *", "    User me"]
    leftovers = [p.name for p in (home / ".ssh").rglob("*.tmp")]
    assert leftovers == []


# -- the ssh command line devbox runs ----------------------------------------------------------


def test_ssh_command_goes_through_the_users_config_when_it_includes_ours(home: Path) -> None:
    config = write_user_config(home, b"Host *\n    ForwardAgent yes\n")
    sshconfig.upsert(entry())

    argv = sshconfig.ssh_command("devbox-x")

    # $HOME here is a temp dir, not the passwd home ssh would read, so the config is named.
    assert argv == ["ssh", "-F", str(config), "devbox-x"]
    dump = ssh_dump_argv(argv)
    assert (dump["port"], dump["forwardagent"]) == ("40123", "yes")


def test_ssh_command_falls_back_to_our_file_when_the_include_could_not_be_added(
    home: Path, tmp_path: Path
) -> None:
    (tmp_path / "afile").write_text("")
    (home / ".ssh").mkdir()
    (home / ".ssh" / "config").symlink_to(tmp_path / "afile" / "config")
    sshconfig.upsert(entry())

    argv = sshconfig.ssh_command("devbox-x")

    assert argv == ["ssh", "-F", str(home / ".ssh" / "devbox" / "config"), "devbox-x"]
    assert ssh_dump_argv(argv)["port"] == "40123"


# -- found in review: group, hard links, devbox's own file, a listing racing an `up` --------------


def test_the_config_keeps_its_group_and_a_config_with_other_hard_links_is_left_alone(home: Path) -> None:
    config = write_user_config(home, b"Host a\n")
    config.chmod(0o640)
    # A group other than the writer's own: root may give any; a user, one of theirs.
    other = 1 if os.geteuid() == 0 else next((g for g in os.getgroups() if g != os.getegid()), None)
    assert other is not None, "needs a user in a second group, or root"
    os.chown(config, -1, other)

    assert sshconfig.ensure_include().added
    assert (config.stat().st_gid, stat.S_IMODE(config.stat().st_mode)) == (other, 0o640)
    assert (home / ".ssh" / f"config{sshconfig.BACKUP_SUFFIX}").stat().st_gid == other

    linked = write_user_config(home, b"Host b\n")
    os.link(linked, home / "config-copy")
    result = sshconfig.ensure_include()
    # A new file in its place would leave the copy with the old text: the user adds the line.
    assert result == sshconfig.IncludeResult(path=linked, added=False, manual_line=our_line(home))
    assert linked.read_bytes() == b"Host b\n" and linked.stat().st_nlink == 2


@pytest.mark.parametrize("how", ["flag", "env"])
def test_devbox_s_own_file_as_the_user_s_config_is_refused(
    home: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    own = sshconfig.managed_config_path()
    if how == "env":
        monkeypatch.setenv(sshconfig.CONFIG_ENV, str(own))
    with pytest.raises(sshconfig.UsageError) as info:
        sshconfig.user_config_path(own if how == "flag" else None)
    assert info.value.message == f"{own} is devbox's own ssh config file, not yours"
    assert not own.exists()


def test_sync_lists_under_the_lock_so_a_block_written_meanwhile_is_kept(home: Path) -> None:
    sshconfig.upsert(entry("devbox-old", 40001))
    written = threading.Event()

    def up_elsewhere() -> None:
        sshconfig.upsert(entry("devbox-new", 40002))  # a concurrent `up` publishing its box
        written.set()

    def listing() -> list[HostEntry]:
        threading.Thread(target=up_elsewhere).start()
        # It waits for the lock sync holds while listing, instead of writing before sync's write.
        assert not written.wait(0.3)
        return [entry("devbox-old", 40001)]

    sshconfig.sync(listing)
    assert written.wait(10)
    assert [e.alias for e in sshconfig.read_entries()] == ["devbox-new", "devbox-old"]


def test_a_resync_names_the_box_s_own_key_even_when_it_cannot_be_read_now(home: Path) -> None:
    # A passphrase key whose agent is not running (no SSH_AUTH_SOCK here): loading it is refused,
    # but the block keeps naming it, so ssh works again once the agent is back. Only a key gone
    # from disk falls back to devbox's own.
    from devbox import boxes
    from devbox.errors import UsageError

    from .conftest import make_box

    key = home / "id_pw"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(key)], check=True)
    box = make_box("pw", identity=str(key))
    with pytest.raises(UsageError, match="no ssh-agent is running"):
        boxes.identity_of(box)
    assert boxes._synced_key(box) == key
    assert boxes.ssh_entry(box).identity_file == key

    key.unlink()
    assert boxes._synced_key(box) == paths.user_key_path() and paths.user_key_path().is_file()
