"""GPUs: the `--gpus` grammar, the inventory nvidia-smi reports, and which GPUs a box may take.

Everything here is pure logic over text and values. Running nvidia-smi is injected as a `run`
callable so the same code reads a local host or a remote one over SSH; Docker labels (read by the
engine) say which box holds which GPU, and arrive here as a plain `held` mapping.

Device IDs handed to Docker and stored in the `devbox.gpus` label are always host indices as
strings ("0", "1"), never UUIDs, so labels written by different commands compare like with like.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from devbox.errors import DevboxError, GpuBusyError, UsageError

_GPU_FIELDS = "index,uuid,name,memory.used,memory.total,utilization.gpu,mig.mode.current"
# Asked in the same call as the rest: one nvidia-smi run per refresh. Drivers have known these
# fields for a decade, but a stand-in for nvidia-smi (an older copy of the test fake, a wrapper)
# may not, and then the GPUs are read without them (BASIC_QUERY_GPU_ARGS).
_SENSOR_FIELDS = "temperature.gpu,power.draw,power.limit"
QUERY_GPU_ARGS = [
    "nvidia-smi",
    f"--query-gpu={_GPU_FIELDS},{_SENSOR_FIELDS}",
    "--format=csv,noheader,nounits",
]
BASIC_QUERY_GPU_ARGS = ["nvidia-smi", f"--query-gpu={_GPU_FIELDS}", "--format=csv,noheader,nounits"]
# How a query naming a field the tool does not know is refused (exit 2, on stdout): nvidia-smi
# names the field; the test fake before it learned the sensor fields refused the whole query.
_FIELD_REFUSALS = ("is not a valid field to query", "Invalid combination of input arguments")
QUERY_APPS_ARGS = [
    "nvidia-smi",
    "--query-compute-apps=gpu_uuid,pid,process_name,used_memory",
    "--format=csv,noheader,nounits",
]
NVIDIA_SMI_TIMEOUT_S = 20

# A label value meaning "every GPU on the host"; resolve() never writes it, but a label set by
# hand or by another tool may carry it, and it must then conflict with everything.
ALL = "all"
CONFLICT_HINT = "use other GPUs, --gpu-count N, or --share-gpus"
_SELECTION_HINT = "write GPU indices (0,1), ranges (0-3), UUIDs or prefixes (GPU-3f2a), all, or none"
# No host has this many GPUs; the cap keeps a typo like 0-99999999 from expanding into memory.
_MAX_RANGE = 1024

SelectionKind = Literal["none", "all", "indices", "count"]
Runner = Callable[[list[str]], str]


# --- selection grammar -------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuSelection:
    """What the user asked for. `indices` kind is an explicit list: host indices and/or UUIDs."""

    kind: SelectionKind
    indices: tuple[int, ...] = ()
    uuids: tuple[str, ...] = ()
    gpu_count: int = 0

    @classmethod
    def none(cls) -> GpuSelection:
        return cls("none")

    @classmethod
    def all(cls) -> GpuSelection:
        return cls("all")

    @classmethod
    def count(cls, n: int) -> GpuSelection:
        return cls("count", gpu_count=n)

    @classmethod
    def of(cls, indices: Iterable[int] = (), uuids: Iterable[str] = ()) -> GpuSelection:
        return cls("indices", indices=tuple(indices), uuids=tuple(uuids))

    def __str__(self) -> str:
        """Canonical text, as a user would type it: order-free, so `1,0` and `0,1` compare equal."""
        if self.kind == "count":
            return f"{self.gpu_count} free"
        if self.kind != "indices":
            return self.kind
        return ",".join([format_index_ranges(self.indices)] * bool(self.indices) + sorted(self.uuids))


_INDEX = re.compile(r"[0-9]+")
_RANGE = re.compile(r"([0-9]+)\s*-\s*([0-9]+)")
_UUID = re.compile(r"GPU-[0-9a-f][0-9a-f-]*", re.IGNORECASE)


def parse_selection(text: str) -> GpuSelection:
    """Parse a `--gpus` value; raise UsageError naming the offending item."""
    stripped = text.strip()
    words = [token.strip() for token in stripped.split(",")]
    lowered = [w.lower() for w in words]
    if stripped == "":
        raise _bad(text, 'it is empty (for no GPUs, say "none")')
    if lowered == ["none"]:
        return GpuSelection.none()
    if lowered == [ALL]:
        return GpuSelection.all()
    for keyword in ("all", "none"):
        if keyword in lowered:
            raise _bad(text, f'"{keyword}" cannot be combined with other GPUs')
    indices: list[int] = []
    uuids: list[str] = []
    for word in words:
        for index in _parse_index_word(text, word):
            if index in indices:
                raise _bad(text, f"GPU {index} is listed twice")
            indices.append(index)
        if _UUID.fullmatch(word):
            uuid = "GPU-" + word[4:].lower()
            if uuid in uuids:
                raise _bad(text, f"{uuid} is listed twice")
            uuids.append(uuid)
    return GpuSelection.of(indices, uuids)


def _parse_index_word(text: str, word: str) -> range:
    """Indices one comma-separated word stands for; empty for a UUID."""
    if _INDEX.fullmatch(word):
        return range(int(word), int(word) + 1)
    if match := _RANGE.fullmatch(word):
        low, high = int(match[1]), int(match[2])
        if low > high:
            raise _bad(text, f"range {low}-{high} is reversed; write {high}-{low}")
        if high - low >= _MAX_RANGE:
            raise _bad(text, f"range {low}-{high} is larger than any GPU host")
        return range(low, high + 1)
    if _UUID.fullmatch(word):
        return range(0)
    if word == "":
        raise _bad(text, "empty item between commas")
    if word.startswith("-"):
        raise _bad(text, f"{_quoted(word)}: GPU indices cannot be negative")
    if word.upper().startswith("MIG-"):
        raise _bad(text, f"{_quoted(word)}: MIG devices cannot be selected; select the whole GPU")
    raise _bad(text, f"{_quoted(word)} is not a GPU index, range or UUID")


def _bad(text: str, reason: str) -> UsageError:
    return UsageError(f"invalid GPU selection {_quoted(text)}: {reason}", _SELECTION_HINT)


def _quoted(text: str) -> str:
    """User text for an error message, kept on one line whatever whitespace it held."""
    return '"' + " ".join(text.split()) + '"'


def parse_count(n: int) -> GpuSelection:
    """`--gpu-count N`: let devbox pick N free GPUs."""
    if n < 1:
        raise UsageError(f"--gpu-count must be at least 1 (got {n})", "leave it out for no GPUs")
    return GpuSelection.count(n)


def format_index_ranges(indices: Iterable[int]) -> str:
    """Compact form of a set of indices, e.g. "0-3,6"; it parses back with parse_selection."""
    parts: list[str] = []
    ordered = sorted(set(indices))
    start = 0
    for i in range(1, len(ordered) + 1):
        if i == len(ordered) or ordered[i] != ordered[i - 1] + 1:
            low, high = ordered[start], ordered[i - 1]
            parts.append(str(low) if low == high else f"{low}-{high}")
            start = i
    return ",".join(parts)


def format_device_ids(ids: Iterable[str]) -> str:
    """The `devbox.gpus` label value and Docker `device=` list: "0,1"; "" for no GPUs."""
    return ",".join(ids)


def parse_label(text: str) -> tuple[str, ...]:
    """Device IDs from a `devbox.gpus` label: "" → (), "all" → ("all",), "0,1" → ("0", "1").

    Lenient on purpose: the label is ours, and refusing to read one would hide a box's GPUs
    from conflict checks.
    """
    ids = tuple(token.strip() for token in text.split(",") if token.strip())
    return (ALL,) if ALL in (i.lower() for i in ids) else ids


# --- inventory --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    memory_used_mib: int | None
    memory_total_mib: int | None
    utilization_pct: int | None
    mig: bool | None
    # None where the GPU does not report them (laptops, vGPU guests) or nvidia-smi was not asked.
    temperature_c: int | None = None
    power_draw_w: float | None = None
    power_limit_w: float | None = None


@dataclass(frozen=True)
class GpuProcess:
    gpu_uuid: str
    pid: int
    process_name: str
    used_memory_mib: int | None


@dataclass(frozen=True)
class Inventory:
    """One host's GPUs and the compute processes running on them, as nvidia-smi saw them."""

    gpus: tuple[Gpu, ...]
    processes: tuple[GpuProcess, ...] = ()

    def indices(self) -> tuple[int, ...]:
        return tuple(gpu.index for gpu in self.gpus)

    def processes_on(self, gpu: Gpu) -> tuple[GpuProcess, ...]:
        return tuple(p for p in self.processes if p.gpu_uuid.lower() == gpu.uuid.lower())


