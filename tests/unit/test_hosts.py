"""Hosts: hosts.yaml, name and destination validation, and which host a command means."""

from __future__ import annotations

import os
import re
import stat
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devbox import hosts, paths, sshconfig
from devbox.errors import DevboxError, NotFoundError, UsageError
from devbox.hosts import LOCAL_HOST, Host, HostsConfig
from devbox.sshconfig import HostEntry

from .conftest import ssh_g, usage_error


@pytest.fixture(autouse=True)
def home(clean_home: Path) -> Path:
    return clean_home


def hosts_file() -> Path:
    return paths.config_dir() / "hosts.yaml"


def write_hosts_file(text: str) -> Path:
    path = hosts_file()
    paths.ensure_private_dir(path.parent)
    path.write_text(text)
    return path


def record_box(box: str, jump: str = "", port: int = 40100) -> HostEntry:
    """An ssh entry for `box` in devbox's own ssh config, as `up` writes it."""
    entry = HostEntry(
        sshconfig.host_alias(box),
        port,
        "alice",
        paths.user_key_path(),
        paths.known_hosts_path(),
        proxy_jump=jump,
    )
    sshconfig.upsert(entry)
    return entry


# -- hosts.yaml --------------------------------------------------------------------------------------


def test_no_hosts_file_means_only_the_local_engine_as_default() -> None:
    config = hosts.load()
    assert config == HostsConfig((), hosts.LOCAL)
    assert hosts.resolve(None) == LOCAL_HOST
    assert not hosts_file().exists()


def test_added_hosts_are_saved_sorted_and_load_back() -> None:
    hosts.add("gpu2", "bob@gpu2.example.com:2222", docker_socket="/run/user/1000/docker.sock")
    hosts.add("gpu1", "gpu1")

    config = hosts.load()

    assert config.hosts == (
        Host("gpu1", "gpu1"),
        Host("gpu2", "bob@gpu2.example.com:2222", "/run/user/1000/docker.sock"),
    )
    assert config.default == hosts.LOCAL


def test_hosts_file_is_private_and_says_devbox_edits_it() -> None:
    hosts.add("gpu1", "gpu1")

    path = hosts_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text().startswith("# devbox hosts:")


def test_adding_a_host_again_replaces_its_destination() -> None:
    hosts.add("gpu1", "old@gpu1")
    hosts.add("gpu1", "new@gpu1", docker_socket="/var/run/docker.sock")

    assert hosts.load().hosts == (Host("gpu1", "new@gpu1", "/var/run/docker.sock"),)


def test_add_can_make_the_new_host_the_default() -> None:
    hosts.add("gpu1", "gpu1")
    hosts.add("gpu2", "gpu2", make_default=True)

    assert hosts.load().default == "gpu2"
    assert hosts.resolve(None) == Host("gpu2", "gpu2")


def test_set_default_picks_a_configured_host_and_back_to_local() -> None:
    hosts.add("gpu1", "gpu1")

    assert hosts.set_default("gpu1").default == "gpu1"
    assert hosts.load().default == "gpu1"
    assert hosts.set_default("local").default == "local"
    assert hosts.load().default == "local"


def test_set_default_of_an_unknown_host_is_refused_and_changes_nothing() -> None:
    hosts.add("gpu1", "gpu1", make_default=True)
    before = hosts_file().read_text()

    with pytest.raises(NotFoundError, match="no host named 'gpu9'"):
        hosts.set_default("gpu9")

    assert hosts_file().read_text() == before


def test_remove_forgets_the_host_and_keeps_the_others() -> None:
    hosts.add("gpu1", "gpu1")
    hosts.add("gpu2", "gpu2")

    removed = hosts.remove("gpu1")

    assert removed == Host("gpu1", "gpu1")
    assert hosts.load().hosts == (Host("gpu2", "gpu2"),)


def test_removing_the_default_host_falls_back_to_local() -> None:
    hosts.add("gpu1", "gpu1", make_default=True)
    hosts.add("gpu2", "gpu2")

    hosts.remove("gpu1")

    assert hosts.load().default == hosts.LOCAL
    assert hosts.resolve(None) == LOCAL_HOST


