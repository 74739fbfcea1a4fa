"""One OpenSSH master connection per remote host: devbox's only way to reach a server.

Everything goes through the user's own `ssh` and ssh config (ProxyJump chains, Include,
IdentityFile, agents, UserKnownHostsFile, ports), so a server reachable with `ssh gpu1` is reachable
by devbox. One ControlMaster per host stays up for a few minutes: the server's Docker socket is
forwarded to a private unix socket here (the docker SDK talks to it at local-socket speed), and
nvidia-smi, `id` and `test -e` run over the same connection. Every step has a deadline, and host
keys are always checked strictly against the user's known_hosts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import pwd
import re
import shlex
import signal
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from devbox import files, paths, sshconfig
from devbox.errors import DevboxError, UsageError

CONNECT_TIMEOUT_S = 8.0  # DEVBOX_CONNECT_TIMEOUT overrides it
STEP_TIMEOUT_S = 30.0  # one command over an open master
PERSIST_S = 300  # the master outlives a devbox run, so the next command starts in milliseconds
_PROBE = 'printf "%s\\n" devbox-probe "${DOCKER_HOST:-}" "$(id -u)" "$(id -g)" "$(id -un)" "$HOME"'


class HostKeyUnknown(DevboxError):
    """The server's host key is not in the user's known_hosts: `devbox host trust` records it."""


class HostKeyChanged(DevboxError):
    """The server's host key differs from the recorded one: always fatal."""


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class RemoteLogin:
    """The server account devbox logs in as: box users mirror it, so mounts keep ownership."""

    name: str
    uid: int
    gid: int
    home: str
    docker_host: str  # the login's DOCKER_HOST, "" when unset


