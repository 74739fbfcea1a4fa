"""The peer of `devbox ls`: a bare script that imports the Docker SDK and lists one owner's boxes (the
containers devbox's labels mark as theirs, stopped ones too), one line each, the SDK's plain way.

    python benchmarks/bare_ls.py OWNER      # DOCKER_HOST names the engine
"""

from __future__ import annotations

import sys

import docker


def main(owner: str) -> int:
    client = docker.from_env()
    filters = {"label": ["devbox.name", f"devbox.owner={owner}"]}
    for c in client.containers.list(all=True, filters=filters):
        print(c.labels["devbox.name"], c.status, c.labels.get("devbox.port", ""), sep="\t")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
