"""Key material: devbox's own login key, the user's --identity, and the pinned known_hosts."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from devbox.keys import authorized_keys, known_hosts
from devbox.keys.keypair import (
    ensure_user_key,
    generate_ed25519,
    load_identity,
    public_key_blob,
)

from devbox import paths
from devbox.errors import DevboxError, UsageError

from .conftest import usage_error


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $XDG_CONFIG_HOME (and $HOME) for every test; the real ~/.config is never touched."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    return xdg


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def public_blob_of(private_path: Path) -> str:
    key = serialization.load_ssh_private_key(private_path.read_bytes(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def write_key(path: Path, password: bytes | None = None) -> str:
    """An ed25519 private key in OpenSSH format at `path` (0600); returns its public blob."""
    key = Ed25519PrivateKey.generate()
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption)
    )
    path.chmod(0o600)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def write_pem_key(path: Path, password: bytes) -> str:
    """A passphrase-protected ed25519 key in PKCS#8 PEM, which keeps no public key in the clear."""
    key = Ed25519PrivateKey.generate()
    encryption = serialization.BestAvailableEncryption(password)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    path.chmod(0o600)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def ssh_keygen_y(path: Path) -> str:
    """What OpenSSH says the public half of the unencrypted key in `path` is."""
    out = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(path)],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    return public_key_blob(out.strip())


# --- devbox's own login key ------------------------------------------------------------------


def test_user_key_is_created_0600_in_a_0700_dir_under_xdg_config_home(config_home: Path) -> None:
    ident = ensure_user_key()
    key_dir = config_home / "devbox"
    assert ident.private_path == key_dir / "id_ed25519" == paths.user_key_path()
    assert mode(key_dir) == 0o700
    assert mode(ident.private_path) == 0o600
    assert mode(key_dir / "id_ed25519.pub") == 0o644


def test_user_key_defaults_to_home_config_without_xdg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    ident = ensure_user_key()
    assert ident.private_path == tmp_path / "home" / ".config" / "devbox" / "id_ed25519"
    assert ident.private_path.is_file()


def test_user_key_dir_with_loose_permissions_is_tightened_to_0700(config_home: Path) -> None:
    key_dir = config_home / "devbox"
    key_dir.mkdir(parents=True)
    key_dir.chmod(0o755)
    ensure_user_key()
    assert mode(key_dir) == 0o700


def test_second_call_returns_the_same_key_without_rewriting_it() -> None:
    first = ensure_user_key()
    private = first.private_path.read_bytes()
    second = ensure_user_key()
    assert second == first
    assert second.private_path.read_bytes() == private


def test_user_key_public_line_is_ed25519_with_a_devbox_comment() -> None:
    ident = ensure_user_key()
    kind, blob, comment = ident.public_line.split(" ", 2)
    assert kind == "ssh-ed25519"
    assert comment.startswith("devbox-")
    assert ident.private_path.with_suffix(".pub").read_text() == ident.public_line + "\n"


def test_user_key_public_line_matches_its_private_key() -> None:
    ident = ensure_user_key()
    assert public_key_blob(ident.public_line) == public_blob_of(ident.private_path)


def test_user_key_loads_with_paramiko() -> None:
    ident = ensure_user_key()
    key = paramiko.PKey.from_path(ident.private_path)
    assert isinstance(key, paramiko.Ed25519Key)
    assert f"{key.get_name()} {key.get_base64()}" == public_key_blob(ident.public_line)


def test_openssh_derives_the_same_public_key_from_the_user_key() -> None:
    ident = ensure_user_key()
    out = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(ident.private_path)],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    assert public_key_blob(out.strip()) == public_key_blob(ident.public_line)


def test_missing_pub_file_is_recreated_from_the_private_key() -> None:
    ident = ensure_user_key()
    pub = ident.private_path.with_name("id_ed25519.pub")
    pub.unlink()
    again = ensure_user_key()
    assert again.public_line == public_blob_of(ident.private_path)
    assert pub.read_text() == again.public_line + "\n"
    assert mode(pub) == 0o644


