"""GPU grammar, nvidia-smi parsing (fixtures and the fake), allocation and rendering."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devbox.errors import DevboxError, UsageError
from devbox.gpus import (
    BASIC_QUERY_GPU_ARGS,
    CONFLICT_HINT,
    QUERY_APPS_ARGS,
    QUERY_GPU_ARGS,
    Gpu,
    GpuProcess,
    GpuRow,
    GpuSelection,
    Inventory,
    conflict_error,
    find_conflicts,
    format_device_ids,
    format_index_ranges,
    gpu_rows,
    inventory_to_json,
    local_runner,
    parse_apps_csv,
    parse_count,
    parse_gpu_csv,
    parse_label,
    parse_selection,
    pick_free,
    read_inventory,
    resolve,
)

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "fakes" / "nvidia-smi"
FIXTURES = ROOT / "tests" / "fixtures" / "nvidia-smi"
UUID_FORMAT = re.compile(r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def fake_runner(args: list[str]) -> str:
    """Run the fake in place of the `nvidia-smi` the args name."""
    return local_runner([str(FAKE), *args[1:]])


def fake_inventory(monkeypatch: pytest.MonkeyPatch, count: int = 4) -> Inventory:
    monkeypatch.setenv("FAKE_NVIDIA_SMI_COUNT", str(count))
    return read_inventory(fake_runner)


def fixture(name: str) -> str:
    # newline="" keeps the Windows capture's CRLF line endings as nvidia-smi.exe wrote them.
    with open(FIXTURES / name, newline="") as f:
        return f.read()


def fixture_inventory(stem: str) -> Inventory:
    gpus = parse_gpu_csv(fixture(f"{stem}.gpus.txt"))
    return Inventory(tuple(gpus), tuple(parse_apps_csv(fixture(f"{stem}.apps.txt"))))


def gpu(index: int, used: int | None = 0, uuid: str | None = None) -> Gpu:
    uuid = uuid or f"GPU-{index:08x}-0000-4000-8000-{index:012x}"
    return Gpu(index, uuid, "NVIDIA H100 80GB HBM3", used, 81559, 0, False)


# --- grammar ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0,1", GpuSelection.of([0, 1])),
        ("0-3", GpuSelection.of([0, 1, 2, 3])),
        ("0,2-3", GpuSelection.of([0, 2, 3])),
        (" 0 , 2 - 3 ", GpuSelection.of([0, 2, 3])),
        ("\t1,\t0 ", GpuSelection.of([1, 0])),
        ("5", GpuSelection.of([5])),
        ("3-3", GpuSelection.of([3])),
        ("GPU-3f2a", GpuSelection.of(uuids=["GPU-3f2a"])),
        ("gpu-3F2A", GpuSelection.of(uuids=["GPU-3f2a"])),
        (
            "GPU-9b0e3f27-5c41-8d2a-e7f6-13a94c0b6d58",
            GpuSelection.of(uuids=["GPU-9b0e3f27-5c41-8d2a-e7f6-13a94c0b6d58"]),
        ),
        ("0, GPU-c71d", GpuSelection.of([0], ["GPU-c71d"])),
        ("all", GpuSelection.all()),
        (" ALL ", GpuSelection.all()),
        ("none", GpuSelection.none()),
        ("None", GpuSelection.none()),
    ],
)
def test_selection_grammar_accepts_every_form(text: str, expected: GpuSelection) -> None:
    assert parse_selection(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0,x", '"x" is not a GPU index, range or UUID'),
        ("0 1", '"0 1" is not a GPU index, range or UUID'),
        ("1.5", '"1.5" is not a GPU index, range or UUID'),
        ("GPU-", '"GPU-" is not a GPU index, range or UUID'),
        ("GPU-xyz", '"GPU-xyz" is not a GPU index, range or UUID'),
        ("1-", '"1-" is not a GPU index, range or UUID'),
        ("\u0663", '"\u0663" is not a GPU index, range or UUID'),
        ("3-1", "range 3-1 is reversed; write 1-3"),
        ("0,0", "GPU 0 is listed twice"),
        ("0,0-1", "GPU 0 is listed twice"),
        ("0-2,1", "GPU 1 is listed twice"),
        ("GPU-3f2a,gpu-3F2A", "GPU-3f2a is listed twice"),
        ("-1", '"-1": GPU indices cannot be negative'),
        ("0,-2", '"-2": GPU indices cannot be negative'),
        ("all,0", '"all" cannot be combined with other GPUs'),
        ("0,none", '"none" cannot be combined with other GPUs'),
        ("all,all", '"all" cannot be combined with other GPUs'),
        ("0,,1", "empty item between commas"),
        ("0,", "empty item between commas"),
        ("", 'it is empty (for no GPUs, say "none")'),
        ("MIG-4f1c", '"MIG-4f1c": MIG devices cannot be selected; select the whole GPU'),
        ("0-99999", "range 0-99999 is larger than any GPU host"),
    ],
)
def test_malformed_selection_is_refused_with_one_line_naming_the_problem(text: str, reason: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_selection(text)
    assert caught.value.message == f'invalid GPU selection "{text}": {reason}'
    assert caught.value.exit_code == 2
    assert caught.value.hint and "0-3" in caught.value.hint


def test_selection_error_stays_on_one_line_when_the_input_spans_several() -> None:
    with pytest.raises(UsageError) as caught:
        parse_selection("0\nx")
    assert caught.value.message == 'invalid GPU selection "0 x": "0 x" is not a GPU index, range or UUID'


def test_gpu_count_becomes_a_count_selection() -> None:
    assert parse_count(2) == GpuSelection.count(2) == GpuSelection("count", gpu_count=2)


@pytest.mark.parametrize("n", [0, -3])
def test_gpu_count_below_one_is_refused(n: int) -> None:
    with pytest.raises(UsageError, match=rf"--gpu-count must be at least 1 \(got {n}\)"):
        parse_count(n)


@pytest.mark.parametrize(
    ("indices", "text"),
    [([], ""), ([5], "5"), ([0, 1, 2, 3], "0-3"), ([6, 3, 0, 1], "0-1,3,6"), ([2, 4, 5, 6, 8], "2,4-6,8")],
)
def test_index_ranges_are_written_compactly(indices: list[int], text: str) -> None:
    assert format_index_ranges(indices) == text


@given(st.sets(st.integers(min_value=0, max_value=300), min_size=1))
def test_any_index_set_written_as_ranges_parses_back_to_the_same_set(indices: set[int]) -> None:
    selection = parse_selection(format_index_ranges(indices))
    assert selection.kind == "indices"
    assert sorted(selection.indices) == sorted(indices)


@given(
    st.lists(st.integers(min_value=0, max_value=64), min_size=1, unique=True),
    st.lists(st.sampled_from(["", " ", "  ", "\t"]), min_size=2, max_size=2),
)
def test_index_lists_parse_in_the_order_written_whatever_the_spacing(
    indices: list[int], pad: list[str]
) -> None:
    text = ",".join(f"{pad[0]}{i}{pad[1]}" for i in indices)
    assert parse_selection(text) == GpuSelection.of(indices)


@given(st.text())
def test_any_text_either_parses_or_is_refused_with_a_one_line_usage_error(text: str) -> None:
    try:
        selection = parse_selection(text)
    except UsageError as e:
        assert "\n" not in e.message
    else:
        assert selection.kind in {"none", "all", "indices"}


@given(st.lists(st.integers(min_value=0, max_value=999).map(str), unique=True))
def test_device_ids_survive_the_label_round_trip(ids: list[str]) -> None:
    assert parse_label(format_device_ids(ids)) == tuple(ids)


@pytest.mark.parametrize(
    ("label", "ids"),
    [("", ()), ("  ", ()), ("all", ("all",)), ("ALL", ("all",)), (" 0, 1 ", ("0", "1")), ("3", ("3",))],
)
def test_labels_parse_to_device_ids(label: str, ids: tuple[str, ...]) -> None:
    assert parse_label(label) == ids


def test_device_ids_format_as_a_comma_list() -> None:
    assert format_device_ids(("0", "1")) == "0,1"
    assert format_device_ids(()) == ""


# --- parsing nvidia-smi output ----------------------------------------------------------------


def test_a100_box_with_one_mig_gpu_reads_unknown_memory_and_utilization_as_none() -> None:
    gpus = parse_gpu_csv(fixture("a100-sxm4-8x-mig.gpus.txt"))
    assert [g.index for g in gpus] == list(range(8))
    assert {g.name for g in gpus} == {"NVIDIA A100-SXM4-80GB"}
    assert gpus[4] == Gpu(
        4,
        "GPU-b95f1a2e-0d83-c746-5e2b-91f4a3d0c68e",
        "NVIDIA A100-SXM4-80GB",
        None,
        81920,
        None,
        True,
        41,
        87.15,
        400.0,
    )
    assert gpus[7] == Gpu(
        7,
        "GPU-5a0d8e3c-b7f4-2196-8c0e-d3a5f7b9e142",
        "NVIDIA A100-SXM4-80GB",
        31875,
        81920,
        62,
        False,
        55,
        248.67,
        400.0,
    )
    assert [g.mig for g in gpus].count(True) == 1


def test_a100_compute_apps_include_an_unknown_memory_figure() -> None:
    apps = parse_apps_csv(fixture("a100-sxm4-8x-mig.apps.txt"))
    assert len(apps) == 6
    assert apps[0] == GpuProcess(
        "GPU-1d7b3e4a-92c0-5f81-6ab3-e8d40c7f2195", 2214367, "/opt/conda/bin/python", 79234
    )
    assert apps[4] == GpuProcess("GPU-b95f1a2e-0d83-c746-5e2b-91f4a3d0c68e", 3390122, "python3", None)


def test_windows_rtx_4090_capture_reads_not_supported_fields_and_crlf_endings() -> None:
    text = fixture("rtx4090-windows.gpus.txt")
    assert text.endswith("\r\n")
    (card,) = parse_gpu_csv(text)
    assert card == Gpu(
        0,
        "GPU-a6e4d2c0-8b19-7f35-e1d3-9c5b7a0f2e48",
        "NVIDIA GeForce RTX 4090",
        1873,
        24564,
        None,
        None,
        47,
        31.27,
        450.0,
    )


def test_windows_process_names_keep_their_spaces_and_backslashes() -> None:
    apps = parse_apps_csv(fixture("rtx4090-windows.apps.txt"))
    assert [a.process_name for a in apps] == [
        r"C:\Users\ana\miniconda3\envs\sd\python.exe",
        r"C:\Program Files\Blender Foundation\Blender 4.1\blender.exe",
    ]
    assert {a.used_memory_mib for a in apps} == {None}


def test_h100_box_reads_every_field() -> None:
    inventory = fixture_inventory("h100-4x")
    assert inventory.gpus[1] == Gpu(
        1,
        "GPU-7ad3c915-e06b-28f4-b1c7-4e9d0a3f58b2",
        "NVIDIA H100 80GB HBM3",
        71218,
        81559,
        88,
        False,
        62,
        587.23,
        700.0,
    )
    assert [p.pid for p in inventory.processes_on(inventory.gpus[1])] == [904412]
    assert inventory.processes_on(inventory.gpus[0]) == ()


def test_laptop_gpu_reports_its_temperature_but_power_as_not_available() -> None:
    (card,) = parse_gpu_csv(fixture("rtx3060-laptop.gpus.txt"))
    assert (card.name, card.mig, card.temperature_c) == ("NVIDIA GeForce RTX 3060 Laptop GPU", None, 46)
    assert (card.power_draw_w, card.power_limit_w) == (None, None)


def test_the_basic_query_reads_the_same_gpus_without_temperature_or_power() -> None:
    basic = parse_gpu_csv(fixture("h100-4x.gpus-basic.txt"), sensors=False)
    full = parse_gpu_csv(fixture("h100-4x.gpus.txt"))
    assert {(g.temperature_c, g.power_draw_w, g.power_limit_w) for g in basic} == {(None, None, None)}
    assert basic == [replace(g, temperature_c=None, power_draw_w=None, power_limit_w=None) for g in full]


def test_empty_compute_apps_output_means_no_processes() -> None:
    assert parse_apps_csv(fixture("apps-empty.txt")) == []


@pytest.mark.parametrize("stem", ["a100-sxm4-8x-mig", "h100-4x", "rtx4090-windows", "rtx3060-laptop"])
def test_every_fixture_has_real_uuids_and_processes_on_its_own_gpus(stem: str) -> None:
    inventory = fixture_inventory(stem)
    uuids = {g.uuid for g in inventory.gpus}
    assert all(UUID_FORMAT.fullmatch(u) for u in uuids)
    assert {p.gpu_uuid for p in inventory.processes} <= uuids


def test_gpu_csv_tolerates_odd_spacing_blank_lines_units_and_bare_na() -> None:
    text = (
        "\n  0,GPU-aa11 ,  NVIDIA H100 80GB HBM3 ,12 MiB, 81559 MiB ,37 %,  Disabled  , "
        "61,68.47 W,700.00 W \n\n"
        "1, GPU-bb22, Tesla V100-SXM2-16GB, N/A, [Unknown Error], [GPU is lost], ENABLED, N/A, "
        "[Not Supported], [Unknown Error]\t\r\n"
        "2, GPU-cc33, Tesla T4, 0, 15360, 0, [N/A], 38, [N/A], 70.00\n"
    )
    assert parse_gpu_csv(text) == [
        Gpu(0, "GPU-aa11", "NVIDIA H100 80GB HBM3", 12, 81559, 37, False, 61, 68.47, 700.0),
        Gpu(1, "GPU-bb22", "Tesla V100-SXM2-16GB", None, None, None, True),
        Gpu(2, "GPU-cc33", "Tesla T4", 0, 15360, 0, None, 38, None, 70.0),
    ]


def test_process_names_may_contain_commas() -> None:
    (app,) = parse_apps_csv("GPU-aa11, 77, /srv/runs/a,b/python, 512\n")
    assert app == GpuProcess("GPU-aa11", 77, "/srv/runs/a,b/python", 512)


@pytest.mark.parametrize(
    "line",
    [
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
        "0, GPU-aa11, NVIDIA H100 80GB HBM3, 0, 81559",
        "x, GPU-aa11, NVIDIA H100 80GB HBM3, 0, 81559, 0, Disabled, 30, 69.35, 700.00",
        # The basic query's answer, where the one with temperature and power was asked.
        "0, GPU-aa11, NVIDIA H100 80GB HBM3, 0, 81559, 0, Disabled",
    ],
)
def test_unreadable_gpu_output_is_refused_quoting_the_line(line: str) -> None:
    with pytest.raises(DevboxError, match="could not read nvidia-smi output: unexpected line"):
        parse_gpu_csv(line)


@pytest.mark.parametrize("line", ["No running processes found", "GPU-aa11, [N/A], python, 12"])
def test_unreadable_apps_output_is_refused_quoting_the_line(line: str) -> None:
    with pytest.raises(DevboxError, match=re.escape(repr(line))):
        parse_apps_csv(line)


names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 -", min_size=1).map(
    str.strip
)
unknown = st.sampled_from(["[N/A]", "N/A", "[Not Supported]"])
gpus = st.builds(
    Gpu,
    index=st.integers(min_value=0, max_value=64),
    uuid=st.from_regex(UUID_FORMAT, fullmatch=True),
    name=names.filter(bool),
    memory_used_mib=st.none() | st.integers(min_value=0, max_value=200_000),
    memory_total_mib=st.none() | st.integers(min_value=0, max_value=200_000),
    utilization_pct=st.none() | st.integers(min_value=0, max_value=100),
    mig=st.none() | st.booleans(),
    temperature_c=st.none() | st.integers(min_value=0, max_value=120),
    # nvidia-smi prints watts with two decimals.
    power_draw_w=st.none() | st.integers(min_value=0, max_value=150_000).map(lambda c: c / 100),
    power_limit_w=st.none() | st.integers(min_value=0, max_value=150_000).map(lambda c: c / 100),
)


@given(
    st.lists(gpus, max_size=8),
    unknown,
    st.sampled_from(["\n", "\r\n"]),
    st.sampled_from([", ", ",", " , "]),
    st.booleans(),
)
def test_any_gpu_list_written_as_nvidia_smi_csv_parses_back(
    listed: list[Gpu], na: str, newline: str, comma: str, sensors: bool
) -> None:
    def cell(value: float | None, decimals: int = 0) -> str:
        return na if value is None else f"{value:.{decimals}f}"

    if not sensors:
        listed = [replace(g, temperature_c=None, power_draw_w=None, power_limit_w=None) for g in listed]
    mig = {True: "Enabled", False: "Disabled", None: "[N/A]"}
    text = "".join(
        comma.join(
            [str(g.index), g.uuid, g.name, cell(g.memory_used_mib), cell(g.memory_total_mib)]
            + [cell(g.utilization_pct), mig[g.mig]]
            + [cell(g.temperature_c), cell(g.power_draw_w, 2), cell(g.power_limit_w, 2)] * sensors
        )
        + newline
        for g in listed
    )
    assert parse_gpu_csv(text, sensors=sensors) == listed


# --- reading an inventory through a runner -----------------------------------------------------


def test_inventory_is_read_with_exactly_the_two_documented_queries() -> None:
    calls: list[list[str]] = []

    def recording_runner(args: list[str]) -> str:
        calls.append(args)
        return fixture("h100-4x.gpus.txt" if args == QUERY_GPU_ARGS else "h100-4x.apps.txt")

    inventory = read_inventory(recording_runner)
    assert calls == [QUERY_GPU_ARGS, QUERY_APPS_ARGS]
    assert len(inventory.gpus) == 4
    assert len(inventory.processes) == 2


@pytest.mark.parametrize(
    "refusal",
    [
        'nvidia-smi on gpu1 failed (exit 2): Field "temperature.gpu" is not a valid field to query.',
        # How tests/fakes/nvidia-smi refused the query before it knew temperature and power.
        "nvidia-smi failed (exit 2): Invalid combination of input arguments. "
        "Please run 'nvidia-smi -h' for help.",
    ],
)
def test_a_tool_refusing_the_sensor_fields_is_asked_again_without_them(refusal: str) -> None:
    calls: list[list[str]] = []

    def old_tool(args: list[str]) -> str:
        calls.append(args)
        if args == QUERY_GPU_ARGS:
            raise DevboxError(refusal, "check that the NVIDIA driver is loaded")
        return fixture("h100-4x.gpus-basic.txt" if args == BASIC_QUERY_GPU_ARGS else "h100-4x.apps.txt")

    inventory = read_inventory(old_tool)
    assert calls == [QUERY_GPU_ARGS, BASIC_QUERY_GPU_ARGS, QUERY_APPS_ARGS]
    assert inventory.gpus == tuple(parse_gpu_csv(fixture("h100-4x.gpus-basic.txt"), sensors=False))
    assert {g.temperature_c for g in inventory.gpus} == {None}


def test_a_failing_driver_is_not_asked_a_second_time() -> None:
    calls: list[list[str]] = []

    def broken(args: list[str]) -> str:
        calls.append(args)
        raise DevboxError("nvidia-smi failed (exit 9): NVIDIA-SMI has failed because it couldn't communicate")

    with pytest.raises(DevboxError, match="couldn't communicate"):
        read_inventory(broken)
    assert calls == [QUERY_GPU_ARGS]


def test_host_without_nvidia_smi_is_reported_as_having_no_driver() -> None:
    def missing(args: list[str]) -> str:
        raise FileNotFoundError(args[0])

    with pytest.raises(DevboxError) as caught:
        read_inventory(missing)
    assert caught.value.message == "no NVIDIA driver on this host: nvidia-smi not found"
    assert caught.value.hint and "--gpus" in caught.value.hint


def test_local_runner_lets_a_missing_program_through_as_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        local_runner([str(tmp_path / "nvidia-smi"), "-L"])


def test_local_runner_names_the_first_line_of_stderr_when_the_program_fails() -> None:
    with pytest.raises(DevboxError) as caught:
        local_runner(["sh", "-c", "echo; echo first problem >&2; echo second >&2; exit 3"])
    assert caught.value.message == "sh failed (exit 3): first problem"


def test_local_runner_gives_up_on_a_program_that_hangs() -> None:
    with pytest.raises(DevboxError, match=r"sleep did not answer within 0.2 s"):
        local_runner(["sleep", "5"], timeout_s=0.2)


# --- the fake nvidia-smi ----------------------------------------------------------------------


def run_fake(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FAKE), *args], capture_output=True, text=True, env={**os.environ, **env}, check=False, timeout=20
    )


def test_fake_nvidia_smi_is_executable() -> None:
    assert os.access(FAKE, os.X_OK)


def test_fake_describes_four_h100s_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAKE_NVIDIA_SMI_COUNT", raising=False)
    inventory = read_inventory(fake_runner)
    assert inventory.indices() == (0, 1, 2, 3)
    assert {g.name for g in inventory.gpus} == {"NVIDIA H100 80GB HBM3"}
    assert {g.memory_total_mib for g in inventory.gpus} == {81559}
    assert {g.mig for g in inventory.gpus} == {False}
    assert all(UUID_FORMAT.fullmatch(g.uuid) for g in inventory.gpus)
    assert len({g.memory_used_mib for g in inventory.gpus}) == 4
    assert [(p.pid, p.gpu_uuid) for p in inventory.processes] == [
        (48121, inventory.gpus[0].uuid),
        (51877, inventory.gpus[2].uuid),
    ]


@pytest.mark.parametrize("count", [1, 2, 8, 12])
def test_fake_gpu_count_follows_the_environment(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    inventory = fake_inventory(monkeypatch, count)
    assert inventory.indices() == tuple(range(count))
    assert len({g.uuid for g in inventory.gpus}) == count
    assert all(UUID_FORMAT.fullmatch(g.uuid) for g in inventory.gpus)
    assert {p.gpu_uuid for p in inventory.processes} <= {g.uuid for g in inventory.gpus}


def test_fake_reports_temperature_and_power_in_nvidia_smi_csv_format() -> None:
    done = run_fake(*QUERY_GPU_ARGS[1:])
    assert done.returncode == 0
    assert done.stdout.splitlines()[0].endswith(", Disabled, 61, 612.47, 700.00")
    gpus_read = parse_gpu_csv(done.stdout)
    assert [(g.temperature_c, g.power_draw_w, g.power_limit_w) for g in gpus_read[:3]] == [
        (61, 612.47, 700.0),
        (31, 71.08, 700.0),
        (48, 301.26, 700.0),
    ]


def test_fake_still_answers_the_basic_query() -> None:
    done = run_fake(*BASIC_QUERY_GPU_ARGS[1:])
    assert done.returncode == 0
    assert [g.index for g in parse_gpu_csv(done.stdout, sensors=False)] == [0, 1, 2, 3]


def test_fake_without_sensors_refuses_their_fields_like_nvidia_smi_and_devbox_reads_it_anyway(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done = run_fake(*QUERY_GPU_ARGS[1:], FAKE_NVIDIA_SMI_SENSORS="0")
    assert (done.returncode, done.stdout) == (2, 'Field "temperature.gpu" is not a valid field to query.\n\n')
    monkeypatch.setenv("FAKE_NVIDIA_SMI_SENSORS", "0")
    inventory = read_inventory(fake_runner)
    assert inventory.indices() == (0, 1, 2, 3)
    sensors = {(g.temperature_c, g.power_draw_w, g.power_limit_w) for g in inventory.gpus}
    assert sensors == {(None, None, None)}
    assert gpu_rows(inventory, {})[0].memory == "42379 / 81559 MiB"


def test_fake_with_unloaded_driver_fails_the_inventory_naming_the_driver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_NVIDIA_SMI_FAIL", "1")
    with pytest.raises(DevboxError) as caught:
        read_inventory(fake_runner)
    assert caught.value.message.startswith(
        "nvidia-smi failed (exit 9): "
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    )


def test_fake_host_without_gpus_fails_like_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NVIDIA_SMI_COUNT", "0")
    with pytest.raises(DevboxError, match=r"nvidia-smi failed \(exit 6\): No devices were found"):
        read_inventory(fake_runner)


@pytest.mark.parametrize(
    ("args", "first_line"),
    [
        (["--bogus"], "ERROR: Option --bogus is not recognized. Please run 'nvidia-smi -h' for help."),
        (
            ["--query-gpu=index", "--format=csv,noheader,nounits"],
            "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.",
        ),
        (
            [QUERY_GPU_ARGS[1], "--format=csv"],
            "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.",
        ),
    ],
)
def test_fake_refuses_what_it_does_not_answer_with_exit_2(args: list[str], first_line: str) -> None:
    done = run_fake(*args)
    assert done.returncode == 2
    assert done.stdout.splitlines()[0] == first_line


def test_fake_answers_queries_whatever_the_argument_order() -> None:
    done = run_fake(QUERY_APPS_ARGS[2], QUERY_APPS_ARGS[1])
    assert done.returncode == 0
    assert len(parse_apps_csv(done.stdout)) == 2


def test_fake_lists_gpus_like_nvidia_smi_dash_l() -> None:
    lines = run_fake("-L").stdout.splitlines()
    assert len(lines) == 4
    for i, line in enumerate(lines):
        assert re.fullmatch(rf"GPU {i}: NVIDIA H100 80GB HBM3 \(UUID: {UUID_FORMAT.pattern}\)", line)


def test_fake_prints_the_driver_550_table_with_its_column_widths() -> None:
    done = run_fake()
    assert done.returncode == 0
    table = done.stdout.splitlines()[1:]
    assert "Driver Version: 550.54.15" in table[1]
    assert {len(line) for line in table if line} == {91}
    assert len([line for line in table if "NVIDIA H100 80GB HBM3          On" in line]) == 4
    assert len([line for line in table if re.search(r"N/A  N/A +\d+ +C ", line)]) == 2


# --- resolution ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("none", ()),
        ("all", ("0", "1", "2", "3")),
        ("2,0", ("0", "2")),
        ("1-3", ("1", "2", "3")),
        ("GPU-3f2a", ("1",)),
        ("GPU-9B0E3F27-5C41-8D2A-E7F6-13A94C0B6D58", ("0",)),
        ("0,GPU-c71d", ("0", "2")),
    ],
)
def test_selection_resolves_to_host_indices(
    monkeypatch: pytest.MonkeyPatch, text: str, ids: tuple[str, ...]
) -> None:
    assert resolve(parse_selection(text), fake_inventory(monkeypatch)) == ids


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("7", "GPU 7 does not exist on this host (GPUs: 0-3)"),
        ("5,0,7", "GPUs 5, 7 do not exist on this host (GPUs: 0-3)"),
        ("GPU-dead", "no GPU on this host has UUID GPU-dead (GPUs: 0-3)"),
        ("1,GPU-3f2a", "GPU-3f2a is GPU 1, which is already selected"),
    ],
)
def test_selection_naming_gpus_the_host_lacks_is_refused_listing_what_it_has(
    monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    inventory = fake_inventory(monkeypatch)
    with pytest.raises(UsageError) as caught:
        resolve(parse_selection(text), inventory)
    assert caught.value.message == message


def test_ambiguous_uuid_prefix_is_refused_listing_the_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = fake_inventory(monkeypatch, 5)
    with pytest.raises(UsageError) as caught:
        resolve(parse_selection("GPU-3f"), inventory)
    assert caught.value.message == (
        "GPU-3f matches GPUs "
        "1 (GPU-3f2a6c1d-84e9-b075-2dc3-6e1f9a7b4c20), 4 (GPU-3fd1e082-6b5a-c947-1e3d-8a0f2b6c9d71)"
    )
    assert resolve(parse_selection("GPU-3fd"), inventory) == ("4",)


def test_missing_gpu_message_shows_gaps_in_the_host_indices() -> None:
    inventory = Inventory((gpu(0), gpu(1), gpu(3)))
    with pytest.raises(UsageError, match=r"\(GPUs: 0-1,3\)$"):
        resolve(parse_selection("2"), inventory)


def test_plain_indices_pass_unchecked_without_an_inventory() -> None:
    assert resolve(parse_selection("7,3"), None) == ("3", "7")
    assert resolve(GpuSelection.none(), None) == ()


@pytest.mark.parametrize("text", ["all", "GPU-3f2a", "0,GPU-3f2a"])
def test_all_and_uuids_cannot_be_resolved_without_an_inventory(text: str) -> None:
    with pytest.raises(DevboxError, match="nvidia-smi is not available on this host"):
        resolve(parse_selection(text), None)


def test_all_on_a_host_without_gpus_is_refused() -> None:
    with pytest.raises(DevboxError, match="this host has no GPUs"):
        resolve(GpuSelection.all(), Inventory(()))


def test_a_count_is_not_resolved_but_picked() -> None:
    with pytest.raises(ValueError, match="pick_free"):
        resolve(GpuSelection.count(1), Inventory((gpu(0),)))


# --- allocation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "held", "picked"),
    [
        (1, {}, ("3",)),
        (2, {}, ("1", "3")),
        (3, {}, ("1", "2", "3")),
        (4, {}, ("0", "1", "2", "3")),
        (2, {"3": "bob/train"}, ("1", "2")),
        (1, {"1": "bob/train", "3": "alice/dev"}, ("2",)),
    ],
)
def test_free_gpus_are_picked_least_memory_used_first(
    monkeypatch: pytest.MonkeyPatch, count: int, held: dict[str, str], picked: tuple[str, ...]
) -> None:
    assert pick_free(fake_inventory(monkeypatch), held, count) == picked


def test_equally_loaded_gpus_are_picked_by_index() -> None:
    inventory = Inventory((gpu(3), gpu(1), gpu(2), gpu(0)))
    assert pick_free(inventory, {}, 2) == ("0", "1")


def test_gpus_with_unknown_memory_use_are_picked_last() -> None:
    inventory = fixture_inventory("a100-sxm4-8x-mig")
    assert pick_free(inventory, {}, 3) == ("5", "6", "7")
    assert "4" not in pick_free(inventory, {}, 7)
    assert pick_free(inventory, {}, 8) == tuple(str(i) for i in range(8))


def test_too_few_free_gpus_is_refused_naming_how_many_and_the_holders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = {"0": "bob/train", "1": "bob/train", "2": "alice/dev"}
    with pytest.raises(DevboxError) as caught:
        pick_free(fake_inventory(monkeypatch), held, 2)
    assert (
        caught.value.message == "--gpu-count 2: only 1 of 4 GPUs are free (0, 1 by bob/train; 2 by alice/dev)"
    )
    assert caught.value.hint and "--share-gpus" in caught.value.hint


def test_more_gpus_than_the_host_has_is_bad_input_not_a_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError) as caught:
        pick_free(fake_inventory(monkeypatch), {"0": "bob/train"}, 5)
    assert caught.value.exit_code == 2
    assert caught.value.message == "--gpu-count 5: this host has 4 GPUs"
    assert caught.value.hint == "ask for 4 or fewer, or another host with --host"


def test_a_box_holding_all_gpus_leaves_none_free(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DevboxError, match=r"only 0 of 4 GPUs are free \(all by carol/big\)"):
        pick_free(fake_inventory(monkeypatch), {"all": "carol/big"}, 1)


inventories = st.lists(
    st.tuples(st.integers(min_value=0, max_value=15), st.none() | st.integers(min_value=0, max_value=1000)),
    min_size=1,
    unique_by=lambda t: t[0],
).map(lambda rows: Inventory(tuple(gpu(i, used) for i, used in rows)))


@given(inventories, st.data())
def test_picked_gpus_are_free_distinct_and_no_busier_than_any_left_behind(
    inventory: Inventory, data: st.DataObject
) -> None:
    indices = [str(i) for i in inventory.indices()]
    held = {i: "someone/box" for i in data.draw(st.lists(st.sampled_from(indices), unique=True))}
    free = [g for g in inventory.gpus if str(g.index) not in held]
    if not free:
        return
    count = data.draw(st.integers(min_value=1, max_value=len(free)))
    picked = pick_free(inventory, held, count)
    assert len(set(picked)) == count
    assert list(picked) == sorted(picked, key=int)
    assert not set(picked) & set(held)

    def load(g: Gpu) -> float:
        return float("inf") if g.memory_used_mib is None else g.memory_used_mib

    chosen = [g for g in free if str(g.index) in picked]
    left = [g for g in free if str(g.index) not in picked]
    assert all(load(c) <= load(x) for c in chosen for x in left)


def test_conflicts_are_the_wanted_gpus_someone_holds() -> None:
    held = {"2": "bob/train", "3": "alice/dev"}
    assert find_conflicts(["0", "2"], held) == {"2": "bob/train"}
    assert find_conflicts(["0", "1"], held) == {}
    assert find_conflicts(["3", "2"], held) == {"3": "alice/dev", "2": "bob/train"}


def test_a_box_holding_all_gpus_conflicts_with_every_request() -> None:
    assert find_conflicts(["0", "5"], {"all": "carol/big"}) == {"0": "carol/big", "5": "carol/big"}
    assert find_conflicts(["all"], {"1": "bob/train"}) == {"1": "bob/train"}


def test_second_box_on_same_gpu_is_refused_naming_holder() -> None:
    error = conflict_error(find_conflicts(["2"], {"2": "bob/train"}))
    assert error.message == "GPU 2 is in use by bob/train"
    assert error.hint == CONFLICT_HINT == "use other GPUs, --gpu-count N, or --share-gpus"
    assert error.exit_code == 1


def test_refusal_over_several_gpus_groups_them_by_holder() -> None:
    conflicts = find_conflicts(["0", "1", "3"], {"0": "bob/train", "1": "bob/train", "3": "alice/dev"})
    assert conflict_error(conflicts).message == "GPUs 0, 1, 3 are in use (0, 1 by bob/train; 3 by alice/dev)"


# --- rendering --------------------------------------------------------------------------------------


def test_gpu_rows_are_ready_for_a_table(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = gpu_rows(fake_inventory(monkeypatch), {"0": "bob/train"})
    assert rows[0] == GpuRow(
        index="0",
        uuid="GPU-9b0e3f27-5c41-8d2a-e7f6-13a94c0b6d58",
        name="NVIDIA H100 80GB HBM3",
        memory="42379 / 81559 MiB",
        util="97 %",
        temperature="61 °C",
        power="612 / 700 W",
        mig="off",
        holder="bob/train",
        pids="48121",
    )
    assert (rows[1].holder, rows[1].pids, rows[1].memory) == ("", "", "4 / 81559 MiB")


def test_gpu_rows_show_unknown_figures_plainly() -> None:
    a100 = gpu_rows(fixture_inventory("a100-sxm4-8x-mig"), {"all": "carol/big"})
    assert (a100[4].memory, a100[4].util, a100[4].mig, a100[4].pids) == (
        "? / 81920 MiB",
        "n/a",
        "on",
        "3390122",
    )
    assert {row.holder for row in a100} == {"carol/big"}
    (rtx,) = gpu_rows(fixture_inventory("rtx4090-windows"), {})
    assert (rtx.util, rtx.mig, rtx.pids) == ("n/a", "", "14276, 9120")
    blank = Gpu(0, "GPU-aa11", "Tesla T4", None, None, None, None)
    assert gpu_rows(Inventory((blank,)), {})[0].memory == "n/a"


def test_gpu_rows_show_temperature_and_power_where_reported() -> None:
    (laptop,) = gpu_rows(fixture_inventory("rtx3060-laptop"), {})
    assert (laptop.temperature, laptop.power) == ("46 °C", "n/a")
    (rtx,) = gpu_rows(fixture_inventory("rtx4090-windows"), {})
    assert (rtx.temperature, rtx.power) == ("47 °C", "31 / 450 W")
    draw_only = Gpu(0, "GPU-aa11", "Tesla T4", 0, 15360, 0, None, None, 27.9, None)
    limit_only = replace(draw_only, power_draw_w=None, power_limit_w=70.0)
    rows = gpu_rows(Inventory((draw_only, limit_only)), {})
    assert [(r.temperature, r.power) for r in rows] == [("n/a", "28 W"), ("n/a", "? / 70 W")]


def test_inventory_json_keeps_raw_numbers_holders_and_processes() -> None:
    document = inventory_to_json(fixture_inventory("a100-sxm4-8x-mig"), {"7": "bob/tgi"})
    gpus_json = json.loads(json.dumps(document))["gpus"]
    assert gpus_json[4]["memory_used_mib"] is None
    assert (gpus_json[4]["temperature_c"], gpus_json[4]["power_draw_w"], gpus_json[4]["power_limit_w"]) == (
        41,
        87.15,
        400.0,
    )
    assert gpus_json[4]["mig"] is True
    assert gpus_json[4]["holder"] is None
    assert gpus_json[7]["holder"] == "bob/tgi"
    assert gpus_json[7]["processes"] == [
        {"pid": 1187734, "process_name": "/usr/local/bin/text-generation-launcher", "used_memory_mib": 31866}
    ]


def test_inventory_json_has_null_temperature_and_power_where_not_reported() -> None:
    (laptop,) = inventory_to_json(fixture_inventory("rtx3060-laptop"), {})["gpus"]  # type: ignore[misc]
    assert (laptop["temperature_c"], laptop["power_draw_w"], laptop["power_limit_w"]) == (46, None, None)
