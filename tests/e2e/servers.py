"""Servers for remote-host e2e tests, all on 127.0.0.1: a private sshd run by an ordinary account
(a stand-in for a remote GPU host whose logins reach a test engine and a fake nvidia-smi), a TCP
server that accepts and never answers (every remote step needs a deadline, and a test proves it),
a proxy in front of a server that can freeze mid-run,
and the OpenSSH client files of a laptop user."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

SSHD = os.environ.get("DEVBOX_TEST_SSHD", "/usr/sbin/sshd")
LOCALHOST = "127.0.0.1"
START_TIMEOUT = 10.0
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that the kernel just handed out and nobody listens on (another
    process could take it before the caller binds it, which is rare enough for tests)."""
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((LOCALHOST, port)) == 0


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name in parentheses may hold spaces; the ppid is the second field after it.
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(stat.parent.name))
    return children


def _kill_below(root: int) -> None:
    """SIGKILL every process below `root`, deepest first, each generation once the one below is
    reaped. sshd leaves running sessions alone when its listener dies (by design, for restarts),
    so they must be found; and a parent killed before it reaps its child leaves a zombie to init,
    which on some test machines never reaps."""
    children = _children()
    generations = [[root]]
    while below := [kid for pid in generations[-1] for kid in children.get(pid, [])]:
        generations.append(below)
    for generation in reversed(generations[1:]):
        for pid in generation:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 2
        while any(Path(f"/proc/{pid}").exists() for pid in generation) and time.monotonic() < deadline:
            time.sleep(0.02)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for path in root.rglob("*"):
        os.chown(path, uid, gid)


