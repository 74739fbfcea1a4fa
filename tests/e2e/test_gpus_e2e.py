"""GPU selection and collision checks against the real engine (fake NVIDIA hook + fake nvidia-smi)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest

from devbox import allocation
from devbox.engine import Engine
from devbox.errors import GpuBusyError

from .conftest import User, box_container


@pytest.fixture
def cleanup(user: User):
    names: list[str] = []
    yield names
    for n in names:
        user.devbox("rm", n, "--purge")


def _ssh_env(user: User, name: str) -> str:
    proc = user.ssh(f"devbox-{name}", "echo $NVIDIA_VISIBLE_DEVICES")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_all_gpus_box_sees_all(user: User, client, cleanup, name: str) -> None:
    cleanup.append(name)
    user.ok("up", name, "--gpus", "all")
    assert _ssh_env(user, name) == "all"
    (req,) = box_container(client, name).attrs["HostConfig"]["DeviceRequests"]
    assert req["Count"] == -1
    listed = json.loads(user.ok("ls", "--json").stdout)
    assert next(b for b in listed if b["name"] == name)["gpus"] == ["0", "1", "2", "3"]


def test_second_box_on_same_gpu_is_refused_naming_holder_then_count_takes_the_free_ones(
    user: User, client, cleanup, name: str
) -> None:
    first, second, third = name, name + "-b", name + "-c"
    cleanup += [first, second, third]
    user.ok("up", first, "--gpus", "0,1")
    assert _ssh_env(user, first) == "0,1"

    refused = user.devbox("up", second, "--gpus", "1")
    assert refused.returncode == 1
    assert f"GPU 1 is in use by {user.name}/{first}" in refused.stderr
    assert "--share-gpus" in refused.stderr
    assert not client.containers.list(all=True, filters={"label": f"devbox.name={second}"})

    user.ok("up", third, "--gpu-count", "2")
    assert _ssh_env(user, third) == "2,3"

    gpus = json.loads(user.ok("gpus", "--json").stdout)["gpus"]
    assert [g["holder"] for g in gpus] == [f"{user.name}/{first}"] * 2 + [f"{user.name}/{third}"] * 2

    shared = user.ok("up", second, "--gpus", "1", "--share-gpus")
    assert "GPUs 1" in shared.stdout


def test_stopped_box_frees_its_gpus_and_cannot_start_while_someone_else_holds_them(
    user: User, cleanup, name: str
) -> None:
    first, second = name, name + "-b"
    cleanup += [first, second]
    user.ok("up", first, "--gpus", "2")
    user.ok("stop", first)
    user.ok("up", second, "--gpus", "2")
    refused = user.devbox("start", first)
    assert refused.returncode == 1 and f"in use by {user.name}/{second}" in refused.stderr
    # The hint offers what `start` takes, not `up`'s GPU flags.
    assert f"devbox start {first} --share-gpus" in refused.stderr
    assert "--gpu-count" not in refused.stderr and "--gpus" not in refused.stderr
    # And what it offers works: the box starts beside the other, on the same GPU (it used to be
    # started, called outraced by its own label and stopped again).
    user.ok("start", first, "--share-gpus")
    running = {b["name"]: b for b in json.loads(user.ok("ls", "--json").stdout)}
    assert running[first]["status"] == running[second]["status"] == "running"
    assert running[first]["gpus"] == running[second]["gpus"] == ["2"]
    user.ok("stop", first)
    user.ok("rm", second)
    user.ok("start", first)


def test_concurrent_gpu_count_ups_get_distinct_gpus_and_a_fifth_is_refused(
    user: User, client, cleanup, name: str
):
    names = [f"{name}-{i}" for i in range(5)]
    cleanup += names
    with ThreadPoolExecutor(max_workers=5) as pool:
        procs = list(pool.map(lambda n: user.devbox("up", n, "--gpu-count", "1"), names))
    ok = [n for n, p in zip(names, procs, strict=True) if p.returncode == 0]
    failed = [p for p in procs if p.returncode != 0]
    assert len(ok) == 4, [p.stderr for p in procs]
    assert len(failed) == 1 and "--gpu-count 1: only 0 of 4 GPUs are free" in failed[0].stderr, failed[
        0
    ].stderr
    held = [box_container(client, n).labels["devbox.gpus"] for n in ok]
    assert sorted(held) == ["0", "1", "2", "3"]
    for n in ok:
        user.ok("rm", n)
    # After rm every GPU is free again.
    user.ok("up", names[4], "--gpu-count", "4")


def test_gpus_table_names_holders_and_reports_docker_support(user: User, cleanup, name: str) -> None:
    cleanup.append(name)
    user.ok("up", name, "--gpus", "GPU-3f2a")  # a unique UUID prefix of the fake's GPU 1
    table = user.ok("gpus").stdout
    line = next(ln for ln in table.splitlines() if ln.lstrip().startswith("1 "))
    assert f"{user.name}/{name}" in line and "NVIDIA H100" in line
    data = json.loads(user.ok("gpus", "--json").stdout)
    assert data["docker_gpus"] is True
    assert any(p["box"] is None for g in data["gpus"] for p in g["processes"])


def test_bad_gpu_requests_name_the_available_gpus(user: User, client) -> None:
    before = {c.id for c in client.containers.list(all=True)}
    proc = user.devbox("up", "gbad", "--gpus", "7")
    assert proc.returncode == 2 and "GPU 7 does not exist on this host (GPUs: 0-3)" in proc.stderr
    proc = user.devbox("up", "gbad", "--gpu-count", "9")
    assert proc.returncode == 2 and "--gpu-count 9: this host has 4 GPUs" in proc.stderr
    proc = user.devbox("up", "gbad", "--gpus", "GPU-3f", extra_env={"FAKE_NVIDIA_SMI_COUNT": "5"})
    assert proc.returncode == 2 and "matches GPUs" in proc.stderr
    assert {c.id for c in client.containers.list(all=True)} == before


def test_host_without_nvidia_driver_says_so(user: User) -> None:
    proc = user.devbox("gpus", extra_env={"FAKE_NVIDIA_SMI_FAIL": "1"})
    assert proc.returncode == 1 and "NVIDIA-SMI has failed" in proc.stderr
    proc = user.devbox("gpus", extra_env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1 and "nvidia-smi not found" in proc.stderr


def test_colleagues_can_share_a_box_name_but_not_a_gpu(
    user: User, colleague: User, client, cleanup, name: str
):
    cleanup.append(name)
    user.ok("up", name, "--gpus", "0")
    refused = colleague.devbox("up", name, "--gpus", "0")
    assert refused.returncode == 1 and f"GPU 0 is in use by {user.name}/{name}" in refused.stderr
    colleague.ok("up", name, "--gpus", "1")
    owners = sorted(
        c.labels["devbox.owner"] for c in client.containers.list(filters={"label": f"devbox.name={name}"})
    )
    assert owners == sorted([user.name, colleague.name])
    everyone = json.loads(colleague.ok("ls", "--all", "--json").stdout)
    assert {(b["owner"], b["name"]) for b in everyone} >= {(user.name, name), (colleague.name, name)}
    only_mine = json.loads(colleague.ok("ls", "--json").stdout)
    assert {b["owner"] for b in only_mine} == {colleague.name}
    # Each one's ssh alias reaches their own box, as their own user.
    assert colleague.ssh(f"devbox-{name}", "id -un").stdout.strip() == colleague.name
    assert user.ssh(f"devbox-{name}", "id -un").stdout.strip() == user.name


def test_concurrent_ups_of_two_users_never_share_a_gpu(
    user: User, colleague: User, client, cleanup, name: str
):
    mine, theirs = [f"{name}-a{i}" for i in range(2)], [f"{name}-b{i}" for i in range(2)]
    cleanup += mine
    jobs = [(user, n) for n in mine] + [(colleague, n) for n in theirs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        procs = list(pool.map(lambda job: job[0].devbox("up", job[1], "--gpu-count", "1"), jobs))
    assert all(p.returncode == 0 for p in procs), [p.stderr for p in procs]
    held = sorted(box_container(client, n).labels["devbox.gpus"] for n in mine + theirs)
    assert held == ["0", "1", "2", "3"]


HOLD_LOCK = """
import sys, time
from devbox.engine import Engine
with Engine.connect().lock("gpus", sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _hold_lock(user: User, image: str, seconds: float) -> subprocess.Popen[str]:
    """Another devbox run holding the engine lock, in a process group of its own (so a test can
    kill -9 it); returns once it holds the lock."""
    python = f"{user.env['DEVBOX_VENV']}/bin/python"
    holder = user.popen(python, "-c", HOLD_LOCK, image, str(seconds))
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_killed_holders_lock_frees_itself_within_seconds(
    user: User, client, env, cleanup, name: str
) -> None:
    cleanup.append(name)
    holder = _hold_lock(user, env["DEVBOX_TEST_IMAGE"], 600)
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    user.ok("up", name, "--gpus", "0")
    assert time.monotonic() - started < 20
    assert not client.containers.list(all=True, filters={"label": "devbox.lock"})


def test_a_silent_holders_lock_frees_itself_within_seconds(
    user: User, client, env, cleanup, name: str
) -> None:
    # A stopped process keeps its connection to the engine open and says nothing, as a laptop
    # that dropped off the network does: its lock must not outlive the silence by much.
    cleanup.append(name)
    holder = _hold_lock(user, env["DEVBOX_TEST_IMAGE"], 600)
    os.killpg(holder.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        proc = user.devbox("up", name, "--gpus", "0")
        waited = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr
        assert "Waiting for the engine lock held by" in proc.stderr
        assert waited < 25, f"a silent holder kept the lock for {waited:.1f} s"
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        os.killpg(holder.pid, signal.SIGCONT)
        holder.wait()


def test_a_live_lock_is_never_broken_whatever_a_client_sets(
    user: User, client, env, cleanup, name: str
) -> None:
    cleanup.append(name)
    holder = _hold_lock(user, env["DEVBOX_TEST_IMAGE"], 4)
    started = time.monotonic()
    proc = user.devbox("up", name, "--gpus", "0", extra_env={"DEVBOX_LOCK_STALE_S": "0"})
    waited = time.monotonic() - started
    holder.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert waited >= 3, f"up took the lock after {waited:.1f} s while it was held for 4 s"


def test_a_lock_container_that_never_started_is_cleared(user: User, client, env, cleanup, name: str) -> None:
    cleanup.append(name)
    dead = client.containers.create(
        env["DEVBOX_TEST_IMAGE"], name="devbox-lock-gpus", labels={"devbox.lock": "gpus"}, entrypoint=["true"]
    )
    proc = user.devbox("up", name, "--gpus", "0")
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(docker.errors.NotFound):
        dead.reload()
    assert not client.containers.list(all=True, filters={"label": "devbox.lock"})


def test_several_waiters_on_a_dead_runs_lock_all_get_distinct_gpus(
    user: User, client, env, cleanup, name: str
) -> None:
    # A lock container a dead run created but never started: every waiter judges it stale after a
    # few seconds and removes it, racing the one that already took the lock anew.
    names = [f"{name}-{i}" for i in range(4)]
    cleanup += names
    client.containers.create(
        env["DEVBOX_TEST_IMAGE"], name="devbox-lock-gpus", labels={"devbox.lock": "gpus"}, entrypoint=["true"]
    )
    with ThreadPoolExecutor(max_workers=4) as pool:
        procs = list(pool.map(lambda n: user.devbox("up", n, "--gpu-count", "1"), names))
    assert all(p.returncode == 0 for p in procs), [p.stderr for p in procs]
    assert not any("report it" in p.stderr or "Traceback" in p.stderr for p in procs)
    held = sorted(box_container(client, n).labels["devbox.gpus"] for n in names)
    assert held == ["0", "1", "2", "3"]
    assert not client.containers.list(all=True, filters={"label": "devbox.lock"})


def test_up_of_a_stopped_box_waiting_for_the_lock_says_who_holds_it(
    user: User, env, cleanup, name: str
) -> None:
    cleanup.append(name)
    user.ok("up", name)
    user.ok("stop", name)
    holder = _hold_lock(user, env["DEVBOX_TEST_IMAGE"], 4)
    proc = user.devbox("up", name)
    holder.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert f"Waiting for the engine lock held by {user.name}@" in proc.stderr


def test_start_and_restart_waiting_for_the_lock_say_who_holds_it(user: User, env, cleanup, name: str) -> None:
    cleanup.append(name)
    user.ok("up", name)
    for command in ("restart", "stop", "start", "stop", "restart"):
        if command == "stop":
            user.ok("stop", name)
            continue
        holder = _hold_lock(user, env["DEVBOX_TEST_IMAGE"], 4)
        proc = user.devbox(command, name)
        holder.wait(timeout=30)
        assert proc.returncode == 0, proc.stderr
        assert f"Waiting for the engine lock held by {user.name}@" in proc.stderr, command
        assert f"{name}: running" in proc.stdout


def test_a_box_that_started_second_on_a_gpu_backs_off_even_without_the_lock(
    user: User, client, cleanup, name: str
) -> None:
    # As if a lock had been broken wrongly: a running box already holds GPU 2 when ours starts.
    cleanup += [name, name + "-b"]
    user.ok("up", name, "--gpus", "2")
    first = box_container(client, name)
    rival = client.containers.run(
        first.attrs["Config"]["Image"],
        entrypoint=["sleep", "600"],
        labels={**first.labels, "devbox.name": name + "-b"},
        name=f"{first.name}-rival",
        detach=True,
    )
    try:
        engine = Engine.connect()
        with pytest.raises(GpuBusyError) as exc:
            allocation.refuse_if_outraced(engine, engine.client.containers.get(rival.id))
        assert f"GPU 2 is in use by {user.name}/{name}" in str(exc.value)
        allocation.refuse_if_outraced(engine, engine.client.containers.get(first.id))
    finally:
        rival.remove(force=True)


def test_a_shared_gpu_lists_every_box_on_it(user: User, cleanup, name: str) -> None:
    cleanup += [name, name + "-b"]
    user.ok("up", name, "--gpus", "3", "--share-gpus")
    user.ok("up", name + "-b", "--gpus", "3", "--share-gpus")
    gpus = json.loads(user.ok("gpus", "--json").stdout)["gpus"]
    holder = next(g for g in gpus if g["index"] == 3)["holder"]
    assert holder == f"{user.name}/{name}, {user.name}/{name}-b"


def test_gpu_and_port_bookkeeping_reads_every_box_in_one_engine_call(
    user: User, client, cleanup, name: str
) -> None:
    # Which GPUs and ports boxes hold is in their labels: Docker's list has them all, where an
    # inspect of each box costs one round trip per box on a busy server.
    from devbox import boxes

    cleanup.append(name)
    user.ok("up", name, "--gpus", "1")
    first = box_container(client, name)
    others = [
        client.containers.run(
            first.attrs["Config"]["Image"],
            entrypoint=["sleep", "600"],
            labels={**first.labels, "devbox.name": f"{name}-{i}", "devbox.gpus": ""},
            name=f"{first.name}-{i}",
            detach=True,
        )
        for i in range(3)
    ]
    try:
        engine = Engine.connect()
        calls: list[str] = []
        engine.client.api.hooks["response"].append(lambda r, *a, **kw: calls.append(r.url))
        assert allocation.held_gpus(engine, None) == {"1": f"{user.name}/{name}"}
        assert len(calls) == 1, calls
        allocation.refuse_if_outraced(engine, engine.client.containers.get(first.id))
        port = boxes._free_port(engine)
        assert str(port) not in {c.labels["devbox.port"] for c in [first, *others]}
        # The box's own get and start time, the one list, its rival's start time (none: no GPUs
        # shared), then _free_port's one list.
        assert len(calls) == 1 + 3 + 1, calls
    finally:
        for c in others:
            c.remove(force=True)
