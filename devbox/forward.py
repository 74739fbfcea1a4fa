"""Port forwards: a port of a box on this machine's 127.0.0.1.

The ports a box is made with (`--port`, `ports:`, forwardPorts) are LocalForward lines in its ssh
entry, so they open whenever ssh or VS Code connects. `devbox forward` adds one for as long as it
runs: through the box's ssh master (started if none runs), so it shares the connection a shell or
VS Code already has, and it is cancelled on the master when it ends.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devbox import sshconfig
from devbox.errors import DevboxError, UsageError
from devbox.spec import forward_ports, parse_port

CHECK_EVERY_S = 2.0  # how often a held forward checks that its master still runs
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Forward:
    alias: str  # the box's ssh alias
    port: int  # in the box
    local: int  # on this machine's 127.0.0.1

    @property
    def spec(self) -> str:
        return f"127.0.0.1:{self.local}:127.0.0.1:{self.port}"


def unusable(local: int) -> str | None:
    """Why ssh could not listen on 127.0.0.1:`local` ("is already in use", "is privileged…"), or
    None when it can."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As ssh binds: SO_REUSEADDR, so a port left in TIME_WAIT by a closed forward is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", local))
        except OSError as exc:
            # Below the system's first unprivileged port (1024 unless changed), only root listens.
            if exc.errno == errno.EACCES:
                return "is privileged: only root may listen on it"
            return "is already in use"
    return None


def in_use(local: int) -> bool:
    """Whether ssh could not listen on 127.0.0.1:`local` (see unusable)."""
    return unusable(local) is not None


def busy(ports: tuple[str, ...]) -> list[tuple[int, str]]:
    """The local ports among `ports` ("PORT[:LOCAL]") ssh cannot listen on now, each with why."""
    found = ((local, unusable(local)) for _, local in map(forward_ports, ports))
    return [(local, why) for local, why in found if why is not None]


def free_port_near(local: int) -> int:
    """A port to suggest instead of `local`: the same digits 10000 up when free, else any."""
    candidate = local + 10000
    if candidate <= 65535 and not in_use(candidate):
        return candidate
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def plan(alias: str, box_name: str, text: str) -> Forward:
    """`PORT[:LOCAL]` checked: a port, and the local one free. UsageError with the fix otherwise."""
    port, local = forward_ports(parse_port(text))
    why = unusable(local)
    if why is not None:
        raise UsageError(
            f"port {local} on this machine {why}",
            f"pick another local port: `devbox forward {box_name} {port}:{free_port_near(local)}`",
        )
    return Forward(alias, port, local)


def hold(
    fwd: Forward,
    user_config: Path | None,
    on_ready: Callable[[], None],
    *,
    stopped: Callable[[], bool] = lambda: False,
) -> None:
    """Open `fwd` on the box's master and keep it until `stopped()`, KeyboardInterrupt or the
    master goes away; cancelled on the master on the way out."""
    base = sshconfig.ssh_command(fwd.alias, user_config=user_config)[:-1]

    def control(*args: str, timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        argv = [*base, "-o", "BatchMode=yes", *args, fwd.alias]
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise DevboxError(f"ssh {fwd.alias} did not answer within {timeout:g} s") from None

    if control("-O", "check", timeout=5).returncode != 0:
        # The entry has ControlMaster auto and ControlPersist: this becomes the shared master.
        started = control("-f", "-N", "-o", "ControlMaster=yes")
        if started.returncode != 0:
            raise DevboxError(
                f"cannot connect to {fwd.alias}: {_last_line(started.stderr)}",
                f"check that `ssh {fwd.alias}` works",
            )
    opened = control("-O", "forward", "-L", fwd.spec)
    if opened.returncode != 0:
        raise DevboxError(
            f"cannot forward port {fwd.port} of {fwd.alias} to 127.0.0.1:{fwd.local}: "
            f"{_last_line(opened.stderr)}",
            "is the local port taken now? pick another: PORT:LOCAL",
        )
    try:
        on_ready()
        while not stopped():
            time.sleep(CHECK_EVERY_S)
            if control("-O", "check", timeout=5).returncode != 0:
                raise DevboxError(
                    f"the connection to {fwd.alias} ended; the forward is closed",
                    f"run `devbox forward` again once `ssh {fwd.alias}` works",
                )
    finally:
        with contextlib.suppress(DevboxError):
            control("-O", "cancel", "-L", fwd.spec, timeout=10)


def _last_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else "no reason given"