# Values are integers, optionally with the unit `--format=...,nounits` would have removed.
_NUMBER = re.compile(r"([0-9]+)\s*(?:MiB|%)?")


def _number(field: str) -> int | None:
    """An integer field; None for [N/A], [Not Supported] and anything else nvidia-smi can't tell."""
    match = _NUMBER.fullmatch(field.strip())
    return int(match[1]) if match else None


# Watts as nvidia-smi prints them: "68.47", or "68.47 W" without `nounits`.
_WATTS = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*W?")


def _watts(field: str) -> float | None:
    match = _WATTS.fullmatch(field.strip())
    return float(match[1]) if match else None


def _mig(field: str) -> bool | None:
    return {"enabled": True, "disabled": False}.get(field.strip().lower())


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _unreadable(line: str) -> DevboxError:
    return DevboxError(
        f"could not read nvidia-smi output: unexpected line {line!r}",
        "run nvidia-smi on the host to see what it reports",
    )


def parse_gpu_csv(text: str, *, sensors: bool = True) -> list[Gpu]:
    """Parse the output of QUERY_GPU_ARGS (of BASIC_QUERY_GPU_ARGS with `sensors=False`), one GPU a line."""
    return [_parse_gpu_line(line, sensors) for line in _lines(text)]


def _parse_gpu_line(line: str, sensors: bool) -> Gpu:
    fields = [f.strip() for f in line.split(",")]
    after_name = 7 if sensors else 4
    if len(fields) < 3 + after_name or not _INDEX.fullmatch(fields[0]) or not fields[1]:
        raise _unreadable(line)
    # Names have no commas today; if one ever does, the name is whatever sits in the middle.
    name = ", ".join(fields[2:-after_name])
    used, total, util, mig, *rest = fields[-after_name:]
    temp, draw, limit = rest or ("", "", "")  # "" reads as None: not asked
    return Gpu(
        int(fields[0]),
        fields[1],
        name,
        _number(used),
        _number(total),
        _number(util),
        _mig(mig),
        _number(temp),
        _watts(draw),
        _watts(limit),
    )