@pytest.mark.parametrize(
    "damage",
    [
        lambda: generate_ed25519("someone-else").public_line + "\n",  # another key's .pub
        lambda: "",
        lambda: "not a key\n",
        lambda: b"\xff\xfe\x00garbage\n",
    ],
    ids=["other-key", "empty", "text", "binary"],
)
def test_a_pub_file_that_is_not_the_keys_is_written_again_from_the_private_key(damage) -> None:
    ident = ensure_user_key()
    pub = ident.private_path.with_name("id_ed25519.pub")
    private = ident.private_path.read_bytes()
    wrong = damage()
    pub.write_bytes(wrong if isinstance(wrong, bytes) else wrong.encode())
    pub.chmod(0o600)
    again = ensure_user_key()
    assert public_key_blob(again.public_line) == ssh_keygen_y(ident.private_path)
    assert pub.read_text() == again.public_line + "\n"
    assert mode(pub) == 0o644
    assert ident.private_path.read_bytes() == private  # the key itself is never replaced


def test_a_matching_pub_file_is_left_as_it_is_comment_and_all() -> None:
    ident = ensure_user_key()
    pub = ident.private_path.with_name("id_ed25519.pub")
    pub.write_text(public_key_blob(ident.public_line) + " my own comment\n")
    before = pub.stat().st_mtime_ns
    assert ensure_user_key().public_line.endswith(" my own comment")
    assert pub.stat().st_mtime_ns == before


def test_devbox_key_is_marked_as_devbox_own_and_an_identity_is_not(tmp_path: Path) -> None:
    assert ensure_user_key().devbox_key
    key = tmp_path / "id_mine"
    write_key(key)
    assert not load_identity(key).devbox_key


def test_a_damaged_devbox_key_is_one_error_saying_how_to_get_a_new_one() -> None:
    ident = ensure_user_key()
    ident.private_path.write_text("garbage\n")
    with pytest.raises(DevboxError) as info:
        ensure_user_key()
    assert info.value.message == f"devbox's key {ident.private_path} is not a private key devbox can read"
    assert "devbox makes a new key" in (info.value.hint or "")


def test_user_key_at_an_explicit_path_is_created_there(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere" / "key"
    ident = ensure_user_key(path)
    assert ident.private_path == path
    assert mode(path.parent) == 0o700
    assert not paths.user_key_path().exists()


def test_generated_key_pairs_are_distinct_and_carry_the_comment() -> None:
    a, b = generate_ed25519("hello"), generate_ed25519("hello")
    assert a.public_line.endswith(" hello")
    assert a.public_line != b.public_line
    assert generate_ed25519("").public_line.count(" ") == 1


# --- --identity ------------------------------------------------------------------------------


def test_identity_uses_the_pub_file_next_to_the_key(tmp_path: Path) -> None:
    key = tmp_path / "id_mine"
    blob = write_key(key)
    (tmp_path / "id_mine.pub").write_text(f"{blob} me@laptop\n")
    ident = load_identity(key)
    assert ident.private_path == key
    assert ident.public_line == f"{blob} me@laptop"


@pytest.mark.parametrize(
    "pub_text",
    [
        lambda: generate_ed25519("other").public_line + "\n",
        lambda: "",
        lambda: "ssh-ed25519\n",
        lambda: "\udcff garbage",
    ],
    ids=["other-key", "empty", "type-only", "binary"],
)
def test_identity_whose_pub_file_is_another_key_is_refused_naming_both_and_the_fix(
    tmp_path: Path, pub_text
) -> None:
    key = tmp_path / "id_mine"
    write_key(key)
    pub = tmp_path / "id_mine.pub"
    pub.write_bytes(pub_text().encode(errors="surrogateescape"))
    err = usage_error(load_identity, key)
    assert err.message == f"{pub} does not match {key}"
    assert err.hint == f"regenerate it with `ssh-keygen -y -f {key} > {pub}`"


def test_the_fix_for_a_mismatched_pub_is_quoted_for_the_shell(tmp_path: Path) -> None:
    folder = tmp_path / "my keys"
    folder.mkdir()
    key = folder / "id mine"
    write_key(key)
    (folder / "id mine.pub").write_text(generate_ed25519("other").public_line + "\n")
    err = usage_error(load_identity, key)
    assert f"-f '{key}' > '{key}.pub'" in (err.hint or "")
    subprocess.run(err.hint.split("`")[1], shell=True, check=True)  # type: ignore[union-attr]
    assert public_key_blob(load_identity(key).public_line) == ssh_keygen_y(key)


@pytest.mark.parametrize("passphrase", ["", "secret"])
@pytest.mark.parametrize("kind", ["rsa", "ecdsa", "ed25519"])
def test_identity_pub_files_that_ssh_keygen_writes_match_their_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, passphrase: str
) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", "/nonexistent/agent.sock")
    key = tmp_path / f"id_{kind}"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "me@laptop", "-f", str(key)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    pub = (tmp_path / f"id_{kind}.pub").read_text().strip()
    assert load_identity(key).public_line == pub
    (tmp_path / f"id_{kind}.pub").unlink()
    assert load_identity(key).public_line == public_key_blob(pub)