class Sshd:
    """A private OpenSSH server run as the ordinary `account`, listening on 127.0.0.1:`port`.

    A non-root sshd can only log in its own account, so logins land there, with exactly `env` as
    their environment on top of sshd's defaults (sshd_config `SetEnv` overrides sshd's default
    PATH; only commands see it: an interactive login shell reads /etc/profile, which resets PATH).
    Its config, host key, authorized_keys, pid file and DEBUG1 log live in a private temp dir owned
    by `account`, never in the account's real home. Use as a context manager, or start()/stop().
    """

    def __init__(self, account: str, env: Mapping[str, str] | None = None, port: int | None = None) -> None:
        self.account = account
        self.env = dict(env or {})
        for name, value in self.env.items():
            # One quoted NAME=VALUE word each in sshd_config: no quotes or line breaks inside.
            if not _ENV_NAME.fullmatch(name) or any(c in value for c in '"\n\r'):
                raise ValueError(f"cannot pass {name}={value!r} through sshd_config SetEnv")
        self.port = port or free_port()
        pw = pwd.getpwnam(account)
        self._uid, self._gid = pw.pw_uid, pw.pw_gid
        self.dir = Path(tempfile.mkdtemp(prefix="devbox-e2e-sshd-", dir="/tmp"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def host_key_path(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def _host_key_pub_path(self) -> Path:
        return Path(f"{self.host_key_path}.pub")

    @property
    def authorized_keys_path(self) -> Path:
        return self.dir / "authorized_keys"

    @property
    def log_path(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def host_key_public_line(self) -> str:
        """The host key's .pub contents: `ssh-ed25519 AAAA... comment`."""
        return self._host_key_pub_path.read_text().strip()

    def known_hosts_line(self, host_pattern: str | None = None) -> str:
        """A known_hosts line pinning this server's key, by default for `[127.0.0.1]:PORT`."""
        keytype, blob = self.host_key_public_line.split()[:2]
        return f"{host_pattern or f'[{LOCALHOST}]:{self.port}'} {keytype} {blob}"

    def authorize(self, public_line: str) -> None:
        """Let the key `public_line` (an authorized_keys line) log in; takes effect at once."""
        with self.authorized_keys_path.open("a") as f:
            f.write(public_line.strip() + "\n")
        os.chown(self.authorized_keys_path, self._uid, self._gid)

    def log_text(self) -> str:
        """Everything sshd logged so far (DEBUG1: connections, forwardings, sessions)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> Sshd:
        """Start sshd and return once the port accepts connections; raise with the log tail if it
        does not within START_TIMEOUT seconds (and leave nothing behind)."""
        if not self.host_key_path.exists():
            subprocess.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "devbox-e2e-sshd",
                    "-f",
                    str(self.host_key_path),
                ],
                check=True,
                capture_output=True,
            )
        self.config_path.write_text(self._config())
        self.authorized_keys_path.touch()
        self.log_path.touch()
        log_start = self.log_path.stat().st_size  # a restart appends to the same log
        _chown_tree(self.dir, self._uid, self._gid)
        self.dir.chmod(0o700)
        with self.log_path.open("ab") as log:
            # sshd's own startup errors (before -E takes over) land in the same log.
            self._proc = subprocess.Popen(
                ["runuser", "-u", self.account, "--", "env", "-i", "PATH=/usr/bin:/bin"]
                + [SSHD, "-D", "-f", str(self.config_path), "-E", str(self.log_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        # The log line proves that this sshd bound the port, not some other process that took it.
        listening = f"Server listening on {LOCALHOST} port {self.port}.".encode()
        while listening not in self.log_path.read_bytes()[log_start:] or not _accepts(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.log_text().splitlines()[-20:])
                self.stop()
                raise RuntimeError(f"sshd as {self.account} did not listen on port {self.port}:\n{tail}")
            time.sleep(0.05)
        return self

    def regenerate_host_key(self) -> str:
        """Restart on the same port with a new host key (a reinstalled or impostor server);
        returns the new public line."""
        self._kill()
        self.host_key_path.unlink()
        self._host_key_pub_path.unlink()
        self.start()
        return self.host_key_public_line

    def stop(self) -> None:
        """Kill sshd and every session it started, and remove its directory."""
        self._kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _kill(self) -> None:
        if self._proc is None:
            return
        # runuser exits once sshd, its child, is gone.
        _kill_below(self._proc.pid)
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def _config(self) -> str:
        lines = [
            f"ListenAddress {LOCALHOST}",
            f"Port {self.port}",
            f"HostKey {self.host_key_path}",
            f"AuthorizedKeysFile {self.authorized_keys_path}",
            f"PidFile {self.dir / 'sshd.pid'}",
            "UsePAM no",
            # The files are the account's, in a /tmp dir: nothing for StrictModes to protect.
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "AllowStreamLocalForwarding yes",
            "AllowTcpForwarding yes",
            # DEBUG1 logs each direct-tcpip channel, so a test can tell a jump went through here.
            "LogLevel DEBUG1",
        ]
        if self.env:
            # One line: sshd uses only the first SetEnv directive.
            lines.append("SetEnv " + " ".join(f'"{k}={v}"' for k, v in self.env.items()))
        return "\n".join(lines) + "\n"

    def __enter__(self) -> Sshd:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class FreezingProxy:
    """A TCP proxy on 127.0.0.1 in front of `target_port` that can freeze: from then on it keeps
    every connection open and passes no byte either way, and new connections are accepted and
    left silent. A live server that stops answering, as a hung host or a dead link looks to ssh
    (a refused connection would be the easy case)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server((LOCALHOST, 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._frozen = threading.Event()
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        self.accepted = 0  # client connections, so a test can tell the client really got through
        self._threads = [threading.Thread(target=self._serve, name=f"proxy-{self.port}", daemon=True)]

    def freeze(self) -> None:
        self._frozen.set()

    def start(self) -> Self:
        self._threads[0].start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._listener.close()
        for sock in self._sockets:
            sock.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._sockets.append(conn)
            self.accepted += 1
            if self._frozen.is_set():
                continue
            upstream = socket.create_connection((LOCALHOST, self.target_port), timeout=5)
            self._sockets.append(upstream)
            for a, b in ((conn, upstream), (upstream, conn)):
                thread = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.1)
        while not self._stopping.is_set():
            if self._frozen.is_set():
                time.sleep(0.1)  # hold the connection, pass nothing: bytes stay in the kernel
                continue
            try:
                chunk = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            with contextlib.suppress(OSError):
                dst.sendall(chunk)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class SilentServer(FreezingProxy):
    """A TCP listener on 127.0.0.1 that accepts connections and never sends a byte: a host that
    is up but hung (a proxy frozen from the start). The connections stay open until stop(), so
    only the client's own deadline can end its wait."""

    def __init__(self) -> None:
        super().__init__(target_port=0)
        self.freeze()

    @property
    def connections(self) -> int:
        return self.accepted


def _owned_dir(path: Path, owner: tuple[int, int] | None) -> None:
    """Create `path` (0700) if missing and give it to `owner`: ssh refuses files under a
    directory that others own or can write."""
    if not path.exists():
        path.mkdir(mode=0o700, parents=True)
        if owner:
            os.chown(path, *owner)


def write_client_config(
    path: Path,
    hosts: Mapping[str, Mapping[str, str | int | Path]],
    includes: Sequence[Path] = (),
    owner: tuple[int, int] | None = None,
) -> Path:
    """Write an OpenSSH client config: `Include` lines first (so they apply to every host), then
    one `Host` block per pattern with its options, in order. Paths must be absolute: ssh expands
    `~` from the passwd home, not the test's temporary $HOME. The file is 0600 and, given
    `owner` (uid, gid), theirs, since ssh refuses a config that others own or can write."""
    for include in includes:
        if not Path(include).is_absolute():
            raise ValueError(f"Include {include} must be absolute")
    lines = [f"Include {include}" for include in includes]
    for pattern, options in hosts.items():
        lines.append(f"Host {pattern}")
        for key, value in options.items():
            if str(value).startswith("~"):
                raise ValueError(f"{key} {value}: ssh would expand ~ from the passwd home")
            lines.append(f"    {key} {value}")
    _owned_dir(path.parent, owner)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    if owner:
        os.chown(path, *owner)
    return path


def make_client_key(user_home: Path, owner_uid: int, gid: int, name: str = "id_ed25519") -> tuple[Path, str]:
    """A fresh passphrase-less ed25519 key pair in `user_home`/.ssh, owned by the user (private
    key 0600, or ssh ignores it); returns the private key's path and the public line."""
    ssh_dir = user_home / ".ssh"
    _owned_dir(ssh_dir, (owner_uid, gid))
    private = ssh_dir / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"devbox-e2e-{name}", "-f", str(private)],
        check=True,
        capture_output=True,
    )
    public = Path(f"{private}.pub")
    for path, mode in ((private, 0o600), (public, 0o644)):
        os.chown(path, owner_uid, gid)
        path.chmod(mode)
    return private, public.read_text().strip()
