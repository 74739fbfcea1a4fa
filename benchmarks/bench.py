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
from conftest import REQUIRED, User, make_user  # noqa: E402 - shares the e2e suite's user setup
from servers import LOCALHOST, Sshd, make_client_key, write_client_config  # noqa: E402

# (what, target, unit): lower is better for all of them.
TARGETS = {
    "devbox --help": (0.5, "s"),
    "devbox ls (no boxes)": (1.5, "s"),
    "up, layer already built": (10.0, "s"),
    "up, building the layer": (60.0, "s"),
    "ssh, first connection": (1.5, "s"),
    "ssh, shared connection": (0.3, "s"),
    "peak RSS of devbox up": (150.0, "MiB"),
    # The bar: with 100 boxes on the engine, a refresh never holds up a key press longer.
    "tui: worst input delay, 100 boxes": (0.1, "s"),
}


# (what, floor it is measured against, most allowed ratio): both sides measured in the same run.
RATIOS = {
    "remote: up + first ssh + rm": ("remote: the same by hand over ssh", 4.0),
    # A listing through the warm master against one plain ssh that runs `docker ps`.
    "remote: ls, master up": ("remote: docker ps by hand over ssh", 3.0),
    # The tail of a big log is read from its end: as fast as the tail of a small one.
    "jobs: logs -n 5 of a 104 MB log": ("jobs: logs -n 5 of a 1 KB log", 1.5),
    # A job's whole round trip (start in tmux, record, follow the log, read the end) against one
    # plain `docker exec` of the same command from the docker CLI.
    "jobs: run --wait of true": ("jobs: docker exec of true", 6.0),
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
        results.update(jobs(user, client, name))
        results.update(tui(user, client, name, env["DEVBOX_TEST_IMAGE"]))
        results.update(remote(env, base))
    finally:
        for box in (name, name + "c"):
            user.devbox("rm", box, "--purge")
        for img in client.images.list():
            for tag in img.tags:
                if tag.startswith(("devbox-bench/", "devbox-layer:")):
                    client.images.remove(tag, force=True)
        shutil.rmtree(user.home, ignore_errors=True)
    return report(results)


def jobs(user: User, client: docker.DockerClient, box: str) -> dict[str, float]:
    log = '"$HOME/.devbox/jobs/$DEVBOX_JOB/log"'
    user.ok(
        "run", box, "--name", "big", "--wait", "--", f'yes "a log line of filler" | head -n 4500000 >>{log}'
    )
    user.ok("run", box, "--name", "small", "--wait", "--", "seq 1 100")
    container = client.containers.list(filters={"label": f"devbox.name={box}"})[0]
    return {
        "jobs: logs -n 5 of a 104 MB log": timed(lambda: user.ok("logs", box, "big", "-n", "5"), repeat=5),
        "jobs: logs -n 5 of a 1 KB log": timed(lambda: user.ok("logs", box, "small", "-n", "5"), repeat=5),
        "jobs: run --wait of true": timed(lambda: user.ok("run", box, "--wait", "--", "true"), repeat=3),
        "jobs: docker exec of true": timed(
            lambda: user.run("docker", "exec", "-u", user.name, container.id, "true"), repeat=3
        ),
    }


def remote(env: dict[str, str], image: str) -> dict[str, float]:
    """`up` + first ssh + `rm` of a box on a server reached over ssh (an unprivileged sshd on
    127.0.0.1 in front of the test engine), against a person doing the same by hand: one ssh per
    step, running docker on the server."""
    server_env = {"DOCKER_HOST": env["DOCKER_HOST"], "PATH": f"{env['DEVBOX_TEST_GPU_PATH']}:/usr/bin:/bin"}
    laptop = make_user(env)
    del laptop.env["DOCKER_HOST"]
    try:
        with Sshd(env["DEVBOX_TEST_USER2"], server_env) as server:
            key, public = make_client_key(laptop.home, laptop.uid, laptop.gid)
            server.authorize(public)
            known = laptop.home / ".ssh" / "known_hosts"
            known.write_text(server.known_hosts_line() + "\n")
            os.chown(known, laptop.uid, laptop.gid)
            block = {"HostName": LOCALHOST, "Port": server.port, "User": server.account}
            common = {"IdentityFile": key, "IdentitiesOnly": "yes", "UserKnownHostsFile": known}
            write_client_config(
                laptop.ssh_config, {"gpu1": block, "*": common}, owner=(laptop.uid, laptop.gid)
            )
            laptop.ok("host", "add", "gpu1", "gpu1")
            return {
                "remote: ls, master up": timed(lambda: laptop.ok("ls", "--host", "gpu1"), repeat=5),
                "remote: docker ps by hand over ssh": timed(
                    lambda: laptop.ssh("gpu1", "docker ps -q"), repeat=5
                ),
                "remote: up + first ssh + rm": timed(lambda: _remote_devbox(laptop, image), repeat=3),
                "remote: the same by hand over ssh": timed(lambda: _remote_by_hand(laptop, image), repeat=3),
            }
    finally:
        shutil.rmtree(laptop.home, ignore_errors=True)


def _remote_devbox(laptop: User, image: str) -> None:
    name = f"rb{uuid.uuid4().hex[:6]}"
    laptop.ok("up", name, "--host", "gpu1", "--image", image)
    assert laptop.ssh(f"devbox-{name}", "true").returncode == 0
    laptop.ok("rm", name, "--purge")


def _remote_by_hand(laptop: User, image: str) -> None:
    name = f"rh{uuid.uuid4().hex[:6]}"

    def over_ssh(command: str) -> None:
        proc = laptop.ssh("gpu1", command)
        assert proc.returncode == 0, proc.stderr

    over_ssh(f"docker run -d --name {name} {image} sleep 600")
    over_ssh(f"docker exec {name} true")
    over_ssh(f"docker rm -f {name}")


def tui(user: User, client: docker.DockerClient, box: str, image: str) -> dict[str, float]:
    """`devbox tui` watching 100 boxes (the user's own and 99 colleagues' look-alikes: containers
    with box labels that only sleep), refreshing every second: the event loop's worst stall."""
    import json

    real = client.containers.list(filters={"label": f"devbox.name={box}"})[0]
    clones = []
    try:
        for i in range(99):
            labels = {**real.labels, "devbox.name": f"peer{i}", "devbox.owner": f"colleague{i % 7}"}
            labels["devbox.port"] = str(30000 + i)
            clones.append(
                client.containers.run(image, ["sleep", "infinity"], entrypoint=[], labels=labels, detach=True)
            )
        driver = str(Path(__file__).resolve().parent.parent / "tests" / "e2e" / "tui_pilot.py")
        python = str(Path(user.env["DEVBOX_VENV"]) / "bin" / "python")
        done = user.run(python, driver, "lag", "20", timeout=300)
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"tui: {seen['boxes']} rows, {seen['refreshes']} refreshes in 20 s; "
            f"worst delay {seen['busy_s'] * 1000:.0f} ms refreshing, "
            f"{seen['idle_s'] * 1000:.0f} ms idle (floor)"
        )
        return {"tui: worst input delay, 100 boxes": seen["busy_s"]}
    finally:
        for c in clones:
            c.remove(force=True)


def report(results: dict[str, float]) -> int:
    missed = 0
    print(f"{'measure':32} {'value':>10} {'target':>10}")
    for what, (target, unit) in TARGETS.items():
        value = results.get(what)
        ok = value is not None and value <= target
        missed += not ok
        shown = "—" if value is None else f"{value:.2f} {unit}"
        print(f"{what:32} {shown:>10} {f'≤ {target:g} {unit}':>10}  {'ok' if ok else 'MISSED'}")
    for what, (floor, most) in RATIOS.items():
        value, base = results.get(what), results.get(floor)
        ratio = value / base if value is not None and base else None
        ok = ratio is not None and ratio <= most
        missed += not ok
        shown = "—" if ratio is None else f"{ratio:.2f}×"
        raw = f"{value:.2f} s vs {base:.2f} s" if ratio is not None else "not measured"
        print(f"{what:32} {shown:>10} {f'≤ {most:g}×':>10}  {'ok' if ok else 'MISSED'}  ({raw}: {floor})")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