def test_removing_another_host_keeps_the_default() -> None:
    hosts.add("gpu1", "gpu1", make_default=True)
    hosts.add("gpu2", "gpu2")

    hosts.remove("gpu2")

    assert hosts.load().default == "gpu1"


def test_the_local_engine_cannot_be_removed() -> None:
    err = usage_error(hosts.remove, "local")
    assert "local engine cannot be removed" in err.message


def test_unknown_host_name_lists_the_known_ones() -> None:
    hosts.add("gpu1", "gpu1")
    hosts.add("gpu2", "gpu2")

    with pytest.raises(NotFoundError) as info:
        hosts.remove("gpu3")

    assert info.value.message == "no host named 'gpu3' (known: local, gpu1, gpu2)"
    assert "devbox host add" in (info.value.hint or "")


def test_a_default_that_is_not_a_host_is_refused_not_taken_as_local() -> None:
    # Typed by hand (`host rm` of the default makes local the default): local in its place would
    # put boxes on another machine than meant.
    path = write_hosts_file("default: gpu2\nhosts:\n  gpu1:\n    ssh: gpu1\n")

    with pytest.raises(DevboxError) as info:
        hosts.resolve(None)
    assert info.value.message == f"{path}: the default host 'gpu2' is not one of its hosts"
    assert "default:" in (info.value.hint or "")


def test_host_rm_of_the_default_makes_local_the_default() -> None:
    write_hosts_file("default: gpu1\nhosts:\n  gpu1:\n    ssh: gpu1\n")
    hosts.remove("gpu1")

    assert hosts.load().default == hosts.LOCAL


def test_an_empty_hosts_file_is_no_hosts() -> None:
    write_hosts_file("")
    assert hosts.load() == HostsConfig()


def test_a_hand_written_hosts_file_without_default_loads() -> None:
    write_hosts_file("hosts:\n  gpu1: {ssh: 'alice@10.0.0.5:2222'}\n")
    assert hosts.load() == HostsConfig((Host("gpu1", "alice@10.0.0.5:2222"),), hosts.LOCAL)


@pytest.mark.parametrize(
    "text",
    [
        "hosts: [gpu1\n",  # unterminated flow sequence
        "default: local\nhosts:\n  gpu1:\n    ssh: gpu1\n   bad: indent\n",
        "hosts:\n\t- tab\n",
        "\x00\x01binary",
    ],
    ids=["unterminated", "bad_indent", "tab", "binary"],
)
def test_damaged_yaml_is_one_line_naming_the_file(text: str) -> None:
    path = write_hosts_file(text)

    with pytest.raises(DevboxError) as info:
        hosts.load()

    assert str(path) in info.value.message
    assert "\n" not in str(info.value)
    assert info.value.hint


def test_a_hosts_file_nested_past_python_s_recursion_limit_is_one_line() -> None:
    path = write_hosts_file("[" * 5000 + "]" * 5000 + "\n")

    with pytest.raises(DevboxError) as info:
        hosts.load()
    assert info.value.message == f"cannot read {path}: nested too deeply"


