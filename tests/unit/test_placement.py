"""Placement for `up --host auto`: which hosts fit a GPU request, best first, and why others do not."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from devbox.keys.keypair import Identity
from hypothesis import given
from hypothesis import strategies as st

from devbox import placement
from devbox.errors import GpuBusyError, UsageError
from devbox.gpus import GpuSelection
from devbox.hosts import LOCAL_HOST, Host, HostResult
from devbox.placement import Survey, describe, needed, rank
from devbox.spec import BoxSpec, HostFacts, LoginUser


@pytest.fixture(autouse=True)
def home(clean_home: Path) -> Path:
    return clean_home


def ok(name: str, total: int, free: int, memory_gib: int = 0) -> HostResult[Survey]:
    return HostResult(Host(name, name), Survey(total, free, total - free, memory_gib * 1024))


def down(name: str, why: str = "cannot reach it") -> HostResult[Survey]:
    return HostResult(Host(name, name), error=why)


def names(results: list[HostResult[Survey]]) -> list[str]:
    return [r.host.name for r in results]


def spec(gpus: GpuSelection) -> BoxSpec:
    return BoxSpec("train", "ubuntu:24.04", LoginUser("alice", 1000, 1000), gpus)


# -- needed ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 8])
def test_needed_is_the_gpu_count(n: int) -> None:
    assert needed(spec(GpuSelection.count(n))) == n


def test_needed_for_all_gpus_is_none() -> None:
    assert needed(spec(GpuSelection.all())) is None


@pytest.mark.parametrize(
    "gpus", [GpuSelection.none(), GpuSelection.of([0, 1]), GpuSelection.of(uuids=["GPU-3f2a"])]
)
def test_auto_placement_refuses_selections_that_are_not_a_count_or_all(gpus: GpuSelection) -> None:
    with pytest.raises(UsageError) as info:
        needed(spec(gpus))
    assert "--gpu-count N or --gpus all" in info.value.message
    assert info.value.exit_code == 2


# -- rank ------------------------------------------------------------------------------------------


def test_fewest_held_gpus_come_first() -> None:
    results = [ok("busy", 8, 4, 300), ok("idle", 4, 4, 100), ok("half", 4, 3, 200)]
    fits, skipped = rank(results, 2)
    assert names(fits) == ["idle", "half", "busy"]
    assert skipped == []


def test_equal_held_gpus_prefer_more_free_memory() -> None:
    results = [ok("small", 4, 4, 80), ok("big", 4, 4, 320), ok("mid", 8, 8, 160)]
    fits, _ = rank(results, 1)
    assert names(fits) == ["big", "mid", "small"]


def test_full_ties_are_broken_by_host_name() -> None:
    results = [ok("gpu3", 2, 2, 10), ok("gpu1", 2, 2, 10), ok("gpu2", 2, 2, 10)]
    fits, _ = rank(results, 1)
    assert names(fits) == ["gpu1", "gpu2", "gpu3"]


def test_unreachable_host_is_skipped_saying_why() -> None:
    fits, skipped = rank([down("gpu1", "cannot reach gpu1: Connection refused"), ok("gpu2", 1, 1)], 1)
    assert names(fits) == ["gpu2"]
    assert skipped == ["gpu1: unreachable (cannot reach gpu1: Connection refused)"]


def test_host_with_too_few_free_gpus_is_skipped_saying_how_many_are_free() -> None:
    fits, skipped = rank([ok("gpu1", 4, 1), ok("gpu2", 2, 2)], 2)
    assert names(fits) == ["gpu2"]
    assert skipped == ["gpu1: only 1 of 4 GPUs free"]


def test_host_with_exactly_the_free_gpus_needed_fits() -> None:
    fits, skipped = rank([ok("gpu1", 4, 2)], 2)
    assert names(fits) == ["gpu1"] and skipped == []


def test_host_without_gpus_is_skipped_for_a_count() -> None:
    fits, skipped = rank([ok("cpu", 0, 0)], 1)
    assert fits == [] and skipped == ["cpu: only 0 of 0 GPUs free"]


def test_all_gpus_needs_every_gpu_of_the_host_free() -> None:
    fits, skipped = rank([ok("partly", 4, 3, 500), ok("idle", 2, 2, 10)], None)
    assert names(fits) == ["idle"]
    assert skipped == ["partly: 1 of 4 GPUs held (--gpus all needs every one free)"]


def test_all_gpus_skips_a_host_without_gpus() -> None:
    fits, skipped = rank([ok("cpu", 0, 0)], None)
    assert fits == []
    assert skipped == ["cpu: 0 of 0 GPUs held (--gpus all needs every one free)"]


def test_skipped_lines_keep_the_order_of_the_hosts() -> None:
    _, skipped = rank([ok("b", 1, 0), down("a"), ok("c", 2, 1)], 2)
    assert [line.split(":")[0] for line in skipped] == ["b", "a", "c"]


def test_nothing_to_rank_is_no_fits_and_nothing_skipped() -> None:
    assert rank([], 1) == ([], [])


_SURVEYS = st.builds(
    lambda name, total, free, mem, up: (
        HostResult(Host(name, name), Survey(total, min(free, total), total - min(free, total), mem))
        if up
        else HostResult(Host(name, name), error="down")
    ),
    st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True),
    st.integers(0, 8),
    st.integers(0, 8),
    st.integers(0, 8 * 80 * 1024),
    st.booleans(),
)


@given(st.lists(_SURVEYS, max_size=8), st.one_of(st.none(), st.integers(1, 8)))
def test_every_host_either_fits_or_is_skipped_once_and_fits_are_sorted(
    results: list[HostResult[Survey]], count: int | None
) -> None:
    fits, skipped = rank(results, count)

    assert len(fits) + len(skipped) == len(results)
    for r in fits:
        assert r.value is not None
        if count is None:
            assert r.value.held == 0 and r.value.total > 0
        else:
            assert r.value.free >= count
    keys = [(r.value.held, -r.value.free_memory_mib, r.host.name) for r in fits if r.value]
    assert keys == sorted(keys)


# -- describe --------------------------------------------------------------------------------------


def test_describe_says_free_gpus_and_free_memory_in_gib() -> None:
    assert describe(Survey(4, 3, 1, 150 * 1024)) == "3 of 4 GPUs free, 150 GiB free GPU memory"
    assert describe(Survey(0, 0, 0, 0)) == "0 of 0 GPUs free, 0 GiB free GPU memory"


# -- up_anywhere: the paths that need no engine ------------------------------------------------------


IDENTITY = Identity(Path("/nonexistent/id_ed25519"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN0 test")


def test_up_anywhere_refuses_a_gpu_list_before_asking_any_host(tmp_path: Path) -> None:
    asked: list[HostFacts] = []

    def make_spec(facts: HostFacts) -> BoxSpec:
        asked.append(facts)
        return spec(GpuSelection.of([0]))

    with pytest.raises(UsageError, match="--gpu-count N or --gpus all"):
        placement.up_anywhere([Host("slow", "slow")], make_spec, IDENTITY, ssh_config=tmp_path / "none")

    # Only the unchecked facts: nothing was looked up on any host.
    assert len(asked) == 1 and asked[0].exists is None


def test_up_anywhere_with_no_reachable_host_names_why_each_was_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tcp:// DOCKER_HOST is refused before any Docker call; 127.0.0.1 port 1 refuses at once.
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n    ConnectTimeout 1\n")
    lines: list[str] = []
    start = time.monotonic()

    with pytest.raises(GpuBusyError) as info:
        placement.up_anywhere(
            [LOCAL_HOST, Host("gpu1", "127.0.0.1:1")],
            lambda facts: spec(GpuSelection.count(2)),
            IDENTITY,
            ssh_config=config,
            progress=lines.append,
        )

    assert time.monotonic() - start < 20
    message = info.value.message
    assert message.startswith("no host has 2 free GPU(s): ")
    assert "local: unreachable (DOCKER_HOST=tcp://127.0.0.1:1 is not a local engine)" in message
    assert "gpu1: unreachable (cannot reach gpu1: " in message and "Connection refused" in message
    assert lines == ["Asking 2 host(s) for free GPUs"]