@dataclass(frozen=True)
class Tunnel:
    label: str  # the devbox host name, for messages
    target: str  # what `ssh` takes: an alias or ssh://user@host:port
    control: Path  # ControlPath of the master
    config: Path | None  # the user's ssh config, when ssh would not find it by itself

    @classmethod
    def for_host(cls, label: str, target: str, ssh_config: Path | None = None) -> Tunnel:
        key = hashlib.sha256(f"{label}\0{target}".encode()).hexdigest()[:12]
        return cls(label, target, sshconfig.control_dir() / f"h{key}", sshconfig.ssh_config_arg(ssh_config))

    @property
    def docker_socket(self) -> Path:
        """Where the server's Docker socket appears here (0600, in devbox's private dir)."""
        return self.control.with_name(self.control.name + ".docker")

    # ------------------------------------------------------------ the master

    def open(self, *, fresh: bool = False) -> RemoteLogin:
        """Make sure the master is up (starting it if needed) and return who we are there: asked
        once per master (a round trip over the link), then remembered for the master's life,
        unless `fresh`."""
        try:
            paths.ensure_private_dir(self.control.parent)
        except OSError as exc:
            raise DevboxError(f"cannot create {self.control.parent}: {exc.strerror or exc}") from None
        # Two devbox runs must not both start a master: the second would steal the socket paths.
        with files.locked(self.control):
            master = self._master()
            if master is None:
                self._start()
                master = self._master()
        known = None if fresh or master is None else self._remembered(master)
        if known is not None:
            return known
        login = self._probe()
        if master is not None:
            self._remember(master, login)
        return login

    def _master(self) -> str | None:
        """Which master answers on the control socket, or None when none does: its PID and the
        socket file's inode and change time (every master makes its socket anew)."""
        try:
            st = self.control.stat()
        except OSError:
            return None
        done = _run(self._argv("-O", "check", self.target), 5.0, self.label)
        if done.returncode != 0:
            return None
        pid = re.search(r"pid=(\d+)", done.stderr)
        return f"{pid.group(1) if pid else '-'}:{st.st_ino}:{st.st_ctime_ns}"

    @property
    def _login_file(self) -> Path:
        return self.control.with_name(self.control.name + ".login")

    def _remembered(self, master: str) -> RemoteLogin | None:
        """The login the probe found through this same master, if it was recorded."""
        try:
            data = json.loads(self._login_file.read_text())
            if data.get("master") != master:
                return None
            login = data["login"]
            return RemoteLogin(
                str(login["name"]),
                int(login["uid"]),
                int(login["gid"]),
                str(login["home"]),
                str(login["docker_host"]),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # none yet, or damaged: ask the server again

    def _remember(self, master: str, login: RemoteLogin) -> None:
        with contextlib.suppress(OSError):  # only a round trip is lost without it
            files.atomic_write(self._login_file, json.dumps({"master": master, "login": asdict(login)}))

    def _start(self) -> None:
        # A socket file left by a master that died would make ssh quietly run without multiplexing.
        with contextlib.suppress(FileNotFoundError):
            self.control.unlink()
        argv = self._argv(
            "-f",
            "-N",
            self.target,
            ControlMaster="yes",
            ControlPersist=str(PERSIST_S),
            ExitOnForwardFailure="yes",
            StreamLocalBindUnlink="yes",
        )
        done = _run(argv, connect_timeout() + 7, self.label)
        if done.returncode != 0:
            raise self.failure(done.stderr)

    def _probe(self) -> RemoteLogin:
        done = self.run(["sh", "-c", _PROBE])
        lines = done.stdout.splitlines()
        # Login scripts may print banners first; our answer follows the marker.
        if done.returncode != 0 or "devbox-probe" not in lines:
            raise self.failure(done.stderr or done.stdout)
        fields = lines[lines.index("devbox-probe") + 1 :]
        try:
            docker_host, uid, gid, name, home = fields[:5]
            return RemoteLogin(name, int(uid), int(gid), home, docker_host)
        except ValueError:
            raise DevboxError(
                f"{self.label}: unexpected answer to `id`: {' | '.join(fields)[:200]}"
            ) from None

    def forward(self, remote_socket: str) -> Path:
        """Forward the server's `remote_socket` to a local one; asking again for the same is a no-op."""
        local = self.docker_socket
        spec = f"{local}:{remote_socket}"
        done = _run(self._argv("-O", "forward", "-L", spec, self.target), STEP_TIMEOUT_S, self.label)
        if done.returncode == 0 and not local.exists():
            # The master thinks it forwards, but the socket file was deleted: forward anew.
            _run(self._argv("-O", "cancel", "-L", spec, self.target), STEP_TIMEOUT_S, self.label)
            done = _run(self._argv("-O", "forward", "-L", spec, self.target), STEP_TIMEOUT_S, self.label)
        if done.returncode != 0:
            raise DevboxError(f"cannot forward {self.label}'s Docker socket: {_reason(done.stderr)}")
        return local

    def close(self) -> None:
        """Stop the master (and with it the forwarded socket), if one runs."""
        if self.control.exists():
            _run(self._argv("-O", "exit", self.target), 5.0, self.label)
        for leftover in (self.docker_socket, self._login_file):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()

    # ------------------------------------------------------------ commands over it

    def run(self, args: list[str], timeout: float = STEP_TIMEOUT_S) -> Completed:
        """Run `args` (one argv, quoted for the remote shell) on the server."""
        return _run(self._argv(self.target, shlex.join(args), ControlMaster="no"), timeout, self.label)

    def proxy_command(self, host: str, port: int) -> str:
        """A command whose stdin/stdout is a TCP connection to host:port as seen from the server."""
        return shlex.join(self._argv("-W", f"{host}:{port}", self.target, ControlMaster="no"))

    # ------------------------------------------------------------ host keys

    def scan_host_key(self) -> list[str]:
        """The server's host key as OpenSSH would record it (known_hosts lines), fetched without
        trusting it anywhere and without logging in: every authentication method is off."""
        with tempfile.TemporaryDirectory(prefix="devbox-scan-") as tmp:
            scratch = Path(tmp) / "known_hosts"
            argv = self._argv(
                self.target,
                "true",
                StrictHostKeyChecking="accept-new",
                UserKnownHostsFile=sshconfig.option_value(scratch),
                GlobalKnownHostsFile="/dev/null",
                UpdateHostKeys="no",
                ControlMaster="no",
                ControlPath="none",
                PubkeyAuthentication="no",
                PasswordAuthentication="no",
                KbdInteractiveAuthentication="no",
                GSSAPIAuthentication="no",
                HostbasedAuthentication="no",
            )
            done = _run(argv, connect_timeout() + 7, self.label)
            lines = scratch.read_text().splitlines() if scratch.exists() else []
        found = [ln for ln in lines if ln.strip() and not ln.startswith("#")]
        if not found:
            raise DevboxError(f"cannot read {self.label}'s host key: {_reason(done.stderr)}")
        return found

    def known_hosts_file(self) -> Path:
        """The first UserKnownHostsFile ssh uses for this host, as `ssh -G` resolves it."""
        done = _run([*self._argv("-G", self.target)], 10.0, self.label)
        for line in done.stdout.splitlines():
            key, _, value = line.partition(" ")
            if key == "userknownhostsfile" and value.strip():
                return _first_path(value.strip())
        return Path(pwd.getpwuid(os.getuid()).pw_dir) / ".ssh" / "known_hosts"

    def record_host_key(self, lines: list[str]) -> Path:
        """Append known_hosts lines (as scan_host_key returned them) to the user's known_hosts."""
        path = self.known_hosts_file()
        try:
            if not path.parent.exists():
                paths.ensure_private_dir(path.parent)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "r+b") as f:
                size = os.fstat(fd).st_size
                f.seek(max(0, size - 1))
                # O_APPEND: every write lands at the end, after whatever is there now.
                lead = b"\n" if size and f.read(1) != b"\n" else b""
                f.write(lead + ("\n".join(lines) + "\n").encode())
        except OSError as exc:
            raise DevboxError(f"cannot write {path}: {exc.strerror or exc}") from None
        return path

    def failure(self, stderr: str) -> DevboxError:
        """ssh's complaint as one line and a hint; host key problems get their own types."""
        name = self.label
        if (
            "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr
            or "has changed and you have requested" in stderr
        ):
            return HostKeyChanged(
                f"the host key of {name} CHANGED since it was recorded in your known_hosts: not connecting",
                "someone may be intercepting the connection; if the server was reinstalled, confirm its new "
                f"key with its admin, remove the old line (ssh-keygen -R), then `devbox host trust {name}`",
            )
        if "host key is known for" in stderr or "Host key verification failed" in stderr:
            try:
                shown = ", ".join(fingerprints(self.scan_host_key()))
            except DevboxError:
                shown = "its fingerprint could not be read"
            return HostKeyUnknown(
                f"{name}'s host key is not in your known_hosts ({shown})",
                f"check it with the server's admin, then `devbox host trust {name}`",
            )
        if "Permission denied" in stderr:
            return DevboxError(
                f"{name} refused your ssh key ({_reason(stderr)})",
                f"`ssh {self.target}` must log in without a password: set IdentityFile or ssh-add your key",
            )
        return DevboxError(
            f"cannot reach {name}: {_reason(stderr)}", f"check that `ssh {self.target}` works from here"
        )

    def _argv(self, *args: str, **overrides: str) -> list[str]:
        options = {
            "BatchMode": "yes",  # never a prompt that would hang a command or the TUI
            "ConnectTimeout": f"{connect_timeout():g}",
            "StrictHostKeyChecking": "yes",
            "ControlPath": sshconfig.option_value(self.control),
            "ServerAliveInterval": "5",
            "ServerAliveCountMax": "3",
            **overrides,
        }
        argv = ["ssh"] + (["-F", str(self.config)] if self.config else [])
        for key, value in options.items():
            argv += ["-o", f"{key}={value}"]
        return argv + list(args)