def test_yaml_aliases_are_refused_before_they_are_expanded() -> None:
    # Nine levels of ten aliases each: printed or compared, 10^9 strings.
    levels = ["a0: &a0 [xxxxxxxxxx, xxxxxxxxxx]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path = write_hosts_file("x:\n" + "".join(f"  {line}\n" for line in levels) + "hosts:\n  g: {ssh: *a8}\n")

    with pytest.raises(DevboxError) as info:
        hosts.load()
    assert info.value.message == f"{path}:3: not valid YAML: aliases (*name) are not allowed here"


def test_undecodable_hosts_file_is_an_error_naming_the_file() -> None:
    path = write_hosts_file("")
    path.write_bytes(b"hosts:\n  gpu1:\n    ssh: \xff\xfe\n")

    with pytest.raises(DevboxError) as info:
        hosts.load()

    assert str(path) in info.value.message
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("- a\n- b\n", "unexpected layout"),
        ("hosts: [gpu1, gpu2]\n", "unexpected layout"),
        ("hosts:\n  gpu1: just-a-string\n", "unexpected layout"),
        ("hosts:\n  gpu1: {}\n", "unexpected layout"),
        ("hosts:\n  GPU1: {ssh: gpu1}\n", "invalid host name 'GPU1'"),
        ("hosts:\n  local: {ssh: gpu1}\n", "invalid host name 'local'"),
        ("hosts:\n  gpu1: {ssh: '-oProxyCommand=x'}\n", "invalid ssh destination"),
        ("hosts:\n  gpu1: {ssh: gpu1, docker_socket: relative.sock}\n", "invalid Docker socket path"),
        # Once a server named "None", and lists printed whole.
        ("hosts:\n  gpu1: {ssh: }\n", "gpu1.ssh is empty"),
        ("hosts:\n  gpu1: {ssh: [a, b]}\n", "gpu1.ssh must be text"),
        ("hosts:\n  gpu1: {ssh: gpu1, docker_socket: {a: 1}}\n", "gpu1.docker_socket must be text"),
        ("default: [gpu1]\nhosts:\n  gpu1: {ssh: gpu1}\n", "default must be text"),
    ],
)
def test_hosts_file_with_bad_content_is_damaged_naming_the_file_and_why(text: str, why: str) -> None:
    path = write_hosts_file(text)

    with pytest.raises(DevboxError) as info:
        hosts.load()

    assert info.value.message.startswith(f"{path} is damaged: ")
    assert why in info.value.message
    assert "\n" not in str(info.value)


def test_a_damaged_file_is_not_overwritten_by_an_edit() -> None:
    path = write_hosts_file("hosts: [gpu1\n")

    with pytest.raises(DevboxError):
        hosts.add("gpu2", "gpu2")

    assert path.read_text() == "hosts: [gpu1\n"


def test_concurrent_adds_are_all_kept() -> None:
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            hosts.add(f"h{i}", f"user@h{i}.example.com")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors
    assert {h.name for h in hosts.load().hosts} == {f"h{i}" for i in range(12)}


# -- names, destinations, sockets --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpu1", "a", "0", "a-b-c", "x" * 32, "9lives", "trailing-"])
def test_valid_host_names_are_returned_unchanged(name: str) -> None:
    assert hosts.validate_name(name) == name


@pytest.mark.parametrize("name", ["local", "auto", "all"])
def test_reserved_host_names_are_refused(name: str) -> None:
    err = usage_error(hosts.validate_name, name)
    assert repr(name) in err.message
    assert "'local', 'auto' and 'all' are taken" in (err.hint or "")


@pytest.mark.parametrize(
    "name", ["", "GPU1", "-gpu", "gpu_1", "gpu.1", "gpu 1", "x" * 33, "gpü", "gpu1\n", "a/b"]
)
def test_invalid_host_names_are_refused(name: str) -> None:
    usage_error(hosts.validate_name, name)


@pytest.mark.parametrize("name", ["local", "auto", "all", "GPU"])
def test_adding_a_reserved_or_invalid_name_writes_nothing(name: str) -> None:
    usage_error(hosts.add, name, "gpu1")
    assert not hosts_file().exists()


@pytest.mark.parametrize(
    "dest",
    [
        "gpu1",
        "gpu1.example.com",
        "alice@gpu1",
        "alice@gpu1.example.com:2222",
        "a.b-c_d@10.0.0.5:22",
        "gpu1:65535",
        "_svc@host",
    ],
)
def test_valid_destinations_are_returned_unchanged(dest: str) -> None:
    assert hosts.validate_destination(dest) == dest


