"""Parts of devbox's dependencies it never uses, kept from being imported at all.

Every command pays for what its imports import. The docker SDK imports its ssh:// transport, and
with it paramiko, whether or not it is used; devbox never uses it (it reaches servers through its
own OpenSSH master and a forwarded socket, and refuses an ssh:// DOCKER_HOST), and a command that
does not log in to a box has no other use for paramiko. paramiko in turn imports invoke, only to
run `Match exec` lines of ssh configs, which devbox never hands it. Together they were 0.1 s of
every command's start (about a third of `devbox ls`).

Both libraries import these optionally, catching ImportError, which a None entry in sys.modules
raises; nothing is changed once the real module was imported (by a program importing devbox).
"""

from __future__ import annotations

import sys

UNUSED = (
    "docker.transport.sshconn",  # docker/transport/__init__.py and docker/api/client.py: try/except
    "invoke",  # paramiko/config.py: try/except, needed for `Match exec` only
)


def trim() -> None:
    for name in UNUSED:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