def test_encrypted_identity_whose_pub_file_is_another_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The public half of an OpenSSH key is stored unencrypted: it can be checked without the passphrase.
    monkeypatch.setenv("SSH_AUTH_SOCK", "/nonexistent/agent.sock")
    key = tmp_path / "id_locked"
    write_key(key, password=b"secret")
    (tmp_path / "id_locked.pub").write_text(generate_ed25519("other").public_line + "\n")
    assert usage_error(load_identity, key).message == f"{tmp_path / 'id_locked.pub'} does not match {key}"


def test_encrypted_pem_identity_with_a_pub_file_is_used_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", "/nonexistent/agent.sock")
    key = tmp_path / "id_locked"
    blob = write_pem_key(key, password=b"secret")
    (tmp_path / "id_locked.pub").write_text(blob + " me\n")
    assert load_identity(key).public_line == blob + " me"


def test_identity_without_pub_file_derives_the_public_key(tmp_path: Path) -> None:
    key = tmp_path / "id_mine"
    blob = write_key(key)
    assert load_identity(key).public_line == blob


def test_identity_path_is_made_absolute_and_tilde_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    write_key(home / "id_mine")
    assert load_identity(Path("~/id_mine")).private_path == home / "id_mine"
    monkeypatch.chdir(home)
    assert load_identity(Path("id_mine")).private_path == home / "id_mine"


def test_missing_identity_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        load_identity(tmp_path / "nope")
    assert info.value.exit_code == 2
    assert info.value.message == f"identity file {tmp_path / 'nope'} does not exist"


def test_identity_that_is_a_directory_is_a_usage_error(tmp_path: Path) -> None:
    assert usage_error(load_identity, tmp_path).message == f"identity file {tmp_path} is not a file"


def test_identity_that_is_a_device_is_not_a_file_not_a_missing_one() -> None:
    assert usage_error(load_identity, Path("/dev/null")).message == "identity file /dev/null is not a file"


def test_a_key_others_can_read_is_refused_as_ssh_would_ignore_it(tmp_path: Path) -> None:
    key = tmp_path / "id_loose"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    key.chmod(0o640)

    error = usage_error(load_identity, key)
    assert error.message == f"{key} is open to others (mode 640), so ssh will not use it"
    assert error.hint == f"`chmod 600 {key}`"
    # The rule OpenSSH applies: the owner's own key with no group or other bits is used.
    refused = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, check=False
    )
    assert "UNPROTECTED PRIVATE KEY FILE" in refused.stderr
    key.chmod(0o620)  # writable by the group is as open, to OpenSSH
    assert usage_error(load_identity, key).message.endswith("(mode 620), so ssh will not use it")
    key.chmod(0o600)
    assert load_identity(key).private_path == key