@pytest.mark.parametrize(
    "dest",
    [
        "",
        "-oProxyCommand=touch /tmp/x",
        "-gpu1",
        "alice@-gpu1",
        "gpu1 -v",
        "gpu1\n",
        "'gpu1'",
        '"gpu1"',
        "gpu%h",
        "alice@",
        "@gpu1",
        "a@b@c",
        "gpu1:0",
        "gpu1:65536",
        "gpu1:123456",
        "gpu1:",
        "ssh://gpu1",
        "gpu1,gpu2",
        "gpu1#x",
        "[not-ipv6]",
    ],
)
def test_invalid_destinations_are_refused(dest: str) -> None:
    err = usage_error(hosts.validate_destination, dest)
    assert "user@host[:port]" in (err.hint or "")


@pytest.mark.parametrize("path", ["", "/var/run/docker.sock", "/run/user/1000/docker.sock", "/a_b-c.d/e"])
def test_valid_docker_socket_paths_are_returned_unchanged(path: str) -> None:
    assert hosts.validate_socket(path) == path


@pytest.mark.parametrize(
    "path", ["docker.sock", "./docker.sock", "/with space.sock", "/a;rm -rf", "unix:///x.sock", "/x\n"]
)
def test_relative_or_odd_docker_socket_paths_are_refused(path: str) -> None:
    usage_error(hosts.validate_socket, path)


_DEST_CHARS = st.characters(
    whitelist_categories=("L", "N", "P", "S", "Z", "Cc"), whitelist_characters="@:[]._- %'\"\n\t"
)
_ACCEPTED = st.one_of(st.from_regex(hosts._DEST_RE, fullmatch=True), st.text(_DEST_CHARS, max_size=30))


def _accepted(dest: str) -> bool:
    try:
        hosts.validate_destination(dest)
    except UsageError:
        return False
    return True


@given(_ACCEPTED)
def test_an_accepted_destination_cannot_inject_into_ssh_argv_or_config(dest: str) -> None:
    if not _accepted(dest):
        return
    assert dest
    assert not dest.startswith("-")
    assert not any(ch.isspace() for ch in dest)
    assert not set(dest) & set("'\"%#,\\\n\r\x00")


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.from_regex(hosts._DEST_RE, fullmatch=True))
def test_an_accepted_destination_renders_as_a_proxy_jump_that_reads_back_identically(dest: str) -> None:
    if not _accepted(dest):
        return
    jump = Host("gpu1", dest).jump
    entry = HostEntry(
        "devbox-x", 40100, "alice", paths.user_key_path(), paths.known_hosts_path(), proxy_jump=jump
    )

    sshconfig.sync([entry])

    assert sshconfig.read_entries() == [entry]
    assert f"    ProxyJump {dest}\n" in sshconfig.managed_config_path().read_text()


@pytest.mark.parametrize("dest", ["[::1]", "alice@[::1]:2222", "[0]"])
def test_ipv6_literals_are_refused_pointing_at_an_ssh_alias(dest: str) -> None:
    # OpenSSH takes neither "[::1]" nor "ssh://[::1]:2222" as a destination.
    err = usage_error(hosts.validate_destination, dest)
    assert "alias" in (err.hint or "")


def test_destination_port_must_be_ascii_digits() -> None:
    usage_error(hosts.validate_destination, "gpu1:\u0661\u0662")


# -- ssh_target: what `ssh` is given -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("dest", "target"),
    [
        ("gpu1", "gpu1"),
        ("gpu1.example.com", "gpu1.example.com"),
        ("alice@gpu1", "alice@gpu1"),
        ("alice@gpu1:2222", "ssh://alice@gpu1:2222"),
        ("gpu1:2222", "ssh://gpu1:2222"),
        ("alice@10.0.0.5:22", "ssh://alice@10.0.0.5:22"),
    ],
)
def test_ssh_target_keeps_aliases_and_user_at_host_and_uses_a_uri_for_a_port(dest: str, target: str) -> None:
    assert Host("gpu1", dest).ssh_target == target


def test_jump_is_the_destination_as_written() -> None:
    assert Host("gpu1", "alice@gpu1:2222").jump == "alice@gpu1:2222"


def test_local_host_has_no_destination() -> None:
    assert LOCAL_HOST.is_local and LOCAL_HOST.name == "local" and LOCAL_HOST.ssh_target == ""
    assert not Host("gpu1", "gpu1").is_local