def parse_apps_csv(text: str) -> list[GpuProcess]:
    """Parse the output of QUERY_APPS_ARGS; empty output means no compute processes."""
    processes = []
    for line in _lines(text):
        head = line.split(",", 2)
        if len(head) < 3 or "," not in head[2]:
            raise _unreadable(line)
        # A process name is a path and may hold a comma, so split the last field off the right.
        name, used = head[2].rsplit(",", 1)
        pid = head[1].strip()
        if not _INDEX.fullmatch(pid):
            raise _unreadable(line)
        processes.append(GpuProcess(head[0].strip(), int(pid), name.strip(), _number(used)))
    return processes


def read_inventory(run: Runner) -> Inventory:
    """Ask nvidia-smi (through `run`, which returns stdout or raises) for GPUs and processes."""
    gpus = _read_gpus(run)
    processes = parse_apps_csv(_query(run, QUERY_APPS_ARGS))
    return Inventory(tuple(gpus), tuple(processes))


def _read_gpus(run: Runner) -> list[Gpu]:
    """The GPUs with temperature and power; without them from a tool that refuses those fields."""
    try:
        text = _query(run, QUERY_GPU_ARGS)
    except DevboxError as e:
        # Only a refused query is worth a second one: a driver that is down or hung fails the
        # same way again, and a hung one would take a second timeout to say so.
        if not any(refusal in e.message for refusal in _FIELD_REFUSALS):
            raise
        return parse_gpu_csv(_query(run, BASIC_QUERY_GPU_ARGS), sensors=False)
    return parse_gpu_csv(text)


