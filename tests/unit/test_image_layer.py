"""The devbox layer (images/ on any base) and the /etc/devbox payload each box gets: sshd_config,
host key and authorized_keys."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
from importlib import resources
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from devbox.keys.keypair import Identity, KeyPair, generate_ed25519, public_key_blob

from devbox.gpus import GpuSelection
from devbox.image import IMAGE_REPO, LAYER_FILES, _context_tar, layer_files, layer_tag
from devbox.spec import BoxSpec, LoginUser
from devbox.trust import payload

BASE_ID = "sha256:" + "ab" * 32
SCRIPTS = ("entrypoint.sh", "install.sh", "algorithms.sh")
SHELLS = [sh for sh in ("sh", "dash") if shutil.which(sh)]


def package_file(name: str) -> bytes:
    return (resources.files("devbox.images") / name).read_bytes()


# --- the layer -------------------------------------------------------------------------------


def test_layer_files_are_the_dockerfile_the_scripts_and_the_sshd_config() -> None:
    files = layer_files()
    assert set(files) == {"Dockerfile", "install.sh", "entrypoint.sh", "algorithms.sh", "sshd_config.in"}
    assert set(files) == set(LAYER_FILES)
    assert all(files[name] == package_file(name) and files[name] for name in files)


def test_dockerfile_copies_only_files_in_the_build_context() -> None:
    dockerfile = layer_files()["Dockerfile"].decode()
    copies = [ln.split()[1:-1] for ln in dockerfile.splitlines() if ln.startswith("COPY ")]
    assert copies, "the Dockerfile copies the scripts in"
    assert {src for srcs in copies for src in srcs} <= set(LAYER_FILES)
    assert "ARG BASE_IMAGE" in dockerfile
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", dockerfile, re.MULTILINE)


def test_dockerfile_runs_the_scripts_where_it_copies_them() -> None:
    dockerfile = layer_files()["Dockerfile"].decode()
    copy_dest = next(ln.split()[-1] for ln in dockerfile.splitlines() if ln.startswith("COPY "))
    assert f'"{copy_dest}install.sh"' in dockerfile
    assert f'"{copy_dest}entrypoint.sh"' in dockerfile


def test_layer_tag_is_deterministic_and_names_the_layer_repo() -> None:
    files = layer_files()
    tag = layer_tag(BASE_ID, files)
    assert tag == layer_tag(BASE_ID, dict(reversed(list(files.items()))))
    assert re.fullmatch(rf"{IMAGE_REPO}:[0-9a-f]{{24}}", tag)


def test_layer_tag_changes_with_the_base_image_id() -> None:
    files = layer_files()
    assert layer_tag(BASE_ID, files) != layer_tag("sha256:" + "cd" * 32, files)


@pytest.mark.parametrize("name", LAYER_FILES)
def test_layer_tag_changes_when_any_layer_file_changes(name: str) -> None:
    files = layer_files()
    changed = {**files, name: files[name] + b"\n"}
    assert layer_tag(BASE_ID, changed) != layer_tag(BASE_ID, files)


def test_layer_tag_changes_when_a_file_is_renamed() -> None:
    files = {"a.sh": b"echo", "b.sh": b"true"}
    assert layer_tag(BASE_ID, files) != layer_tag(BASE_ID, {"c.sh": b"echo", "b.sh": b"true"})


def test_build_context_holds_each_file_with_scripts_executable() -> None:
    files = layer_files()
    with tarfile.open(fileobj=_context_tar(files)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == set(files)
        for name, member in members.items():
            assert member.isfile()
            assert member.mode == (0o755 if name.endswith(".sh") else 0o644)
            assert member.size == len(files[name])
            assert tar.extractfile(member).read() == files[name]  # type: ignore[union-attr]


def test_build_context_is_readable_from_its_start() -> None:
    buf = _context_tar({"Dockerfile": b"FROM scratch\n"})
    assert buf.tell() == 0
    with tarfile.open(fileobj=buf) as tar:
        assert tar.getnames() == ["Dockerfile"]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("script", SCRIPTS)
def test_layer_scripts_are_valid_posix_shell(shell: str, script: str, tmp_path: Path) -> None:
    path = tmp_path / script
    path.write_bytes(package_file(script))
    proc = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_layer_scripts_start_with_sh_shebang_and_fail_fast(script: str) -> None:
    text = package_file(script).decode()
    assert text.startswith("#!/bin/sh\n")
    assert re.search(r"^set -eu$", text, re.MULTILINE)


def test_entrypoint_reads_the_payload_from_etc_devbox_and_runs_sshd_in_the_foreground() -> None:
    text = package_file("entrypoint.sh").decode()
    assert re.search(r"^conf=/etc/devbox$", text, re.MULTILINE)
    assert '"$conf/sshd_config" >"$config"' in text
    assert re.search(r"^exec /usr/sbin/sshd -D ", text, re.MULTILINE)


# --- the /etc/devbox payload -----------------------------------------------------------------


def box_spec(user: str = "alice") -> BoxSpec:
    return BoxSpec(
        name="box", image="ubuntu:24.04", user=LoginUser(user, 1001, 1001), gpus=GpuSelection.none()
    )


@pytest.fixture(scope="module")
def host_key() -> KeyPair:
    return generate_ed25519("devbox-box")


@pytest.fixture(scope="module")
def identity() -> Identity:
    return Identity(Path("/nonexistent/id_ed25519"), generate_ed25519("alice@laptop").public_line)


def payload_members(data: bytes) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    out: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m) if m.isfile() else None
            out[m.name] = (m, f.read() if f else b"")
    return out


def sshd_options(config: str) -> list[tuple[str, str]]:
    """(keyword in lowercase, value) per directive line, in order."""
    options = []
    for line in config.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, value = line.partition(" ")
            options.append((keyword.lower(), value.strip()))
    return options


def rendered_config(host_key: KeyPair, identity: Identity, user: str = "alice") -> str:
    members = payload_members(payload(box_spec(user).user.name, identity, host_key))
    return members["devbox/sshd_config"][1].decode()


def test_payload_is_the_devbox_dir_with_config_keys_and_modes(host_key: KeyPair, identity: Identity) -> None:
    members = payload_members(payload(box_spec().user.name, identity, host_key))
    assert {name: (m.type, m.mode) for name, (m, _) in members.items()} == {
        "devbox": (tarfile.DIRTYPE, 0o755),
        "devbox/sshd_config": (tarfile.REGTYPE, 0o644),
        "devbox/session.sh": (tarfile.REGTYPE, 0o755),
        "devbox/ssh_host_ed25519_key": (tarfile.REGTYPE, 0o600),
        "devbox/ssh_host_ed25519_key.pub": (tarfile.REGTYPE, 0o644),
        "devbox/authorized_keys": (tarfile.REGTYPE, 0o644),
    }
    assert next(iter(members)) == "devbox", "the directory comes before its files"


def test_payload_host_key_is_the_given_pair_and_loads_as_ed25519(
    host_key: KeyPair, identity: Identity
) -> None:
    members = payload_members(payload(box_spec().user.name, identity, host_key))
    private = members["devbox/ssh_host_ed25519_key"][1]
    assert private == host_key.private_openssh
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(private.decode()))
    assert f"{key.get_name()} {key.get_base64()}" == public_key_blob(host_key.public_line)
    assert members["devbox/ssh_host_ed25519_key.pub"][1] == host_key.public_line.encode() + b"\n"
    loaded = serialization.load_ssh_private_key(private, password=None)
    assert loaded.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode() == public_key_blob(host_key.public_line)


def test_payload_authorizes_exactly_the_login_identity(host_key: KeyPair, identity: Identity) -> None:
    members = payload_members(payload(box_spec().user.name, identity, host_key))
    assert members["devbox/authorized_keys"][1].decode().splitlines() == [identity.public_line]


def test_sshd_config_template_has_no_placeholder_left(host_key: KeyPair, identity: Identity) -> None:
    config = rendered_config(host_key, identity)
    assert "$" not in config
    assert "${user}" in package_file("sshd_config.in").decode()


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("pubkeyauthentication", "yes"),
        ("authenticationmethods", "publickey"),
        ("passwordauthentication", "no"),
        ("kbdinteractiveauthentication", "no"),
        ("permitemptypasswords", "no"),
        ("permitrootlogin", "no"),
        ("allowusers", "alice"),
        ("x11forwarding", "no"),
        ("allowtcpforwarding", "yes"),
        ("permituserenvironment", "no"),
        ("strictmodes", "yes"),
        ("hostkeyalgorithms", "ssh-ed25519"),
    ],
)
def test_sshd_config_is_key_only_for_the_one_login_user(
    keyword: str, value: str, host_key: KeyPair, identity: Identity
) -> None:
    options = sshd_options(rendered_config(host_key, identity))
    assert [v for k, v in options if k == keyword] == [value]


def test_sshd_config_allows_only_the_spec_user(host_key: KeyPair, identity: Identity) -> None:
    options = dict(sshd_options(rendered_config(host_key, identity, user="bob_2")))
    assert options["allowusers"] == "bob_2"


def test_sshd_config_sets_each_keyword_once(host_key: KeyPair, identity: Identity) -> None:
    # sshd keeps the first value of most keywords: a second line would silently be ignored.
    keywords = [k for k, _ in sshd_options(rendered_config(host_key, identity))]
    assert len(keywords) == len(set(keywords))


def test_sshd_config_has_no_match_block_or_setenv_for_the_entrypoint_to_append_after(
    host_key: KeyPair, identity: Identity
) -> None:
    # The entrypoint appends one SetEnv line at the end: inside a Match block it would apply to
    # that block only, and sshd keeps the first SetEnv it reads.
    keywords = {k for k, _ in sshd_options(rendered_config(host_key, identity))}
    assert "match" not in keywords
    assert "setenv" not in keywords


def test_sshd_config_points_at_the_files_in_the_payload(host_key: KeyPair, identity: Identity) -> None:
    data = payload(box_spec().user.name, identity, host_key)
    in_etc = {"/etc/" + name for name in payload_members(data)}
    options = sshd_options(rendered_config(host_key, identity))
    host_keys = [v for k, v in options if k == "hostkey"]
    assert host_keys == ["/etc/devbox/ssh_host_ed25519_key"]
    assert set(host_keys) <= in_etc
    authorized = next(v for k, v in options if k == "authorizedkeysfile").split()
    assert authorized[0] == "/etc/devbox/authorized_keys" and authorized[0] in in_etc


def test_sshd_config_uses_sftp_internal_and_port_22(host_key: KeyPair, identity: Identity) -> None:
    options = dict(sshd_options(rendered_config(host_key, identity)))
    assert options["port"] == "22"
    assert options["subsystem"] == "sftp internal-sftp"
    assert options["usepam"] == "no"