@pytest.mark.parametrize(
    ("dest", "user", "hostname", "port"),
    [
        ("gpu1.example.com", None, "gpu1.example.com", "22"),
        ("alice@gpu1", "alice", "gpu1", "22"),
        ("alice@gpu1.example.com:2222", "alice", "gpu1.example.com", "2222"),
        ("gpu1:2200", None, "gpu1", "2200"),
        ("alice@10.0.0.5:22", "alice", "10.0.0.5", "22"),
    ],
)
def test_openssh_reads_the_ssh_target_as_the_intended_user_host_and_port(
    dest: str, user: str | None, hostname: str, port: str
) -> None:
    got = ssh_g(["ssh", "-F", "/dev/null", Host("gpu1", hosts.validate_destination(dest)).ssh_target])
    assert (got["hostname"], got["port"]) == (hostname, port)
    if user:
        assert got["user"] == user


# -- which host a command means ------------------------------------------------------------------------


@pytest.fixture
def fleet() -> None:
    """gpu1 (the default) and gpu2, each reached by its own destination."""
    hosts.add("gpu1", "alice@gpu1.example.com", make_default=True)
    hosts.add("gpu2", "alice@gpu2.example.com:2222")


@pytest.mark.usefixtures("fleet")
def test_explicit_host_wins_over_the_box_record_and_the_default() -> None:
    record_box("train", jump="alice@gpu2.example.com:2222")
    assert hosts.resolve("local", box="train") == LOCAL_HOST
    assert hosts.resolve("gpu1", box="train").name == "gpu1"


@pytest.mark.usefixtures("fleet")
def test_the_box_record_wins_over_the_default() -> None:
    record_box("train", jump="alice@gpu2.example.com:2222")
    assert hosts.resolve(None, box="train") == Host("gpu2", "alice@gpu2.example.com:2222")


@pytest.mark.usefixtures("fleet")
def test_a_box_recorded_without_proxy_jump_is_on_the_local_engine_whatever_the_default() -> None:
    record_box("laptop-box")
    assert hosts.resolve(None, box="laptop-box") == LOCAL_HOST


@pytest.mark.usefixtures("fleet")
def test_a_box_without_a_record_goes_to_the_default() -> None:
    record_box("other", jump="alice@gpu2.example.com:2222")
    assert hosts.resolve(None, box="new-box").name == "gpu1"


@pytest.mark.usefixtures("fleet")
def test_no_box_means_the_default() -> None:
    record_box("train", jump="alice@gpu2.example.com:2222")
    assert hosts.resolve(None).name == "gpu1"


def test_without_a_default_the_local_engine() -> None:
    hosts.add("gpu1", "gpu1")
    assert hosts.resolve(None, box="any") == LOCAL_HOST


@pytest.mark.usefixtures("fleet")
def test_a_box_recorded_on_a_removed_host_goes_to_the_default() -> None:
    record_box("train", jump="alice@gpu2.example.com:2222")
    hosts.remove("gpu2")
    assert hosts.box_host(hosts.load(), "train") is None
    assert hosts.resolve(None, box="train").name == "gpu1"


@pytest.mark.usefixtures("fleet")
def test_explicit_unknown_host_is_not_found_listing_the_known_ones() -> None:
    with pytest.raises(NotFoundError, match=re.escape("(known: local, gpu1, gpu2)")):
        hosts.resolve("gpu9", box="train")


@pytest.mark.usefixtures("fleet")
def test_box_record_follows_the_host_alias_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVBOX_HOST_PREFIX", "dbx.")
    record_box("train", jump="alice@gpu2.example.com:2222")
    assert sshconfig.read_entries()[0].alias == "dbx.train"
    assert hosts.resolve(None, box="train").name == "gpu2"


def test_host_for_jump_maps_no_jump_to_local_and_unknown_jumps_to_none() -> None:
    config = HostsConfig((Host("gpu1", "gpu1"), Host("gpu2", "bob@gpu2:2222")))
    assert hosts.host_for_jump(config, None) == LOCAL_HOST
    assert hosts.host_for_jump(config, "") == LOCAL_HOST
    assert hosts.host_for_jump(config, "bob@gpu2:2222") == Host("gpu2", "bob@gpu2:2222")
    assert hosts.host_for_jump(config, "bob@gpu2") is None