def _query(run: Runner, args: list[str]) -> str:
    try:
        return run(list(args))
    except FileNotFoundError:
        raise DevboxError(
            "no NVIDIA driver on this host: nvidia-smi not found",
            "install the NVIDIA driver and container toolkit, or create the box without --gpus",
        ) from None


def local_runner(args: list[str], *, timeout_s: float = NVIDIA_SMI_TIMEOUT_S) -> str:
    """Run nvidia-smi here and return stdout; FileNotFoundError passes through for read_inventory."""
    program = os.path.basename(args[0])
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=True)
    except subprocess.TimeoutExpired:
        raise DevboxError(
            f"{program} did not answer within {timeout_s:g} s",
            "the driver may be hung; check nvidia-smi on the host",
        ) from None
    except subprocess.CalledProcessError as e:
        # nvidia-smi prints its own failures (e.g. "couldn't communicate with the NVIDIA driver")
        # on stdout, so fall back to stdout when stderr says nothing.
        why = _first_line(e.stderr) or _first_line(e.stdout) or "no output"
        raise DevboxError(
            f"{program} failed (exit {e.returncode}): {why}",
            "check that the NVIDIA driver is loaded: run nvidia-smi on the host",
        ) from None
    return done.stdout


def _first_line(text: str | None) -> str:
    lines = _lines(text or "")
    return lines[0] if lines else ""


# Plain `nvidia-smi` prints a table whose header names the driver and the newest CUDA version it
# supports; no --query-gpu field gives the CUDA version.
TABLE_ARGS = ["nvidia-smi"]
_DRIVER_VERSION = re.compile(r"Driver Version:\s*([0-9][0-9A-Za-z.-]*)")
_CUDA_VERSION = re.compile(r"CUDA Version:\s*([0-9][0-9.]*)")


def parse_versions(table: str) -> tuple[str, str]:
    """(driver version, CUDA version) from plain nvidia-smi's header; "" for one it does not show."""
    driver, cuda = _DRIVER_VERSION.search(table), _CUDA_VERSION.search(table)
    return (driver[1] if driver else "", cuda[1] if cuda else "")


def read_versions(run: Runner) -> tuple[str, str]:
    """The host's driver and CUDA versions; ("", "") where nvidia-smi is missing or fails."""
    try:
        return parse_versions(run(list(TABLE_ARGS)))
    except (FileNotFoundError, DevboxError):
        return "", ""


# --- resolution and allocation ----------------------------------------------------------------