def fingerprints(known_hosts_lines: list[str]) -> list[str]:
    """`ED25519 SHA256:…` for each key line, as ssh-keygen prints them."""
    with tempfile.NamedTemporaryFile("w", prefix="devbox-keys-", suffix=".txt") as f:
        f.write("\n".join(known_hosts_lines) + "\n")
        f.flush()
        done = _run(["ssh-keygen", "-l", "-f", f.name], 10.0, "ssh-keygen")
    shown = []
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            shown.append(f"{parts[-1].strip('()')} {parts[1]}")
    return shown or ["unreadable key"]


def _run(argv: list[str], timeout: float, label: str) -> Completed:
    """Run ssh with a hard deadline. stderr goes to a file: a master that forks into the background
    (and the ProxyJump child it keeps) would hold a pipe open for minutes."""
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, start_new_session=True
            )
        except FileNotFoundError:
            raise DevboxError(f"{argv[0]} is not installed", "install the OpenSSH client") from None
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise DevboxError(
                f"{label} did not answer within {timeout:g} s",
                f"check that the server is up: `ssh {argv[-1]}`" if argv[0] == "ssh" else None,
            ) from None
        err.seek(0)
        return Completed(proc.returncode, out.decode(errors="replace"), err.read().decode(errors="replace"))


def _reason(stderr: str) -> str:
    """ssh's last meaningful line (its warnings about added keys and closing masters are noise)."""
    noise = ("Warning: Permanently added", "debug", "Control socket connect", "mux_client_")
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.strip().startswith(noise)]
    return " ".join(lines[-1].split())[:300] if lines else "ssh failed without a message"


def _first_path(value: str) -> Path:
    """The first of `ssh -G`'s space-separated, already expanded paths. A path with a space in it
    is printed unquoted, so the longest run of words naming an existing file wins."""
    words = value.split(" ")
    for n in range(len(words), 1, -1):
        candidate = " ".join(words[:n])
        if os.path.isfile(candidate):
            return Path(candidate)
    return Path(words[0])


def connect_timeout() -> float:
    """Seconds ssh may take to connect: DEVBOX_CONNECT_TIMEOUT, else CONNECT_TIMEOUT_S."""
    raw = os.environ.get("DEVBOX_CONNECT_TIMEOUT")
    if not raw:
        return CONNECT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 1 <= value <= 600:
        raise UsageError(f"invalid DEVBOX_CONNECT_TIMEOUT={raw!r}", "use a number of seconds from 1 to 600")
    return value
