"""The Docker network boxes live on: one per engine, with inter-container traffic turned off.

Docker's default bridge lets every container reach every other one, so any box could knock on any
other box's sshd (and on whatever a colleague's job serves). Boxes instead join one devbox-owned
bridge created with `enable_icc=false`: Docker then drops traffic between containers on it, while
published ports (the server's 127.0.0.1) and outbound traffic keep working. One shared network, not
one per box or owner, because Docker's default address pools hold only about 30 bridges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devbox.engine import L, describe_error
from devbox.errors import DevboxError

if TYPE_CHECKING:
    from devbox.engine import Engine

NAME = "devbox-isolated"
ICC_OPTION = "com.docker.network.bridge.enable_icc"


def ensure(engine: Engine) -> str:
    """The isolated network's name, creating it if missing. Called under the engine lock, so two
    `up`s never create it twice (Docker allows duplicate network names)."""
    import docker

    if existing(engine):
        return NAME
    try:
        engine.client.networks.create(
            NAME,
            driver="bridge",
            options={ICC_OPTION: "false"},
            labels={L("network"): "isolated"},
            check_duplicate=True,
        )
    except docker.errors.APIError as exc:
        raise DevboxError(
            f"cannot create the Docker network {NAME}: {describe_error(exc)}",
            "free an address pool (`docker network prune`) or ask the server's admin",
        ) from None
    return NAME


def existing(engine: Engine) -> bool:
    """Whether the isolated network is there; DevboxError if one of its name lets containers talk."""
    import docker

    try:
        found = engine.client.api.networks(names=[NAME])
    except docker.errors.APIError as exc:
        raise DevboxError(f"cannot list Docker networks: {describe_error(exc)}") from None
    ours = [n for n in found if n.get("Name") == NAME]
    if ours and not isolated(ours[0]):
        raise DevboxError(
            f"the Docker network {NAME} exists but lets containers reach each other",
            f"remove it (`docker network rm {NAME}`, once no container uses it) and devbox recreates it",
        )
    return bool(ours)


def isolated(attrs: dict[str, object]) -> bool:
    """Whether a network's inspect data says containers on it cannot reach each other."""
    options = attrs.get("Options") or {}
    return isinstance(options, dict) and options.get(ICC_OPTION) == "false"