def resolve(selection: GpuSelection, inventory: Inventory | None) -> tuple[str, ...]:
    """Device IDs (host indices as strings, ascending) for a none/all/indices selection.

    With `inventory` None (no nvidia-smi reachable on the host) plain indices pass unchecked:
    Docker's NVIDIA runtime still refuses a device that does not exist, so checking adds nothing
    the user loses by skipping it, while refusing would block hosts where only Docker is visible.
    `all` and UUIDs cannot be mapped without the list, so they are refused.
    """
    if selection.kind == "none":
        return ()
    if selection.kind == "count":
        raise ValueError("a GPU count is allocated with pick_free, not resolve")
    if inventory is None:
        if selection.kind == "all" or selection.uuids:
            raise DevboxError(
                "cannot resolve GPUs by UUID or 'all': nvidia-smi is not available on this host",
                "select GPUs by index (--gpus 0,1), or install the NVIDIA driver",
            )
        return tuple(str(i) for i in sorted(selection.indices))
    if selection.kind == "all":
        if not inventory.gpus:
            raise DevboxError("--gpus all: this host has no GPUs", "create the box without --gpus")
        return tuple(str(i) for i in sorted(inventory.indices()))
    return _resolve_explicit(selection, inventory)


def _resolve_explicit(selection: GpuSelection, inventory: Inventory) -> tuple[str, ...]:
    available = inventory.indices()
    missing = [i for i in selection.indices if i not in available]
    if missing:
        which = f"GPU {missing[0]} does" if len(missing) == 1 else f"GPUs {_join(missing)} do"
        raise UsageError(f"{which} not exist on this host ({_available(inventory)})")
    chosen = list(selection.indices)
    for prefix in selection.uuids:
        index = _match_uuid(prefix, inventory)
        if index in chosen:
            raise UsageError(f"{prefix} is GPU {index}, which is already selected")
        chosen.append(index)
    return tuple(str(i) for i in sorted(chosen))


def _match_uuid(prefix: str, inventory: Inventory) -> int:
    wanted = prefix.lower()
    exact = [g for g in inventory.gpus if g.uuid.lower() == wanted]
    matches = exact or [g for g in inventory.gpus if g.uuid.lower().startswith(wanted)]
    if not matches:
        raise UsageError(
            f"no GPU on this host has UUID {prefix} ({_available(inventory)})",
            "`devbox gpus` lists the UUIDs",
        )
    if len(matches) > 1:
        listed = ", ".join(f"{g.index} ({g.uuid})" for g in matches)
        raise UsageError(f"{prefix} matches GPUs {listed}", "type more of the UUID")
    return matches[0].index


def _available(inventory: Inventory) -> str:
    return f"GPUs: {format_index_ranges(inventory.indices())}" if inventory.gpus else "it has no GPUs"


def _join(items: Iterable[object]) -> str:
    return ", ".join(str(i) for i in items)


