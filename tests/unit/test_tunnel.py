"""The ssh tunnel to a host: the argv devbox gives OpenSSH, how ssh's complaints are classified, and
host keys (scan, fingerprints, known_hosts). Nothing here needs a server except the last section,
which runs an in-process paramiko server on 127.0.0.1 (no sshd, no network)."""

from __future__ import annotations

import contextlib
import io
import os
import pwd
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from devbox.keys.keypair import generate_ed25519, public_key_blob

from devbox import sshconfig, tunnel
from devbox.errors import DevboxError
from devbox.tunnel import HostKeyChanged, HostKeyUnknown, Tunnel, fingerprints

from .conftest import ssh_g

PASSWD_HOME = pwd.getpwuid(os.getuid()).pw_dir
PASSWD_USER = pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture(autouse=True)
def home(clean_home: Path) -> Path:
    return clean_home


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a ControlPath must fit in a unix socket address."""
    path = Path(tempfile.mkdtemp(prefix="dbx-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def options(argv: list[str]) -> dict[str, list[str]]:
    """Every `-o Key=Value` in argv, by key, in order."""
    found: dict[str, list[str]] = {}
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag == "-o":
            key, _, val = value.partition("=")
            found.setdefault(key, []).append(val)
    return found


def plain(
    label: str = "gpu1", target: str = "gpu1", control: str = "/tmp/cm/habc", config: Path | None = None
):
    return Tunnel(label, target, Path(control), config)


def refusing(short_dir: Path, label: str = "gpu1") -> Tunnel:
    """A tunnel to 127.0.0.1 port 1 through a config of our own: every connection is refused at once."""
    config = short_dir / "ssh_config"
    config.write_text(f"Host *\n    Port 1\n    ConnectTimeout 1\n    UserKnownHostsFile {short_dir}/kh\n")
    return Tunnel(label, "127.0.0.1", short_dir / "hx", config)


# -- the argv ------------------------------------------------------------------------------------------


def test_argv_never_prompts_checks_host_keys_strictly_and_bounds_the_connect() -> None:
    argv = plain()._argv("-O", "check", "gpu1")

    opts = options(argv)
    assert argv[0] == "ssh"
    assert opts["BatchMode"] == ["yes"]
    assert opts["StrictHostKeyChecking"] == ["yes"]
    assert opts["ConnectTimeout"] == [f"{tunnel.connect_timeout():g}"]
    assert opts["ControlPath"] == ["/tmp/cm/habc"]
    assert "ServerAliveInterval" in opts and "ServerAliveCountMax" in opts
    assert argv[-3:] == ["-O", "check", "gpu1"]


def test_argv_names_no_config_file_unless_one_is_set() -> None:
    assert "-F" not in plain()._argv("gpu1")
    argv = plain(config=Path("/srv/my ssh/config"))._argv("gpu1")
    assert argv[1:3] == ["-F", "/srv/my ssh/config"]
    assert argv.count("-F") == 1


def test_control_path_with_spaces_is_quoted_and_percent_escaped() -> None:
    argv = plain(control="/tmp/my dir/100%/h1")._argv("gpu1")
    assert options(argv)["ControlPath"] == ['"/tmp/my dir/100%%/h1"']


def test_openssh_reads_the_control_path_back_as_the_real_path() -> None:
    argv = plain(control="/tmp/my dir/100%/h%d1")._argv("-F", "/dev/null", "gpu1")
    assert ssh_g(argv)["controlpath"] == "/tmp/my dir/100%/h%d1"


def test_openssh_accepts_every_default_option() -> None:
    got = ssh_g(plain()._argv("-F", "/dev/null", "gpu1"))
    assert got["batchmode"] == "yes"
    assert got["stricthostkeychecking"] == "true"
    assert got["connecttimeout"] == f"{tunnel.connect_timeout():g}"
    assert got["serveraliveinterval"] == "5"


def test_overrides_replace_defaults_instead_of_adding_a_second_value() -> None:
    argv = plain()._argv("gpu1", "true", StrictHostKeyChecking="accept-new", ControlPath="none")
    opts = options(argv)
    assert opts["StrictHostKeyChecking"] == ["accept-new"]
    assert opts["ControlPath"] == ["none"]
    assert opts["BatchMode"] == ["yes"]
    assert argv[-2:] == ["gpu1", "true"]


def test_extra_options_are_added() -> None:
    opts = options(plain()._argv("gpu1", ControlMaster="no"))
    assert opts["ControlMaster"] == ["no"]


def test_proxy_command_is_one_shell_safe_ssh_w_through_the_master() -> None:
    t = plain(control="/tmp/my dir/habc", config=Path("/srv/my ssh/config"))

    argv = shlex.split(t.proxy_command("127.0.0.1", 40123))

    assert argv[:3] == ["ssh", "-F", "/srv/my ssh/config"]
    assert argv[-3:] == ["-W", "127.0.0.1:40123", "gpu1"]
    assert options(argv)["ControlMaster"] == ["no"]
    assert options(argv)["ControlPath"] == ['"/tmp/my dir/habc"']


def test_run_quotes_the_remote_command_as_one_argument() -> None:
    # The argv `run` builds: the remote command is one shell-quoted word after the target.
    argv = plain()._argv("gpu1", shlex.join(["test", "-e", "/data/my dir"]), ControlMaster="no")
    assert argv[-1] == "test -e '/data/my dir'"


# -- for_host ------------------------------------------------------------------------------------------


def test_for_host_puts_the_master_in_devbox_control_dir_under_a_stable_name() -> None:
    a = Tunnel.for_host("gpu1", "alice@gpu1")

    assert a.control.parent == sshconfig.control_dir()
    assert a.control.name.startswith("h") and len(a.control.name) == 13
    assert Tunnel.for_host("gpu1", "alice@gpu1") == a
    assert Tunnel.for_host("gpu2", "alice@gpu1").control != a.control
    assert Tunnel.for_host("gpu1", "ssh://alice@gpu1:2222").control != a.control
    assert a.docker_socket == a.control.with_name(a.control.name + ".docker")


def test_for_host_needs_no_config_file_when_the_user_has_none() -> None:
    assert Tunnel.for_host("gpu1", "gpu1").config is None


def test_for_host_names_a_config_that_ssh_would_not_find_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "my_config"
    config.write_text("Host gpu1\n")
    assert Tunnel.for_host("gpu1", "gpu1", config).config == config
    monkeypatch.setenv("DEVBOX_SSH_CONFIG", str(config))
    assert Tunnel.for_host("gpu1", "gpu1").config == config


def test_for_host_names_home_ssh_config_when_home_is_not_the_passwd_home(home: Path) -> None:
    (home / ".ssh").mkdir()
    (home / ".ssh" / "config").write_text("Host gpu1\n")
    assert Tunnel.for_host("gpu1", "gpu1").config == home / ".ssh" / "config"


def test_close_without_a_master_only_removes_a_stale_docker_socket(short_dir: Path) -> None:
    t = Tunnel("gpu1", "gpu1", short_dir / "hx", None)
    t.docker_socket.write_text("")

    t.close()

    assert not t.docker_socket.exists()
    t.close()  # nothing left to remove: still fine


# -- failure(): ssh's complaint as one line and a hint -------------------------------------------------

CHANGED = """\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
It is also possible that a host key has just been changed.
The fingerprint for the ED25519 key sent by the remote host is
SHA256:Uc2n1UvOqGSN7bbLEvVbvbUGkg5AYqNoP8ggU1wGN9Q.
Please contact your system administrator.
Add correct host key in /home/alice/.ssh/known_hosts to get rid of this message.
Offending ED25519 key in /home/alice/.ssh/known_hosts:7
  remove with:
  ssh-keygen -f "/home/alice/.ssh/known_hosts" -R "gpu1.example.com"
