"""Parts of devbox's dependencies it never uses, kept from being imported at all, and the ones a
command will need soon, imported while it waits on the engine.

Every command pays for what its imports import. The docker SDK imports its ssh:// transport, and
with it paramiko, whether or not it is used; devbox never uses it (it reaches servers through its
own OpenSSH master and a forwarded socket, and refuses an ssh:// DOCKER_HOST), and a command that
does not log in to a box has no other use for paramiko. paramiko in turn imports invoke, only to
run `Match exec` lines of ssh configs, which devbox never hands it. Together they were 0.1 s of
every command's start (about a third of `devbox ls`). requests (under the docker SDK) imports a
character-set detector, 8 ms, used only to guess the encoding of a text answer that names none;
the engine answers JSON and UTF-8 text, which requests decodes without it.

These libraries import them optionally, catching ImportError, which a None entry in sys.modules
raises; nothing is changed once the real module was imported (by a program importing devbox).
"""

from __future__ import annotations

import sys
import threading
import warnings

UNUSED = (
    "docker.transport.sshconn",  # docker/transport/__init__.py and docker/api/client.py: try/except
    "invoke",  # paramiko/config.py: try/except, needed for `Match exec` only
    "charset_normalizer",  # requests/compat.py and requests/__init__.py: try/except
    "chardet",  # the same; requests then takes undeclared text as UTF-8
)


def trim() -> None:
    for name in UNUSED:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    # requests warns once, at import, that it has no detector: devbox left it out on purpose.
    warnings.filterwarnings(
        "ignore",
        message="Unable to find acceptable character detection",
        module="requests",
    )


def preload(*names: str) -> None:
    """Import `names` in the background: a command calls this just before it waits on the engine
    (creating and starting a box takes a third of a second of Docker's time, when this process
    is idle), so the modules it needs after that wait are ready. Importing one later joins this
    import, Python's import lock makes sure of that."""
    missing = [name for name in names if name not in sys.modules]
    if missing:
        threading.Thread(target=_import_all, args=(missing,), name="devbox-preload", daemon=True).start()


def _import_all(names: list[str]) -> None:
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: S112 - the command's own import reports it where it matters
            continue