def pick_free(inventory: Inventory, held: Mapping[str, str], count: int) -> tuple[str, ...]:
    """`count` GPUs nobody holds, least memory used first (ties by index); returned ascending.

    GPUs whose memory nvidia-smi cannot report (MIG mode) are picked last.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    total = len(inventory.gpus)
    if count > total:
        # No wait frees more GPUs than the host has: bad input, not a busy host.
        raise UsageError(
            f"--gpu-count {count}: this host has {total} GPU{'' if total == 1 else 's'}",
            f"ask for {total} or fewer, or another host with --host",
        )
    free = [] if ALL in held else [g for g in inventory.gpus if str(g.index) not in held]
    if len(free) < count:
        raise GpuBusyError(
            f"--gpu-count {count}: only {len(free)} of {len(inventory.gpus)} GPUs are free"
            + (f" ({_holders_text(held)})" if held else ""),
            "wait for a GPU, pick GPUs with --gpus, or use --share-gpus",
        )
    by_load = sorted(free, key=lambda g: (g.memory_used_mib is None, g.memory_used_mib or 0, g.index))
    return tuple(str(i) for i in sorted(g.index for g in by_load[:count]))


def find_conflicts(wanted: Sequence[str], held: Mapping[str, str]) -> dict[str, str]:
    """The wanted device IDs someone already holds, mapped to the holder, in `wanted` order."""
    if ALL in held:
        return {i: held[ALL] for i in wanted}
    if ALL in wanted:
        return dict(held)
    return {i: held[i] for i in wanted if i in held}


def conflict_error(conflicts: Mapping[str, str]) -> GpuBusyError:
    """The refusal for a box whose GPUs are taken, naming who holds them."""
    if len(conflicts) == 1:
        ((gpu, holder),) = conflicts.items()
        message = f"GPU {gpu} is in use by {holder}"
    else:
        message = f"GPUs {', '.join(conflicts)} are in use ({_holders_text(conflicts)})"
    return GpuBusyError(message, CONFLICT_HINT)


def _holders_text(held: Mapping[str, str]) -> str:
    """GPUs grouped under each holder: "0, 1 by bob/train; 3 by alice/dev"."""
    by_holder: dict[str, list[str]] = {}
    for gpu, holder in held.items():
        by_holder.setdefault(holder, []).append(gpu)
    return "; ".join(f"{', '.join(gpus)} by {holder}" for holder, gpus in by_holder.items())


# --- rendering --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuRow:
    """One line of `devbox gpus`, every cell already a string."""

    index: str
    uuid: str
    name: str
    memory: str
    util: str
    temperature: str
    power: str
    mig: str
    holder: str
    pids: str


def gpu_rows(inventory: Inventory, holders: Mapping[str, str]) -> list[GpuRow]:
    """Table rows for `devbox gpus`; `holders` maps device ID to the box holding it."""
    return [
        GpuRow(
            index=str(gpu.index),
            uuid=gpu.uuid,
            name=gpu.name,
            memory=_memory_text(gpu),
            util="n/a" if gpu.utilization_pct is None else f"{gpu.utilization_pct} %",
            temperature="n/a" if gpu.temperature_c is None else f"{gpu.temperature_c} °C",
            power=_power_text(gpu),
            mig={True: "on", False: "off", None: ""}[gpu.mig],
            holder=_holder(gpu, holders) or "",
            pids=", ".join(str(p.pid) for p in inventory.processes_on(gpu)),
        )
        for gpu in inventory.gpus
    ]


def _memory_text(gpu: Gpu) -> str:
    if gpu.memory_used_mib is None and gpu.memory_total_mib is None:
        return "n/a"
    used = "?" if gpu.memory_used_mib is None else str(gpu.memory_used_mib)
    total = "?" if gpu.memory_total_mib is None else str(gpu.memory_total_mib)
    return f"{used} / {total} MiB"


def _power_text(gpu: Gpu) -> str:
    """Draw and limit in whole watts, "612 / 700 W"; just the draw when no limit is reported."""
    if gpu.power_draw_w is None and gpu.power_limit_w is None:
        return "n/a"
    draw = "?" if gpu.power_draw_w is None else f"{gpu.power_draw_w:.0f}"
    return f"{draw} W" if gpu.power_limit_w is None else f"{draw} / {gpu.power_limit_w:.0f} W"


def _holder(gpu: Gpu, holders: Mapping[str, str]) -> str | None:
    return holders.get(str(gpu.index), holders.get(ALL))


def inventory_to_json(inventory: Inventory, holders: Mapping[str, str]) -> dict[str, object]:
    """A JSON-ready dict for `devbox gpus --json`: raw numbers (null when unknown), holders, processes."""
    return {
        "gpus": [
            {
                "index": gpu.index,
                "uuid": gpu.uuid,
                "name": gpu.name,
                "memory_used_mib": gpu.memory_used_mib,
                "memory_total_mib": gpu.memory_total_mib,
                "utilization_pct": gpu.utilization_pct,
                "temperature_c": gpu.temperature_c,
                "power_draw_w": gpu.power_draw_w,
                "power_limit_w": gpu.power_limit_w,
                "mig": gpu.mig,
                "holder": _holder(gpu, holders),
                "processes": [
                    {"pid": p.pid, "process_name": p.process_name, "used_memory_mib": p.used_memory_mib}
                    for p in inventory.processes_on(gpu)
                ],
            }
            for gpu in inventory.gpus
        ]
    }
