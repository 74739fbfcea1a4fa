"""devbox's speed and memory targets, measured as an ordinary user would meet them.

Run through benchmarks/run.sh (it provides the engine and the DEVBOX_TEST_* environment).
"""

from __future__ import annotations

import io
import os
import resource
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from conftest import REQUIRED, make_user  # noqa: E402 - shares the e2e suite's user setup

# (what, target, unit): lower is better for all of them.
TARGETS = {
    "devbox --help": (0.5, "s"),
    "devbox ls (no boxes)": (1.5, "s"),
    "up, layer already built": (10.0, "s"),
    "up, building the layer": (60.0, "s"),
    "ssh, first connection": (1.5, "s"),
    "ssh, shared connection": (0.3, "s"),
    "peak RSS of devbox up": (150.0, "MiB"),
}


def timed(fn: Callable[[], object], repeat: int = 1) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:

    env = {k: os.environ[k] for k in REQUIRED}
    user = make_user(env)
    client = docker.DockerClient(base_url=env["DOCKER_HOST"])
    name = f"bench{uuid.uuid4().hex[:6]}"
    results: dict[str, float] = {}
    try:
        results["devbox --help"] = timed(lambda: user.ok("--help"), repeat=5)
        results["devbox ls (no boxes)"] = timed(lambda: user.ok("ls"), repeat=5)
        # A throwaway base tag gives a layer hash of its own, so this `up` really builds.
        base = f"devbox-bench/base:{name}"
        client.images.get(env["DEVBOX_TEST_IMAGE"]).tag(base)
        client.images.build(fileobj=io.BytesIO(f"FROM {base}\nLABEL bench={name}\n".encode()), tag=base)
        results["up, building the layer"] = timed(lambda: user.ok("up", name + "c", "--image", base))
        rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        results["peak RSS of devbox up"] = rss_kib / 1024
        results["up, layer already built"] = timed(lambda: user.ok("up", name, "--image", base))
        results["ssh, first connection"] = timed(lambda: user.ssh(f"devbox-{name}", "true"))
        results["ssh, shared connection"] = timed(lambda: user.ssh(f"devbox-{name}", "true"), repeat=5)
    finally:
        for box in (name, name + "c"):
            user.devbox("rm", box, "--purge")
        for img in client.images.list():
            for tag in img.tags:
                if tag.startswith(("devbox-bench/", "devbox-layer:")):
                    client.images.remove(tag, force=True)
        shutil.rmtree(user.home, ignore_errors=True)
    return report(results)


def report(results: dict[str, float]) -> int:
    missed = 0
    print(f"{'measure':32} {'value':>10} {'target':>10}")
    for what, (target, unit) in TARGETS.items():
        value = results.get(what)
        ok = value is not None and value <= target
        missed += not ok
        shown = "—" if value is None else f"{value:.2f} {unit}"
        print(f"{what:32} {shown:>10} {f'≤ {target:g} {unit}':>10}  {'ok' if ok else 'MISSED'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