@pytest.mark.usefixtures("fleet")
def test_boxes_recorded_on_a_host_are_those_whose_proxy_jump_is_its_destination() -> None:
    record_box("a", jump="alice@gpu2.example.com:2222", port=40101)
    record_box("b", jump="alice@gpu1.example.com", port=40102)
    record_box("c", jump="alice@gpu2.example.com:2222", port=40103)
    record_box("d", port=40104)
    config = hosts.load()

    assert hosts.boxes_recorded_on(config.get("gpu2")) == ["a", "c"]
    assert hosts.boxes_recorded_on(config.get("gpu1")) == ["b"]
    assert hosts.boxes_recorded_on(LOCAL_HOST) == []


# -- which hosts a fleet-wide command covers ---------------------------------------------------------


def test_listed_is_only_local_without_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert hosts.listed(HostsConfig()) == [LOCAL_HOST]


def test_listed_puts_local_first_when_it_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    config = HostsConfig((Host("gpu1", "gpu1"), Host("gpu2", "gpu2")))
    assert hosts.listed(config) == [LOCAL_HOST, Host("gpu1", "gpu1"), Host("gpu2", "gpu2")]


def test_listed_includes_local_when_docker_host_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/elsewhere.sock")
    config = HostsConfig((Host("gpu1", "gpu1"),), default="gpu1")
    assert hosts.listed(config) == [LOCAL_HOST, Host("gpu1", "gpu1")]


def test_listed_leaves_out_local_on_a_machine_without_an_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    config = HostsConfig((Host("gpu1", "gpu1"),), default="gpu1")
    expected = [Host("gpu1", "gpu1")]
    if os.path.exists("/var/run/docker.sock"):  # this machine has a local engine after all
        expected.insert(0, LOCAL_HOST)
    assert hosts.listed(config) == expected


@pytest.mark.usefixtures("fleet")
def test_targets_is_the_named_host_or_every_listed_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/elsewhere.sock")
    assert hosts.targets("gpu2") == [hosts.load().get("gpu2")]
    assert [h.name for h in hosts.targets(None)] == ["local", "gpu1", "gpu2"]
    with pytest.raises(NotFoundError):
        hosts.targets("gpu9")


# -- across: many hosts at once (only the paths that need no engine) ---------------------------------


@pytest.fixture
def ssh_config(tmp_path: Path) -> Path:
    """An ssh config of our own, so the real ~/.ssh/config of the passwd home is never read."""
    path = tmp_path / "ssh_config"
    path.write_text(
        "Host slow\n    HostName 127.0.0.1\n    ProxyCommand sleep 2\n\nHost *\n    ConnectTimeout 1\n"
    )
    return path


def test_across_turns_failures_into_error_results_in_host_order(
    ssh_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DOCKER_HOST on tcp:// is refused before any Docker call; port 1 on 127.0.0.1 refuses at once.
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    called: list[object] = []
    targets = [Host("refused", "127.0.0.1:1"), LOCAL_HOST]

    results = hosts.across(targets, called.append, timeout=20, ssh_config=ssh_config)

    assert [r.host for r in results] == targets
    assert not called
    assert all(r.value is None and r.engine is None for r in results)
    assert results[0].error is not None and "Connection refused" in results[0].error
    assert results[1].error is not None and "DOCKER_HOST=tcp://127.0.0.1:1" in results[1].error


def test_across_gives_up_on_a_host_that_does_not_answer_in_time(ssh_config: Path) -> None:
    start = time.monotonic()

    results = hosts.across([Host("slow", "slow")], lambda engine: engine, timeout=0.5, ssh_config=ssh_config)

    assert time.monotonic() - start < 1.5
    assert results == [hosts.HostResult(Host("slow", "slow"), error="no answer within 0.5 s")]