def test_an_unreadable_identity_is_one_line_not_a_permission_traceback(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root reads any file: the unreadable one is asked for as the test user would.
        key = Path("/etc/shadow")
        user = os.environ.get("DEVBOX_TEST_USER")
        if not user:
            pytest.fail("needs DEVBOX_TEST_USER: run through `bash tests/run.sh`")
        code = (
            "from pathlib import Path; from devbox.keys.keypair import load_identity\n"
            "from devbox.errors import UsageError\n"
            "try:\n    load_identity(Path('/etc/shadow'))\n"
            "except UsageError as e:\n    print(e.message)"
        )
        done = subprocess.run(
            ["runuser", "-u", user, "--", sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd="/",  # not the checkout's devbox/
            env={
                "PATH": "/usr/sbin:/usr/bin:/bin",
                "HOME": "/tmp",
                "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
            },
        )
        assert done.stdout.strip() == f"cannot read identity file {key}: Permission denied", done.stderr
        return
    key = tmp_path / "id_locked"
    key.write_bytes(b"x")
    key.chmod(0)
    assert usage_error(load_identity, key).message == f"cannot read identity file {key}: Permission denied"


@pytest.mark.parametrize("content", [b"not a key\n", b""])
def test_a_file_that_is_no_private_key_is_refused_before_anything_is_created(
    tmp_path: Path, content: bytes
) -> None:
    key = tmp_path / "id_bad"
    key.write_bytes(content)
    with pytest.raises(UsageError) as info:
        load_identity(key)
    assert info.value.message == f"{key} is not a private key devbox can read"
    assert info.value.exit_code == 2


def test_encrypted_identity_without_an_agent_is_refused_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    key = tmp_path / "id_locked"
    blob = write_key(key, password=b"secret")
    (tmp_path / "id_locked.pub").write_text(blob + "\n")
    with pytest.raises(UsageError, match="passphrase-protected and no ssh-agent is running") as info:
        load_identity(key)
    assert f"ssh-add {key}" in (info.value.hint or "")


def test_encrypted_openssh_identity_without_pub_file_gives_the_public_key_it_holds_in_the_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", "/nonexistent/agent.sock")
    key = tmp_path / "id_locked"
    blob = write_key(key, password=b"secret")
    identity = load_identity(key)
    assert identity.public_line == blob
    assert identity.encrypted


def test_encrypted_pem_identity_without_pub_file_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", "/nonexistent/agent.sock")
    key = tmp_path / "id_locked"
    write_pem_key(key, password=b"secret")
    with pytest.raises(UsageError, match="cannot read the public key"):
        load_identity(key)


def test_encrypted_identity_with_pub_file_and_an_agent_is_used_through_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", "/nonexistent/agent.sock")
    key = tmp_path / "id_locked"
    blob = write_key(key, password=b"secret")
    (tmp_path / "id_locked.pub").write_text(blob + "\n")
    identity = load_identity(key)
    assert identity.public_line == blob
    assert identity.encrypted


# --- known_hosts -----------------------------------------------------------------------------


def test_pin_then_lookup_returns_the_key_without_its_comment() -> None:
    pair = generate_ed25519("host-comment")
    known_hosts.pin("devbox-a", pair.public_line)
    assert known_hosts.lookup("devbox-a") == public_key_blob(pair.public_line)
    assert "host-comment" not in paths.known_hosts_path().read_text()


def test_lookup_of_an_unknown_alias_or_missing_file_is_none() -> None:
    assert known_hosts.lookup("devbox-a") is None
    known_hosts.pin("devbox-a", generate_ed25519("").public_line)
    assert known_hosts.lookup("devbox-b") is None
    assert known_hosts.lookup("devbox") is None


def test_known_hosts_file_is_0600_in_a_0700_dir(config_home: Path) -> None:
    known_hosts.pin("devbox-a", generate_ed25519("").public_line)
    path = config_home / "devbox" / "known_hosts"
    assert path == paths.known_hosts_path()
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700


def test_repinning_an_alias_replaces_only_its_key() -> None:
    a1, a2, b = (generate_ed25519("").public_line for _ in range(3))
    known_hosts.pin("devbox-a", a1)
    known_hosts.pin("devbox-ab", b)
    known_hosts.pin("devbox-a", a2)
    assert known_hosts.lookup("devbox-a") == a2
    assert known_hosts.lookup("devbox-ab") == b
    lines = paths.known_hosts_path().read_text().splitlines()
    assert sorted(lines) == sorted([f"devbox-a {a2}", f"devbox-ab {b}"])


def test_unpin_removes_only_that_alias() -> None:
    a, b = generate_ed25519("").public_line, generate_ed25519("").public_line
    known_hosts.pin("devbox-a", a)
    known_hosts.pin("devbox-b", b)
    known_hosts.unpin("devbox-a")
    assert known_hosts.lookup("devbox-a") is None
    assert known_hosts.lookup("devbox-b") == b
    known_hosts.unpin("devbox-b")
    assert paths.known_hosts_path().read_text() == ""


def test_unpin_without_a_file_creates_nothing() -> None:
    known_hosts.unpin("devbox-a")
    assert not paths.known_hosts_path().exists()


def test_known_hosts_at_an_explicit_path(tmp_path: Path) -> None:
    path = tmp_path / "kh" / "known_hosts"
    line = generate_ed25519("").public_line
    known_hosts.pin("devbox-x", line, path)
    assert known_hosts.lookup("devbox-x", path) == line
    assert known_hosts.lookup("devbox-x") is None
    known_hosts.unpin("devbox-x", path)
    assert known_hosts.lookup("devbox-x", path) is None


def test_pinned_file_is_read_by_openssh_as_the_hosts_key() -> None:
    pair = generate_ed25519("")
    known_hosts.pin("devbox-a", pair.public_line)
    known_hosts.pin("devbox-b", generate_ed25519("").public_line)
    out = subprocess.run(
        ["ssh-keygen", "-F", "devbox-a", "-f", str(paths.known_hosts_path())],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    found = [ln for ln in out.splitlines() if not ln.startswith("#")]
    assert found == [f"devbox-a {pair.public_line}"]


def test_pinned_file_is_read_by_paramiko() -> None:
    pair = generate_ed25519("")
    known_hosts.pin("devbox-a", pair.public_line)
    keys = paramiko.HostKeys(str(paths.known_hosts_path()))
    key = keys.lookup("devbox-a")["ssh-ed25519"]
    assert f"{key.get_name()} {key.get_base64()}" == pair.public_line


def test_concurrent_pins_from_threads_all_land() -> None:
    lines = {f"devbox-{i}": generate_ed25519("").public_line for i in range(24)}
    barrier = threading.Barrier(len(lines))
    errors: list[BaseException] = []

    def pin(alias: str, line: str) -> None:
        try:
            barrier.wait()
            known_hosts.pin(alias, line)
        except BaseException as exc:  # reported by the assert below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=pin, args=item) for item in lines.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {alias: known_hosts.lookup(alias) for alias in lines} == lines
    assert len(paths.known_hosts_path().read_text().splitlines()) == len(lines)


# --- authorized_keys -------------------------------------------------------------------------


def test_authorized_keys_gains_a_new_key_and_keeps_the_old_ones() -> None:
    old, new = generate_ed25519("old").public_line, generate_ed25519("new").public_line
    assert authorized_keys.with_key(old + "\n\n", new) == f"{old}\n{new}\n".encode()


def test_authorized_keys_with_the_key_already_in_is_left_alone_whatever_the_comment() -> None:
    key = generate_ed25519("laptop").public_line
    same_key_other_comment = public_key_blob(key) + " desktop"
    assert authorized_keys.with_key(key + "\n", same_key_other_comment) is None


def test_a_binary_damaged_known_hosts_is_repaired_on_the_next_pin() -> None:
    path = paths.known_hosts_path()
    known_hosts.pin("devbox-a", generate_ed25519("a").public_line)
    good = path.read_text()
    path.write_bytes(path.read_bytes() + b"\xff\xfe\x00garbage\x9c\n\x00\x01\x02\n")
    assert known_hosts.lookup("devbox-a") == good.split(" ", 1)[1].strip()
    known_hosts.pin("devbox-b", generate_ed25519("b").public_line)
    lines = path.read_text().splitlines()
    assert lines[0] == good.strip()
    assert [ln.split()[0] for ln in lines] == ["devbox-a", "devbox-b"]


def test_an_unusable_config_dir_is_one_error_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file where the directory should be: refused even for root, who ignores permission bits.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(blocker / "config"))
    with pytest.raises(DevboxError) as exc:
        ensure_user_key()
    assert "cannot set up devbox's key" in exc.value.message
    assert "XDG_CONFIG_HOME" in (exc.value.hint or "")
    with pytest.raises(DevboxError) as exc:
        known_hosts.pin("devbox-a", generate_ed25519("a").public_line)
    assert "cannot create" in exc.value.message
