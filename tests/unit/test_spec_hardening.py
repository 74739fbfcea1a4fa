"""Hardening of what a spec accepts and what it hands the box: mount targets the root entrypoint
writes, mount sources the user could not read or write, --env values that a session could not get
exactly, env secrets kept out of labels, and the sshd settings every client must still meet."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import paramiko
import pytest
from devbox.keys.keypair import Identity, generate_ed25519
from hypothesis import given
from hypothesis import strategies as st

from devbox.errors import DevboxError
from devbox.gpus import GpuSelection
from devbox.spec import (
    BoxSpec,
    HostFacts,
    LoginUser,
    Mount,
    from_flags,
    local_access,
    local_unowned_dir,
    parse_env,
    parse_mount,
)
from devbox.trust import payload, session_script, sshd_config

from .conftest import usage_error

BOB = LoginUser("bob", 1500, 1500)


# --- mount targets -------------------------------------------------------------------------------

ENTRYPOINT_WRITES = [
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/sudoers.d/devbox",
    "/etc/profile.d",
    "/etc/profile.d/zz-devbox-env.sh",
    "/etc/ssh",
    "/etc/ssh/sshd_config",
    "/etc/devbox",
    "/etc/devbox/authorized_keys",
    "/run/devbox",
    "/run/devbox/env.sh",
    "/run/sshd",
    "/usr/local/lib/devbox",
    "/usr/local/lib/devbox/entrypoint.sh",
]
THEIR_PARENTS = ["/", "/etc", "/run", "/usr", "/usr/local", "/usr/local/lib"]


@pytest.mark.parametrize("target", ENTRYPOINT_WRITES + THEIR_PARENTS)
def test_mounting_over_what_the_root_entrypoint_writes_or_a_parent_is_refused(
    tmp_path: Path, target: str
) -> None:
    err = usage_error(from_flags, name="x", image="img", mounts=[f"{tmp_path}:{target}"])
    assert err.message == f"cannot mount over {target}"
    assert "devbox manages" in (err.hint or "")


@pytest.mark.parametrize("target", ["/proc", "/sys", "/dev", "/dev/"])
def test_mounting_over_the_runtime_s_own_file_systems_is_refused_before_docker_fails_the_start(
    tmp_path: Path, target: str
) -> None:
    err = usage_error(from_flags, name="x", image="img", mounts=[f"{tmp_path}:{target}"])
    assert err.message.startswith("cannot mount over /")
    assert err.hint == "the container runtime provides it; mount elsewhere"


def test_a_mount_inside_dev_is_the_user_s_choice(tmp_path: Path) -> None:
    spec = from_flags(name="x", image="img", mounts=[f"{tmp_path}:/dev/datasets"])
    assert [m.target for m in spec.mounts] == ["/dev/datasets"]


@pytest.mark.parametrize("target", ["/var/run", "/var/run/devbox", "/var/run/sshd", "/var/run/devbox/x"])
def test_var_run_is_the_same_place_as_run(tmp_path: Path, target: str) -> None:
    # Debian-family images link /var/run to /run, and Docker follows that link for a mount target.
    err = usage_error(from_flags, name="x", image="img", mounts=[f"{tmp_path}:{target}"])
    assert err.message == f"cannot mount over {target}"


@pytest.mark.parametrize(
    "target",
    [
        "/etc/passwd.d",
        "/etc/passwdx",
        "/etc/sshx",
        "/etc/myapp",
        "/etc/pip.conf",
        "/run/user-data",
        "/var/run-data",
        "/var",
        "/usr/local/cuda",
        "/usr/local/lib/python3",
        "/workspace",
        "/home/dev/data",
    ],
)
def test_targets_next_to_reserved_ones_are_fine(tmp_path: Path, target: str) -> None:
    spec = from_flags(name="x", image="img", mounts=[f"{tmp_path}:{target}"])
    assert [m.target for m in spec.mounts] == [target]


def test_a_target_that_normalizes_into_a_reserved_one_is_refused(tmp_path: Path) -> None:
    err = usage_error(from_flags, name="x", image="img", mounts=[f"{tmp_path}:/etc/x/../sudoers.d/"])
    assert err.message == "cannot mount over /etc/sudoers.d"


# --- mount sources the user could not read or write ------------------------------------------------


def facts_with(access, exists=lambda _p: True) -> HostFacts:
    return HostFacts(BOB, "/srv/home", exists=exists, where=" on gpu1", access=access)


def test_a_source_the_user_cannot_read_is_refused_naming_it_and_the_host() -> None:
    facts = facts_with(lambda path, write: path != "/etc/shadow")
    err = usage_error(parse_mount, "/etc/shadow:/mnt/x:ro", facts)
    assert err.message == "you cannot read mount source /etc/shadow on gpu1"
    assert "mounts only what you can read" in (err.hint or "")


def test_a_read_write_source_the_user_cannot_write_is_refused_with_the_ro_form_as_hint() -> None:
    facts = facts_with(lambda _path, write: not write)
    err = usage_error(parse_mount, "/srv/data:/data", facts)
    assert err.message == "you cannot write mount source /srv/data on gpu1"
    assert "/srv/data:/data:ro" in (err.hint or "")


def test_the_same_source_read_only_is_fine_when_only_reading_is_allowed() -> None:
    facts = facts_with(lambda _path, write: not write)
    assert parse_mount("/srv/data:/data:ro", facts) == Mount("/srv/data", "/data", True)


def test_access_is_asked_for_the_expanded_path_read_then_write_for_rw() -> None:
    asked: list[tuple[str, bool]] = []

    def access(path: str, write: bool) -> bool:
        asked.append((path, write))
        return True

    parse_mount("~/./a/../data/:/d", facts_with(access))
    parse_mount("~/ro:/r:ro", facts_with(access))
    assert asked == [("/srv/home/data", False), ("/srv/home/data", True), ("/srv/home/ro", False)]


def test_a_missing_source_is_reported_as_missing_before_access_is_asked() -> None:
    asked: list[str] = []
    facts = facts_with(lambda p, _w: asked.append(p) or True, exists=lambda _p: False)
    err = usage_error(parse_mount, "/nope:/d", facts)
    assert "does not exist" in err.message and asked == []


def test_facts_without_an_access_check_ask_nothing() -> None:
    facts = HostFacts(BOB, "/srv/home", exists=None)
    assert facts.access is None
    assert parse_mount("/etc/shadow:/mnt/x:ro", facts).source == "/etc/shadow"
    assert HostFacts.unchecked().access is None


def test_local_facts_check_access_on_this_machine() -> None:
    assert HostFacts.local().access is local_access


def test_local_access_asks_for_read_and_enter_on_a_directory_and_write_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "f").write_text("x")
    modes: list[tuple[str, int]] = []
    monkeypatch.setattr(os, "access", lambda path, mode: modes.append((path, mode)) or True)
    local_access(str(tmp_path), False)
    local_access(str(tmp_path), True)
    local_access(str(tmp_path / "f"), False)
    local_access(str(tmp_path / "f"), True)
    assert modes == [
        (str(tmp_path), os.R_OK | os.X_OK),
        (str(tmp_path), os.R_OK | os.W_OK | os.X_OK),
        (str(tmp_path / "f"), os.R_OK),
        (str(tmp_path / "f"), os.R_OK | os.W_OK),
    ]


def test_from_flags_checks_every_mount_source_with_the_hosts_access() -> None:
    facts = facts_with(lambda path, _write: path != "/srv/secret")
    err = usage_error(
        from_flags, name="x", image="img", mounts=["/srv/ok:/a", "/srv/secret:/b:ro"], facts=facts
    )
    assert err.message == "you cannot read mount source /srv/secret on gpu1"


# --- directory sources root in the box (sudo) could read all of --------------------------------------

SUDO_HINT = "mount a directory you own, or add --no-sudo"


def facts_owning(unowned_dir) -> HostFacts:
    return HostFacts(
        BOB,
        "/srv/home",
        exists=lambda _p: True,
        where=" on gpu1",
        access=lambda _p, _w: True,
        unowned_dir=unowned_dir,
    )


def test_with_sudo_a_directory_the_user_does_not_own_is_refused_naming_it_and_the_fix() -> None:
    err = usage_error(parse_mount, "/etc:/mnt/e:ro", facts_owning(lambda path: path == "/etc"), sudo=True)
    assert err.message == (
        "--mount /etc: you do not own /etc on gpu1, and root in the box (sudo) could read everything under it"
    )
    assert err.hint == SUDO_HINT


def test_without_sudo_a_directory_the_user_can_read_but_does_not_own_is_fine() -> None:
    facts = facts_owning(lambda _path: True)
    assert parse_mount("/etc:/mnt/e:ro", facts, sudo=False) == Mount("/etc", "/mnt/e", True)


def test_ownership_is_asked_for_the_expanded_path_and_only_with_sudo() -> None:
    asked: list[str] = []
    facts = facts_owning(lambda path: asked.append(path) or False)
    parse_mount("~/./data/:/d", facts, sudo=True)
    parse_mount("~/other:/o", facts, sudo=False)
    assert asked == ["/srv/home/data"]


def test_from_flags_checks_ownership_when_the_box_has_sudo_and_not_with_no_sudo() -> None:
    facts = facts_owning(lambda path: path == "/srv/shared")
    flags = {"name": "x", "image": "img", "mounts": ["/srv/mine:/a", "/srv/shared:/b:ro"], "facts": facts}
    err = usage_error(from_flags, **flags)
    assert err.message.startswith("--mount /srv/shared: you do not own /srv/shared on gpu1")
    assert from_flags(**flags, sudo=False).mounts[1] == Mount("/srv/shared", "/b", True)


def test_facts_check_ownership_locally_and_not_before_the_host_is_known() -> None:
    assert HostFacts.local().unowned_dir is local_unowned_dir
    assert HostFacts.unowned_dir_check(None) is local_unowned_dir
    assert HostFacts.unchecked().unowned_dir is None
    assert HostFacts(BOB, "/srv/home").unowned_dir is None


def an_ordinary_login(path: Path) -> int:
    """The UID that owns `path`, given to it when tests run as root (root owns everything in effect)."""
    if os.getuid() == 0:
        os.chown(path, 1500, 1500)
    return path.stat().st_uid


def test_locally_sudo_and_a_mount_of_etc_or_a_link_to_it_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    uid = an_ordinary_login(mine)
    assert os.stat("/etc").st_uid != uid
    monkeypatch.setattr(os, "getuid", lambda: uid)
    (tmp_path / "etc-link").symlink_to("/etc")
    for source in ("/etc", f"{tmp_path}/etc-link"):
        err = usage_error(from_flags, name="x", image="img", mounts=[f"{source}:/mnt/e:ro"])
        assert err.message == (
            f"--mount {source}: you do not own {source}, "
            "and root in the box (sudo) could read everything under it"
        )
    spec = from_flags(name="x", image="img", mounts=[f"{mine}:/mnt/m", "/etc/passwd:/mnt/h:ro"])
    assert [m.source for m in spec.mounts] == [str(mine), "/etc/passwd"]


def test_local_unowned_dir_is_a_directory_owned_by_someone_else_links_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    uid = an_ordinary_login(mine)
    (tmp_path / "etc-link").symlink_to("/etc")
    (tmp_path / "mine-link").symlink_to(mine)
    monkeypatch.setattr(os, "getuid", lambda: uid)
    assert local_unowned_dir("/etc")
    assert local_unowned_dir(str(tmp_path / "etc-link"))
    assert not local_unowned_dir(str(mine))
    assert not local_unowned_dir(str(tmp_path / "mine-link"))
    assert not local_unowned_dir("/etc/passwd")  # a file: only the read/write check applies
    monkeypatch.setattr(os, "getuid", lambda: 0)
    assert not local_unowned_dir("/etc")  # root can read all of it on the host anyway


class ShellTunnel:
    """A tunnel to this machine: its commands run here, behind `prefix` (setpriv, to run as another UID)."""

    def __init__(self, prefix: list[str]) -> None:
        self.prefix = prefix
        self.commands: list[list[str]] = []

    def run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        self.commands.append(args)
        return subprocess.run([*self.prefix, *args], capture_output=True, text=True, timeout=10)

    def failure(self, stderr: str) -> DevboxError:
        return DevboxError(f"ssh failed: {stderr.strip()}")


def test_a_remote_host_is_asked_the_same_question_through_its_tunnel(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix: list[str] = []
    if os.getuid() == 0:
        # util-linux's setpriv (on every machine tests/run.sh sets up) runs the check as another UID.
        assert shutil.which("setpriv"), "setpriv (util-linux) is needed to test as an ordinary user"
        prefix = ["setpriv", "--reuid=1500", "--regid=1500", "--clear-groups"]
    # A directory every UID can reach: pytest's own temporary root is private to its user.
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="devbox-owner-"))
    try:
        base.chmod(0o755)
        mine = base / "mine dir"
        mine.mkdir()
        uid = an_ordinary_login(mine)
        (base / "etc-link").symlink_to("/etc")
        (base / "mine-link").symlink_to(mine)
        tunnel = ShellTunnel(prefix)
        remote = HostFacts.unowned_dir_check(tunnel)  # type: ignore[arg-type]
        monkeypatch.setattr(os, "getuid", lambda: uid)
        paths = [
            "/etc",
            "/etc/passwd",
            str(mine),
            str(base / "etc-link"),
            str(base / "mine-link"),
            "/nonexistent",
        ]
        answers = {p: remote(p) for p in paths}
        assert answers == {p: local_unowned_dir(p) for p in paths}
        assert answers["/etc"] and not answers[str(mine)]
        assert tunnel.commands[0][:2] == ["sh", "-c"] and tunnel.commands[0][-1] == "/etc"
    finally:
        shutil.rmtree(base)


def test_a_remote_ownership_check_that_cannot_reach_the_host_raises_the_tunnels_error() -> None:
    class Down(ShellTunnel):
        def run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
            return subprocess.CompletedProcess(
                args, 255, "", "ssh: connect to host gpu1: Connection refused\n"
            )

    with pytest.raises(DevboxError, match="ssh failed: ssh: connect to host gpu1"):
        HostFacts.unowned_dir_check(Down([]))("/srv/data")  # type: ignore[arg-type]


# --- --env and --workdir values ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["K=a\nb", "K=\n", "K=a\0b", "K=line1\nline2\n"])
def test_env_values_with_a_newline_or_nul_are_refused(text: str) -> None:
    err = usage_error(parse_env, text)
    assert err.message == "--env K holds a newline or NUL"


def test_env_values_that_are_not_utf8_are_refused() -> None:
    undecodable = b"K=caf\xe9".decode(errors="surrogateescape")  # what argv gives for Latin-1 bytes
    err = usage_error(parse_env, undecodable)
    assert err.message == "--env K is not valid UTF-8 text"


@pytest.mark.parametrize(
    "value",
    ['a"b', "back\\slash", "$HOME `id` $(id)", "it's", "  two  spaces  ", "ünïcødé ✓", "tab\there", "#x", ""],
)
def test_env_values_with_quotes_dollars_spaces_and_unicode_are_kept_exactly(value: str) -> None:
    assert parse_env(f"K={value}") == ("K", value)


@pytest.mark.parametrize(
    "value", ["\x1b[31mred\x1b[0m", "a\x01b", "carriage\rreturn", "del\x7f", "c1\x85\x9b", "\x07"]
)
def test_env_values_with_control_characters_other_than_newline_and_nul_are_kept_exactly(value: str) -> None:
    # They reach every session unchanged (tests/unit/test_entrypoint.py runs the env file through
    # sh, dash and bash), so there is no reason to refuse them.
    assert parse_env(f"K={value}") == ("K", value)


@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\0")))
def test_any_text_without_newline_or_nul_is_kept_exactly(value: str) -> None:
    assert parse_env(f"SOME_VAR={value}") == ("SOME_VAR", value)


@pytest.mark.parametrize("workdir", ["/work\nspace", "/a\tb", "/x\x1b[31m", "/del\x7f"])
def test_workdir_with_a_control_character_is_refused(workdir: str) -> None:
    err = usage_error(from_flags, name="x", image="img", workdir=workdir)
    assert "control character" in err.message


# --- env secrets in the fingerprint label ------------------------------------------------------------


def spec_with_env(*env: tuple[str, str]) -> BoxSpec:
    return BoxSpec(name="box", image="img", user=BOB, gpus=GpuSelection.none(), env=env)


def test_fingerprint_holds_no_env_value_only_names_and_digests() -> None:
    secret = "hunter2-Sup3r-S3cret"
    label = json.dumps(spec_with_env(("API_TOKEN", secret), ("B", "x y")).fingerprint(), sort_keys=True)
    assert secret not in label and "x y" not in label
    env = json.loads(label)["env"]
    assert [e.split("=")[0] for e in env] == ["API_TOKEN", "B"]
    assert all(re.fullmatch(r"[A-Z_]+=sha256:[0-9a-f]{64}", e) for e in env)


def test_fingerprint_tells_a_changed_value_from_the_same_one() -> None:
    same = spec_with_env(("K", "v1")).fingerprint()
    assert spec_with_env(("K", "v1")).fingerprint() == same
    assert spec_with_env(("K", "v2")).fingerprint() != same
    # The name is part of what is hashed: moving a value to another name is a change.
    assert spec_with_env(("A", "B=c")).fingerprint() != spec_with_env(("A=B", "c")).fingerprint()


def test_fingerprint_survives_a_json_round_trip_as_the_label_does() -> None:
    fp = spec_with_env(("K", 'ünï "q"'), ("J", "")).fingerprint()
    assert json.loads(json.dumps(fp, sort_keys=True)) == fp


# --- sshd settings and the session script --------------------------------------------------------------


def sshd_values(keyword: str) -> list[str]:
    lines = [ln.split(None, 1) for ln in sshd_config("alice").splitlines() if ln and not ln.startswith("#")]
    return [value.strip() for key, value in lines if key.lower() == keyword.lower()]


def test_key_exchange_offers_post_quantum_hybrids_first_with_a_classical_fallback() -> None:
    [kex] = sshd_values("KexAlgorithms")
    names = kex.split(",")
    assert names[:3] == [
        "mlkem768x25519-sha256",
        "sntrup761x25519-sha512",
        "sntrup761x25519-sha512@openssh.com",
    ]
    assert "curve25519-sha256" in names
    assert not any(n.startswith(("diffie-hellman", "ecdh-")) for n in names)


def test_only_encrypt_then_mac_macs_are_offered() -> None:
    [macs] = sshd_values("MACs")
    assert macs and all(m.endswith("-etm@openssh.com") for m in macs.split(","))


def test_paramiko_can_negotiate_every_part_of_the_box_sshd_config() -> None:
    # devbox itself logs in with paramiko: each list must keep a choice it implements.
    transport = paramiko.Transport
    for keyword, supported in (
        ("KexAlgorithms", transport._kex_info),
        ("Ciphers", transport._cipher_info),
        ("MACs", transport._mac_info),
        ("HostKeyAlgorithms", transport._key_info),
    ):
        [value] = sshd_values(keyword)
        assert set(value.split(",")) & set(supported), keyword


def test_paramiko_without_aes_gcm_still_has_a_cipher_and_mac_pair() -> None:
    # paramiko before 3.5 has no AES-GCM: its CTR ciphers need an ETM MAC it knows.
    [ciphers], [macs] = sshd_values("Ciphers"), sshd_values("MACs")
    assert {"aes256-ctr", "aes128-ctr"} & set(ciphers.split(","))
    assert {"hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com"} & set(macs.split(","))


def test_every_session_goes_through_the_session_script_in_the_payload() -> None:
    assert sshd_values("ForceCommand") == ["/etc/devbox/session.sh"]
    assert sshd_values("SetEnv") == []
    identity = Identity(Path("/nonexistent/id"), generate_ed25519("alice@laptop").public_line)
    with tarfile.open(fileobj=io.BytesIO(payload("alice", identity, generate_ed25519("h")))) as tar:
        member = tar.getmember("devbox/session.sh")
        assert member.mode == 0o755
        assert tar.extractfile(member).read() == session_script()  # type: ignore[union-attr]


@pytest.mark.parametrize("shell", [sh for sh in ("sh", "dash", "bash") if shutil.which(sh)])
def test_session_script_is_valid_posix_shell(shell: str, tmp_path: Path) -> None:
    script = tmp_path / "session.sh"
    script.write_bytes(session_script())
    proc = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_session_script_never_stops_on_an_error() -> None:
    # A failing `set -e` step would lock the user out of their box: the script must not use it.
    text = session_script().decode()
    assert text.startswith("#!/bin/sh\n")
    assert not re.search(r"^set -\w*e", text, re.MULTILINE)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"image": ""}, "the image name is empty"),
        ({"image": "  "}, "the image name is empty"),
        ({"name": ""}, "invalid box name ''"),
        ({"memory": "0"}, "invalid --memory '0'"),
        ({"memory": "0g"}, "invalid --memory '0g'"),
        ({"shm_size": "0"}, "invalid --shm-size '0'"),
        ({"shm_size": "0.0m"}, "invalid --shm-size '0.0m'"),
    ],
)
def test_meaningless_values_are_refused_not_passed_through(flags: dict, message: str) -> None:
    args = {"name": "box", "image": "debian:12", **flags}
    assert message in usage_error(from_flags, **args).message