Host key for gpu1.example.com has changed and you have requested strict checking.
Host key verification failed.
"""

UNKNOWN = (
    "No ED25519 host key is known for gpu1.example.com and you have requested strict checking.\r\n"
    "Host key verification failed.\r\n"
)


def test_changed_host_key_is_fatal_and_names_devbox_host_trust() -> None:
    err = plain().failure(CHANGED)

    assert isinstance(err, HostKeyChanged)
    assert "gpu1" in err.message and "CHANGED" in err.message
    assert "`devbox host trust gpu1`" in (err.hint or "")
    assert "ssh-keygen -R" in (err.hint or "")
    assert "\n" not in str(err)


def test_changed_host_key_is_recognised_by_the_strict_checking_line_alone() -> None:
    err = plain().failure(
        "Host key for [10.0.0.5]:2222 has changed and you have requested strict checking.\n"
    )
    assert isinstance(err, HostKeyChanged)


def test_unknown_host_key_says_so_even_when_the_key_cannot_be_fetched(short_dir: Path) -> None:
    start = time.monotonic()

    err = refusing(short_dir).failure(UNKNOWN)

    assert time.monotonic() - start < 5
    assert isinstance(err, HostKeyUnknown)
    assert err.message == "gpu1's host key is not in your known_hosts (its fingerprint could not be read)"
    assert "`devbox host trust gpu1`" in (err.hint or "")


def test_host_key_verification_failed_alone_counts_as_an_unknown_key(short_dir: Path) -> None:
    err = refusing(short_dir).failure("Host key verification failed.\n")
    assert isinstance(err, HostKeyUnknown)


def test_refused_key_names_the_refusal_and_how_to_log_in_without_a_password() -> None:
    err = plain(target="ssh://alice@gpu1:2222").failure(
        "Warning: Permanently added 'gpu1' (ED25519) to the list of known hosts.\r\n"
        "alice@gpu1: Permission denied (publickey).\r\n"
    )

    assert type(err) is DevboxError
    assert err.message == "gpu1 refused your ssh key (alice@gpu1: Permission denied (publickey).)"
    assert "`ssh ssh://alice@gpu1:2222`" in (err.hint or "")
    assert "IdentityFile" in (err.hint or "")


def test_connection_refused_quotes_ssh_line() -> None:
    err = plain().failure("ssh: connect to host 127.0.0.1 port 1: Connection refused\r\n")

    assert type(err) is DevboxError
    assert err.message == "cannot reach gpu1: ssh: connect to host 127.0.0.1 port 1: Connection refused"
    assert err.hint == "check that `ssh gpu1` works from here"


@pytest.mark.parametrize(
    "stderr",
    [
        "ssh: Could not resolve hostname gpu9: Name or service not known\r\n",
        "ssh: connect to host 10.0.0.5 port 22: Connection timed out\r\n",
        "kex_exchange_identification: Connection closed by remote host\r\n"
        "Connection closed by 10.0.0.5 port 22\r\n",
        "channel 0: open failed: administratively prohibited: open failed\r\n"
        "stdio forwarding failed\r\nConnection closed by UNKNOWN port 65535\r\n",
    ],
)
def test_other_failures_are_cannot_reach_with_ssh_last_line(stderr: str) -> None:
    err = plain().failure(stderr)
    assert type(err) is DevboxError
    assert err.message == f"cannot reach gpu1: {stderr.strip().splitlines()[-1].strip()}"
    assert "\n" not in str(err)


def test_empty_stderr_still_gives_a_message() -> None:
    assert plain().failure("").message == "cannot reach gpu1: ssh failed without a message"


# -- _reason -------------------------------------------------------------------------------------------


def test_reason_drops_added_key_warnings() -> None:
    stderr = (
        "Connection closed by 10.0.0.5 port 22\r\n"
        "Warning: Permanently added '[127.0.0.1]:40123' (ED25519) to the list of known hosts.\r\n"
    )
    assert tunnel._reason(stderr) == "Connection closed by 10.0.0.5 port 22"


def test_reason_drops_debug_and_mux_noise() -> None:
    stderr = (
        "real problem\n"
        "debug1: Reading configuration data /etc/ssh/ssh_config\n"
        "Control socket connect(/tmp/cm/h1): No such file or directory\n"
        "mux_client_request_session: read from master failed: Broken pipe\n"
    )
    assert tunnel._reason(stderr) == "real problem"


def test_reason_is_one_collapsed_line_of_at_most_300_chars() -> None:
    assert tunnel._reason("first\n  spaced \t  out   line  \n\n") == "spaced out line"
    assert len(tunnel._reason("x" * 1000)) == 300


@pytest.mark.parametrize("stderr", ["", "\n\n", "Warning: Permanently added 'x' (ED25519) to the list.\n"])
def test_reason_of_nothing_meaningful_says_so(stderr: str) -> None:
    assert tunnel._reason(stderr) == "ssh failed without a message"


# -- known_hosts_file / record_host_key (ssh -G only: nothing connects) --------------------------------


def test_known_hosts_file_is_the_first_one_of_the_users_config(short_dir: Path) -> None:
    config = short_dir / "ssh_config"
    config.write_text(f"Host gpu1\n    UserKnownHostsFile {short_dir}/kh1 {short_dir}/kh2\n")

    assert Tunnel("gpu1", "gpu1", short_dir / "hx", config).known_hosts_file() == short_dir / "kh1"


def test_known_hosts_file_defaults_to_the_passwd_homes(short_dir: Path) -> None:
    config = short_dir / "ssh_config"
    config.write_text("")
    got = Tunnel("gpu1", "gpu1", short_dir / "hx", config).known_hosts_file()
    assert got == Path(PASSWD_HOME) / ".ssh" / "known_hosts"


def test_known_hosts_file_with_a_space_in_its_path_is_found_whole_when_it_exists(short_dir: Path) -> None:
    # `ssh -G` prints the path unquoted, so only an existing file tells a space from a separator.
    config = short_dir / "ssh_config"
    config.write_text(f'Host gpu1\n    UserKnownHostsFile "{short_dir}/my keys/kh"\n')
    (short_dir / "my keys").mkdir()
    (short_dir / "my keys" / "kh").touch()

    assert Tunnel("gpu1", "gpu1", short_dir / "hx", config).known_hosts_file() == short_dir / "my keys" / "kh"


def test_known_hosts_file_with_a_literal_percent_is_not_expanded_twice(short_dir: Path) -> None:
    # `ssh -G` has already expanded the path ("%%d" -> "%d"): nothing may expand it again.
    config = short_dir / "ssh_config"
    config.write_text(f"Host gpu1\n    UserKnownHostsFile {short_dir}/a%%dir/kh\n")

    assert Tunnel("gpu1", "gpu1", short_dir / "hx", config).known_hosts_file() == short_dir / "a%dir" / "kh"


def test_record_host_key_appends_after_a_missing_final_newline(short_dir: Path) -> None:
    config = short_dir / "ssh_config"
    config.write_text(f"Host *\n    UserKnownHostsFile {short_dir}/kh\n")
    (short_dir / "kh").write_text("old ssh-ed25519 AAAAold")
    t = Tunnel("gpu1", "gpu1", short_dir / "hx", config)

    path = t.record_host_key(["gpu1 ssh-ed25519 AAAAnew1", "gpu1 ssh-rsa AAAAnew2"])

    assert path == short_dir / "kh"
    assert path.read_text() == "old ssh-ed25519 AAAAold\ngpu1 ssh-ed25519 AAAAnew1\ngpu1 ssh-rsa AAAAnew2\n"


def test_record_host_key_creates_a_private_known_hosts_in_a_private_dir(short_dir: Path) -> None:
    config = short_dir / "ssh_config"
    config.write_text(f"Host *\n    UserKnownHostsFile {short_dir}/new/kh\n")

    path = Tunnel("gpu1", "gpu1", short_dir / "hx", config).record_host_key(["gpu1 ssh-ed25519 AAAA"])

    assert path.read_text() == "gpu1 ssh-ed25519 AAAA\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


# -- fingerprints ----------------------------------------------------------------------------------------


def ssh_keygen_fingerprint(line: str, tmp: Path) -> str:
    path = tmp / "key.pub"
    path.write_text(line + "\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def test_fingerprint_of_a_public_key_line_matches_ssh_keygen(tmp_path: Path) -> None:
    line = generate_ed25519("alice@laptop").public_line
    assert fingerprints([line]) == [f"ED25519 {ssh_keygen_fingerprint(line, tmp_path)}"]


def test_fingerprints_of_known_hosts_lines_one_per_key(tmp_path: Path) -> None:
    a = public_key_blob(generate_ed25519("").public_line)
    b = public_key_blob(generate_ed25519("").public_line)

    shown = fingerprints([f"[127.0.0.1]:2222 {a}", f"gpu1,10.0.0.5 {b}"])

    assert shown == [
        f"ED25519 {ssh_keygen_fingerprint(a, tmp_path)}",
        f"ED25519 {ssh_keygen_fingerprint(b, tmp_path)}",
    ]
    assert all(s.startswith("ED25519 SHA256:") for s in shown)


def test_fingerprint_of_a_comment_with_spaces_and_parentheses_is_still_the_key_type() -> None:
    line = generate_ed25519("alice (work laptop)").public_line
    assert fingerprints([line])[0].startswith("ED25519 SHA256:")


def test_garbage_has_no_fingerprint() -> None:
    assert fingerprints(["not a key"]) == ["unreadable key"]


# -- _run: a hard deadline on every ssh ------------------------------------------------------------------


def test_run_returns_the_exit_status_stdout_and_stderr_apart() -> None:
    done = tunnel._run(["sh", "-c", "echo out; echo err >&2; exit 3"], 10, "gpu1")
    assert done == tunnel.Completed(3, "out\n", "err\n")


def test_run_of_a_missing_program_says_it_is_not_installed() -> None:
    with pytest.raises(DevboxError, match="devbox-no-such-ssh is not installed"):
        tunnel._run(["devbox-no-such-ssh", "gpu1"], 10, "gpu1")


def test_run_past_its_deadline_kills_the_whole_process_group(short_dir: Path) -> None:
    marker = short_dir / "child-still-ran"
    start = time.monotonic()

    with pytest.raises(DevboxError) as info:
        tunnel._run(["sh", "-c", f"(sleep 1; touch {marker}) & sleep 30"], 0.3, "gpu1")

    assert time.monotonic() - start < 5
    assert info.value.message == "gpu1 did not answer within 0.3 s"
    assert info.value.hint is None  # only an ssh argv gets the `ssh TARGET` hint
    time.sleep(1.5)
    assert not marker.exists()


def test_ssh_past_its_deadline_hints_at_the_target(short_dir: Path) -> None:
    config = short_dir / "ssh_config"
    config.write_text("Host slow\n    ProxyCommand sleep 30\n")

    with pytest.raises(DevboxError) as info:
        tunnel._run(["ssh", "-F", str(config), "-o", "BatchMode=yes", "slow"], 0.3, "gpu1")

    assert info.value.message == "gpu1 did not answer within 0.3 s"
    assert info.value.hint == "check that the server is up: `ssh slow`"


# -- scan_host_key against nothing ---------------------------------------------------------------------


def test_scan_of_an_unreachable_host_is_an_error_quoting_ssh(short_dir: Path) -> None:
    with pytest.raises(DevboxError) as info:
        refusing(short_dir).scan_host_key()
    assert info.value.message == (
        "cannot read gpu1's host key: ssh: connect to host 127.0.0.1 port 1: Connection refused"
    )


# -- real OpenSSH against an in-process paramiko server on 127.0.0.1 -------------------------------------


class _NoLogin(paramiko.ServerInterface):
    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_FAILED


class KeyServer:
    """Shows its host key to every client and lets nobody in."""

    def __init__(self) -> None:
        pair = generate_ed25519("server")
        self.key = paramiko.Ed25519Key(file_obj=io.StringIO(pair.private_openssh.decode()))
        self.public = public_key_blob(pair.public_line)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.transports: list[paramiko.Transport] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = paramiko.Transport(conn)
            t.add_server_key(self.key)
            self.transports.append(t)
            with contextlib.suppress(Exception):
                t.start_server(server=_NoLogin())

    def close(self) -> None:
        self.sock.close()
        for t in self.transports:
            t.close()


@pytest.fixture
def server() -> Iterator[KeyServer]:
    s = KeyServer()
    try:
        yield s
    finally:
        s.close()


def to_server(server: KeyServer, short_dir: Path) -> Tunnel:
    config = short_dir / "ssh_config"
    config.write_text(
        f"Host *\n    Port {server.port}\n    UserKnownHostsFile {short_dir}/kh\n"
        f"    IdentityFile {short_dir}/none\n    IdentitiesOnly yes\n"
    )
    return Tunnel("gpu1", "127.0.0.1", short_dir / "hx", config)


def test_scan_returns_the_servers_key_as_a_known_hosts_line(server: KeyServer, short_dir: Path) -> None:
    lines = to_server(server, short_dir).scan_host_key()

    assert lines == [f"[127.0.0.1]:{server.port} {server.public}"]
    assert not (short_dir / "kh").exists()  # scanning trusts nothing


def test_unknown_key_from_real_ssh_shows_the_servers_fingerprint(
    server: KeyServer, short_dir: Path, tmp_path: Path
) -> None:
    t = to_server(server, short_dir)

    done = t.run(["true"], timeout=15)
    err = t.failure(done.stderr)

    assert done.returncode == 255
    assert isinstance(err, HostKeyUnknown)
    expected = f"ED25519 {ssh_keygen_fingerprint(server.public, tmp_path)}"
    assert err.message == f"gpu1's host key is not in your known_hosts ({expected})"
    assert "`devbox host trust gpu1`" in (err.hint or "")


def test_changed_key_from_real_ssh_is_host_key_changed(server: KeyServer, short_dir: Path) -> None:
    other = public_key_blob(generate_ed25519("").public_line)
    (short_dir / "kh").write_text(f"[127.0.0.1]:{server.port} {other}\n")
    t = to_server(server, short_dir)

    done = t.run(["true"], timeout=15)

    assert isinstance(t.failure(done.stderr), HostKeyChanged)


def test_after_recording_the_scanned_key_ssh_gets_as_far_as_the_login(
    server: KeyServer, short_dir: Path
) -> None:
    t = to_server(server, short_dir)

    t.record_host_key(t.scan_host_key())
    done = t.run(["true"], timeout=15)
    err = t.failure(done.stderr)

    assert type(err) is DevboxError
    assert err.message.startswith("gpu1 refused your ssh key (")
    assert "Permission denied (publickey)" in err.message
