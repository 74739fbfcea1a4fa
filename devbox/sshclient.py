"""paramiko connections to a box, verified against devbox's pinned known_hosts (never trust on first use)."""

from __future__ import annotations

import base64
import logging
import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from devbox.errors import DevboxError
from devbox.keys import known_hosts
from devbox.keys.keypair import Identity, public_key_blob

if TYPE_CHECKING:
    import paramiko

# paramiko logs the tracebacks of failed handshakes (routine while sshd starts); without a handler
# Python's last-resort handler would print them on stderr. Errors reach users as DevboxError instead.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class Target:
    alias: str  # the HostKeyAlias the host key is pinned under
    port: int
    user: str
    host: str = "127.0.0.1"
    proxy: str | None = None  # a command that connects to host:port (through a server's ssh master)


def connect(target: Target, identity: Identity, timeout: float = 10.0) -> paramiko.SSHClient:
    """Log in with the user's key; a host key other than the pinned one raises BadHostKeyException."""
    import paramiko

    pinned = known_hosts.lookup(target.alias)
    if pinned is None:
        raise DevboxError(f"no pinned host key for {target.alias}", "run `devbox up` for the box again")
    keytype, blob = pinned.split()[:2]
    client = paramiko.SSHClient()
    hostname = target.host if target.port == 22 else f"[{target.host}]:{target.port}"
    client.get_host_keys().add(
        hostname, keytype, paramiko.PKey.from_type_string(keytype, base64.b64decode(blob))
    )
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    sock = _dial(target, timeout)
    try:
        client.connect(
            target.host,
            sock=sock,
            port=target.port,
            username=target.user,
            **_auth_args(identity),
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
    except BaseException:
        client.close()
        sock.close()
        raise
    return client


def _dial(target: Target, timeout: float) -> paramiko.ProxyCommand | socket.socket:
    """The connection paramiko speaks over: the server's master's channel, or a TCP socket without
    Nagle's algorithm. paramiko's own socket keeps it, and its login writes two small packets in a
    row: the second then waits for the peer's delayed ACK, 40 ms of every login (two thirds of it)."""
    import paramiko

    if target.proxy:
        return paramiko.ProxyCommand(target.proxy)
    sock = socket.create_connection((target.host, target.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _auth_args(identity: Identity) -> dict[str, object]:
    import paramiko

    if identity.encrypted:
        # The user's own passphrase-protected key: their ssh-agent holds it unlocked. Offer only
        # that key: offering every agent key would run into sshd's MaxAuthTries.
        return {"pkey": _agent_key(identity), "look_for_keys": False, "allow_agent": False}
    try:
        return {
            "pkey": paramiko.PKey.from_path(identity.private_path),
            "look_for_keys": False,
            "allow_agent": False,
        }
    except (OSError, paramiko.SSHException, TypeError, ValueError) as exc:
        raise DevboxError(f"cannot load the key {identity.private_path}: {exc}") from None


def _agent_key(identity: Identity) -> paramiko.PKey:
    import paramiko

    wanted = public_key_blob(identity.public_line)
    for key in paramiko.Agent().get_keys():
        if f"{key.get_name()} {key.get_base64()}" == wanted:
            return key
    raise DevboxError(
        f"{identity.private_path} is not loaded in your ssh-agent",
        f"add it with `ssh-add {identity.private_path}`",
    )


# wait_ready's pacing: every try is a connection refused or closed at once until sshd listens.
RETRY_FAST_S = 0.03
FAST_FOR_S = 3.0
RETRY_SLOW_S = 0.3
DEAD_CHECK_S = 0.5


def wait_ready(
    target: Target, identity: Identity, timeout: float, still_running: Callable[[], str | None]
) -> None:
    """Return once a key login succeeds; `still_running` returns why the box died, or None."""
    import paramiko

    start = time.monotonic()
    deadline = start + timeout
    last_error = "no answer"
    next_check = start + DEAD_CHECK_S  # the caller just started the box: it ran a moment ago
    while (now := time.monotonic()) < deadline:
        if now >= next_check:  # an engine call: not at every try
            dead = still_running()
            if dead:
                raise DevboxError(dead)
            next_check = now + DEAD_CHECK_S
        # Short first tries, longer later ones: before sshd listens, a connection through Docker's
        # proxy (or a server's ssh master) can stay open without a banner until the timeout.
        attempt_timeout = min(5.0, max(0.5, now - start))
        try:
            connect(target, identity, timeout=attempt_timeout).close()
            return
        except paramiko.BadHostKeyException:
            raise DevboxError(
                f"{target.alias} presented a host key that is not the one devbox pinned",
                "someone may be intercepting the connection; "
                "recreate the box with `devbox rm` and `devbox up`",
            ) from None
        except paramiko.AuthenticationException as exc:
            raise _refused(target, identity, exc) from None
        except (TimeoutError, paramiko.SSHException, OSError, EOFError) as exc:
            # Docker's proxy accepts connections before sshd listens: retry until sshd answers.
            last_error = str(exc) or type(exc).__name__
        # sshd listens a few tenths of a second after the box starts: try often then, and less
        # often once it is clearly slower (a first start that sets up a big home, a far host).
        time.sleep(RETRY_FAST_S if time.monotonic() - start < FAST_FOR_S else RETRY_SLOW_S)
    raise DevboxError(f"sshd in {target.alias} did not answer within {timeout:.0f}s ({last_error})")


def _refused(target: Target, identity: Identity, exc: Exception) -> DevboxError:
    """The box turned the key down: say whose key it was, so the user knows which file to look at."""
    path = identity.private_path
    if identity.devbox_key:
        return DevboxError(
            f"{target.alias} refused devbox's key {path}: {exc}",
            "`devbox up` for the box authorizes devbox's key in it again",
        )
    return DevboxError(
        f"{target.alias} refused your key {path} (--identity): {exc}",
        f"`devbox up` for the box with --identity {shlex.quote(str(path))} authorizes it",
    )
