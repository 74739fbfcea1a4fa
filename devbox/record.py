"""Environment records: what makes a box's runs reproducible, in a YAML file (`devbox record`),
and the options that recreate the box from it on any host (`devbox up --from FILE`).

A record pins the base image by its registry digest (`repo@sha256:…`), or by its image ID where
the image has none (built or imported on that engine: the ID exists there only). It holds the box's
options as they were given, the GPUs and driver it ran on, and the Python packages installed in it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from devbox import __version__, allocation, files, gpus
from devbox.engine import L, describe_error
from devbox.errors import DevboxError, UsageError

if TYPE_CHECKING:
    from devbox.boxes import Box
    from devbox.engine import Engine

FORMAT = 1
SUFFIX = ".devbox-record.yaml"
_ID = re.compile(r"sha256:[0-9a-f]{64}")
_DIGEST = re.compile(r"[^@\s]+@sha256:[0-9a-f]{64}")
_LOAD_HINT = "write it again with `devbox record BOX`"
T = TypeVar("T")

HEADER = """\
# devbox environment record of box {box}, taken on {machine} ({host}) at {recorded}.
# `devbox up --from THIS_FILE [NAME]` recreates the box on any host from the same base image and
# options (flags typed with it win) and says what differs there: GPU model, driver, CUDA.
# env holds the values the box got: check it for secrets before you share this file.
# packages: `pip freeze` and `conda list --export` in the box; null: not there.
"""

# Run in the box as its user. Exit 127: no python with pip (or no conda); the box's own PATH
# decides which python is "the" python, as it does for the user's shells and jobs.
_PIP = """\
for py in python3 python; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -m pip --version >/dev/null 2>&1; then
        exec "$py" -m pip freeze
    fi
done
exit 127
"""
_CONDA = """\
conda=$(command -v conda) || conda=${CONDA_EXE:-}
[ -n "$conda" ] && [ -x "$conda" ] || exit 127
exec "$conda" list --export
"""


@dataclass(frozen=True)
class ImageRecord:
    name: str  # as the box was made with (`--image`)
    id: str  # the base image's ID on the engine it was recorded on
    digest: str  # its registry digest, repo@sha256:…; "" when it has none
    layer: str  # the devbox layer image the box ran: devbox-layer:<hash of base ID and layer files>

    @property
    def pinned(self) -> str:
        """What `up --from` asks for: the digest, which any host can pull, else the ID."""
        return self.digest or self.id


@dataclass(frozen=True)
class GpuFacts:
    """A box's GPUs on its host, and the host's driver."""

    devices: tuple[str, ...] = ()  # host GPU indices the box holds ("all": every one)
    models: tuple[str, ...] = ()  # their model names, in device order
    driver: str = ""  # "" where nvidia-smi is missing or fails
    cuda: str = ""  # the newest CUDA version the driver supports


@dataclass(frozen=True)
class SpecRecord:
    """The box's options as they were given, in devbox.yaml's terms."""

    gpus: str | None = None  # --gpus (None with gpu_count)
    gpu_count: int | None = None
    share_gpus: bool = False
    mounts: tuple[str, ...] = ()  # SRC:DST:ro|rw; `~/` is the home of the login on the host
    env: tuple[tuple[str, str], ...] = ()
    shm_size: str = "8g"
    memory: str | None = None
    cpus: float | None = None
    workdir: str | None = None
    sudo: bool = True
    ports: tuple[str, ...] = ()
    user: str | None = None  # --user; None: the login's own name wherever the box is made


@dataclass(frozen=True)
class Packages:
    pip: tuple[str, ...] | None = None  # `pip freeze` lines; None: no python with pip
    conda: tuple[str, ...] | None = None  # `conda list --export` lines; None: no conda
    notes: tuple[str, ...] = ()  # what could not be recorded, and why


@dataclass(frozen=True)
class Record:
    box: str
    host: str  # the devbox host (`local`, `gpu1`)
    machine: str  # that host's name, as its Docker engine reports it
    recorded: str  # when, ISO 8601 in UTC
    devbox: str  # devbox's version
    image: ImageRecord
    gpus: GpuFacts
    spec: SpecRecord
    packages: Packages


def default_path(box: str) -> Path:
    return Path(f"{box}{SUFFIX}")


# ---------------------------------------------------------------- taking a record


def take(engine: Engine, box: Box) -> Record:
    """Record `box` (running: its packages are read from inside it) on `engine`'s host."""
    if not box.running:
        raise DevboxError(
            f"box {box.name!r} is {box.status}",
            f"start it with `devbox start {box.name}`: its packages are read from inside it",
        )
    container = _docker(
        engine, f"inspect box {box.name}", lambda: engine.client.api.inspect_container(box.container_id)
    )
    layer = _docker(
        engine, f"inspect {box.name}'s image", lambda: engine.client.api.inspect_image(container["Image"])
    )
    return Record(
        box=box.name,
        host=engine.host.name,
        machine=str(_docker(engine, "ask the engine", engine.client.info).get("Name") or engine.host.name),
        recorded=datetime.now(UTC).isoformat(timespec="seconds"),
        devbox=__version__,
        image=_image_record(engine, box, container, layer),
        gpus=gpu_facts(engine, box.gpus),
        spec=spec_of(container, box.ports, engine.home()),
        packages=_packages(engine, box),
    )


def _docker(engine: Engine, what: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except Exception as exc:  # docker's APIError, or the engine's connection going away
        raise DevboxError(f"cannot {what} on {engine.host.name}: {describe_error(exc)}") from None


def _image_record(engine: Engine, box: Box, container: dict, layer: dict) -> ImageRecord:
    """The base image the box's layer was built on: the one its `--image` names now, if that is
    still the image the layer was built from (a tag may have been re-pointed since)."""
    import docker

    tag = str((container.get("Config") or {}).get("Image") or "")
    try:
        base = engine.client.api.inspect_image(box.image) if box.image else None
    except docker.errors.NotFound:
        base = None
    except docker.errors.APIError as exc:
        raise DevboxError(f"cannot inspect image {box.image}: {describe_error(exc)}") from None
    if base is None or not built_on(layer, tag, base):
        raise DevboxError(
            f"image {box.image or '(unknown)'} on {engine.host.name} is no longer the one box {box.name} "
            "was made from (re-tagged, pulled anew or removed since)",
            f"recreate the box (`devbox rm {box.name}`, then `devbox up {box.name} --image {box.image}` "
            "with its other options; the home volume is kept) and record it again",
        )
    return ImageRecord(box.image, base["Id"], repo_digest(box.image, base.get("RepoDigests") or []), tag)


def built_on(layer: Mapping[str, Any], tag: str, base: Mapping[str, Any]) -> bool:
    """Whether devbox layer image `layer` (tagged `tag`) was built on image `base`."""
    from devbox.image import layer_files, layer_tag

    if tag == layer_tag(base["Id"], layer_files()):
        return True
    # A layer built by another devbox version (other layer files): the base's file system layers
    # are the layer image's first ones.
    ours = (layer.get("RootFS") or {}).get("Layers") or []
    theirs = (base.get("RootFS") or {}).get("Layers") or []
    return 0 < len(theirs) < len(ours) and ours[: len(theirs)] == theirs


def repo_digest(name: str, digests: list[str]) -> str:
    """The registry digest (repo@sha256:…) to pin image `name` by: the one of its own repository,
    else any it has; "" for an image no registry knows."""
    repo = name.split("@")[0]
    head, _, tail = repo.rpartition(":")
    if head and "/" not in tail:
        repo = head
    return next((d for d in digests if d.split("@")[0] == repo), digests[0] if digests else "")


def gpu_facts(engine: Engine, devices: tuple[str, ...]) -> GpuFacts:
    """The models of host GPUs `devices` and the host's driver; blank where nvidia-smi is not there."""
    inventory = allocation.inventory(engine, required=False)
    driver, cuda = gpus.read_versions(engine.run_on_host)
    return GpuFacts(devices, models_of(inventory, devices), driver, cuda)


def models_of(inventory: gpus.Inventory | None, devices: tuple[str, ...]) -> tuple[str, ...]:
    if inventory is None:
        return ()
    if devices == (gpus.ALL,):
        return tuple(g.name for g in inventory.gpus)
    by_index = {str(g.index): g.name for g in inventory.gpus}
    return tuple(by_index[d] for d in devices if d in by_index)


def spec_of(container: Mapping[str, Any], ports: tuple[str, ...], home: str) -> SpecRecord:
    """The options box `container` (docker inspect) was made with, from its devbox.spec label; env
    values from its environment (the label keeps only their digests)."""
    import json

    config = container.get("Config") or {}
    labels = config.get("Labels") or {}
    try:
        made = json.loads(labels.get(L("spec")) or "")
    except json.JSONDecodeError:
        made = None
    if not isinstance(made, dict):
        raise DevboxError(
            f"container {container.get('Name', '').lstrip('/')} has no readable devbox.spec label",
            "boxes made by older devbox versions lack it: recreate the box, then record it",
        )
    # Only the variables given with --env (the label names them); not devbox's own, nor the image's.
    given = {str(e).partition("=")[0] for e in made.get("env") or []}
    pairs = (str(e).partition("=") for e in config.get("Env") or [])
    env = tuple((k, v) for k, _, v in pairs if k in given)
    selection = str(made.get("gpus") or "none")
    count = re.fullmatch(r"(\d+) free", selection)
    return SpecRecord(
        gpus=None if count else selection,
        gpu_count=int(count[1]) if count else None,
        share_gpus=labels.get(L("share-gpus")) == "1",
        mounts=tuple(_home_relative(str(m), home) for m in made.get("mounts") or []),
        env=env,
        shm_size=str(made.get("shm_size") or "8g"),
        memory=made.get("memory"),
        cpus=made.get("cpus"),
        workdir=made.get("workdir"),
        sudo=made.get("sudo", True) is not False,
        ports=ports,
        user=_chosen_user(made.get("user"), labels.get(L("owner"), "")),
    )


def _chosen_user(made: Any, owner: str) -> str | None:
    """The login's name if --user chose it: not the name the owner's login gets by itself."""
    from devbox.users import box_user

    if not (isinstance(made, list) and len(made) == 3 and isinstance(made[0], str)):
        return None
    name, uid, gid = made
    if not isinstance(uid, int) or not isinstance(gid, int):
        return None
    return None if box_user(owner, uid, gid).name == name else name


def _home_relative(mount: str, home: str) -> str:
    """`/home/alice/data:/data:ro` as `~/data:/data:ro`: on another host `~` is that login's home."""
    prefix = home.rstrip("/") + "/"
    return "~/" + mount.removeprefix(prefix) if home.rstrip("/") and mount.startswith(prefix) else mount


def _packages(engine: Engine, box: Box) -> Packages:
    pip, pip_note = _listing(engine, box, _PIP, "pip", "no python with pip in the box")
    conda, conda_note = _listing(engine, box, _CONDA, "conda", None)  # most boxes have none: not news
    return Packages(pip, conda, tuple(n for n in (pip_note, conda_note) if n))


def _listing(
    engine: Engine, box: Box, script: str, tool: str, absent: str | None
) -> tuple[tuple[str, ...] | None, str | None]:
    """The lines `script` prints in the box, else None and a note saying why (`absent` when the
    box lacks `tool`): a box without it is recorded as such, never a failure."""
    code, out, err = _exec(engine, box, script)
    if code == 0:
        return tuple(line.rstrip() for line in out.splitlines() if line.strip()), None
    if code == 127:
        return None, absent and f"{absent}: no {tool} packages recorded"
    why = (err.strip() or out.strip() or f"exit {code}").splitlines()[-1][:200]
    return None, f"{tool} failed in the box ({why}): no {tool} packages recorded"


def _exec(engine: Engine, box: Box, script: str) -> tuple[int, str, str]:
    """Run `sh -c script` in the box as its user (docker exec, like jobs); exit code, out, err."""
    api = engine.client.api
    env = {"HOME": f"/home/{box.user}", "LC_ALL": "C", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

    def run() -> tuple[int, bytes, bytes]:
        created = api.exec_create(box.container_id, ["sh", "-c", script], user=box.user, environment=env)
        exec_id = created["Id"]
        out, err = api.exec_start(exec_id, demux=True)
        return api.exec_inspect(exec_id)["ExitCode"], out or b"", err or b""

    code, out, err = _docker(engine, f"read the packages in box {box.name}", run)
    return code, out.decode(errors="replace"), err.decode(errors="replace")


def notes(record: Record) -> list[str]:
    """What the person recording should know: what is missing, and what pins the image where."""
    said = list(record.packages.notes)
    if not record.image.digest:
        said.append(
            f"image {record.image.name} has no registry digest: the record pins its ID, which only "
            f"{record.machine}'s engine has; push it to a registry and record again to recreate "
            "the box elsewhere"
        )
    return said


# ---------------------------------------------------------------- recreating from a record


def spec_flags(record: Record) -> dict[str, object]:
    """The keyword values of `spec.from_flags` that recreate the recorded box (image pinned)."""
    s = record.spec
    return {
        "name": record.box,
        "image": record.image.pinned,
        "gpus_text": s.gpus,
        "gpu_count": s.gpu_count,
        "share_gpus": s.share_gpus,
        "mounts": s.mounts,
        "envs": tuple(f"{k}={v}" for k, v in s.env),
        "shm_size": s.shm_size,
        "memory": s.memory,
        "cpus": s.cpus,
        "workdir": s.workdir,
        "sudo": s.sudo,
        "ports": s.ports,
        "user": s.user,
    }


def require_image(record: Record, engine: Engine, path: Path) -> None:
    """Refuse a record pinning an image by ID on an engine that does not have it: IDs cannot be
    pulled, so only the engine that built or imported the image can recreate the box."""
    import docker

    if record.image.digest:
        return
    try:
        engine.client.api.inspect_image(record.image.id)
        return
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        raise DevboxError(f"cannot inspect image {record.image.id}: {describe_error(exc)}") from None
    raise UsageError(
        f"{path} pins image {record.image.name} by its ID {record.image.id[:19]}…, which only "
        f"{record.machine} ({record.host}) has: an image without a registry digest cannot be pulled",
        f"push the image to a registry from {record.host} (`docker tag`, `docker push`), then "
        f"`devbox record {record.box}` again; or give --image",
    )


def diff(record: Record, engine: Engine, box: Box) -> list[str]:
    """What differs for `box` (recreated from `record`) on `engine`'s host, one line each."""
    return differences(record, gpu_facts(engine, box.gpus), __version__)


def differences(record: Record, here: GpuFacts, version: str) -> list[str]:
    """Lines saying what differs between the recorded box's GPUs, driver and devbox and `here`."""
    said = []
    if record.devbox != version:
        said.append(f"recorded with devbox {record.devbox}, here devbox {version}")
    was = record.gpus
    if not was.devices:
        return said  # a box without GPUs does not use the driver
    where = f"recorded on {record.machine}"
    if was.models and was.models != here.models:
        said.append(f"{where} with GPUs {_models(was.models)}, here {_models(here.models)}")
    if was.driver and was.driver != here.driver:
        said.append(f"{where} with driver {was.driver}, here {_driver(here.driver)}")
    if was.cuda and was.cuda != here.cuda and here.driver:
        said.append(f"{where} with CUDA {was.cuda}, here CUDA {here.cuda or 'unknown'}")
    return said


def _models(models: tuple[str, ...]) -> str:
    """'2× NVIDIA H100 80GB HBM3'; 'none' for no GPUs."""
    return ", ".join(f"{n}× {m}" for m, n in Counter(models).items()) or "none"


def _driver(version: str) -> str:
    return f"driver {version}" if version else "no NVIDIA driver (nvidia-smi not found or failing)"


# ---------------------------------------------------------------- the file


def check_writable(path: Path, overwrite: bool) -> None:
    """Refuse to replace an existing file unless told to, before anything is recorded."""
    if path.exists() and not overwrite:
        raise UsageError(f"{path} already exists", "pass --force to replace it, or -o another file")


def write(record: Record, path: Path, *, overwrite: bool = False) -> None:
    """Write `record` to `path` (0600: env values may be secrets); never over an existing file
    unless `overwrite`."""
    check_writable(path, overwrite)
    try:
        files.atomic_write(path, dump(record))
    except OSError as exc:
        raise UsageError(
            f"cannot write {path}: {exc.strerror or exc}", "pick a folder you can write"
        ) from None


def dump(record: Record) -> str:
    """The record as commented YAML."""
    import yaml

    image, hw, s, pk = record.image, record.gpus, record.spec, record.packages
    data = {
        "format": FORMAT,
        "box": record.box,
        "host": record.host,
        "machine": record.machine,
        "recorded": record.recorded,
        "devbox": record.devbox,
        "image": {"name": image.name, "id": image.id, "digest": image.digest or None, "layer": image.layer},
        "gpus": {
            "devices": list(hw.devices),
            "models": list(hw.models),
            "driver": hw.driver,
            "cuda": hw.cuda,
        },
        "spec": {
            "gpus": s.gpus,
            "gpu_count": s.gpu_count,
            "share_gpus": s.share_gpus,
            "mounts": list(s.mounts),
            "env": dict(s.env),
            "shm_size": s.shm_size,
            "memory": s.memory,
            "cpus": s.cpus,
            "workdir": s.workdir,
            "sudo": s.sudo,
            "ports": list(s.ports),
            "user": s.user,
        },
        "packages": {
            "pip": None if pk.pip is None else list(pk.pip),
            "conda": None if pk.conda is None else list(pk.conda),
            "notes": list(pk.notes),
        },
    }
    header = HEADER.format(box=record.box, machine=record.machine, host=record.host, recorded=record.recorded)
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)


def load(path: Path) -> Record:
    """Read and check a record; every problem is one UsageError line naming the file."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such record file", "`devbox record BOX` writes one") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}", _LOAD_HINT) from None
    try:
        data = files.load_yaml(text)
    except yaml.YAMLError as exc:
        raise UsageError(files.yaml_problem(path, exc), _LOAD_HINT) from None
    except RecursionError:
        # PyYAML's composer recurses once per nesting level; a record nests three levels.
        raise UsageError(f"{path}: not valid YAML: nested too deeply", _LOAD_HINT) from None
    record = _Reader(path).record(data)
    _check_spec(record, path)
    return record


def _check_spec(record: Record, path: Path) -> None:
    """The record's options must make a valid box here too: refused now, naming the file."""
    from devbox.spec import HostFacts, from_flags

    try:
        from_flags(**spec_flags(record), facts=HostFacts.unchecked())  # type: ignore[arg-type]
    except UsageError as exc:
        raise UsageError(f"{path}: {exc.message}", exc.hint or _LOAD_HINT) from None


_REQUIRED = object()


@dataclass(frozen=True)
class _Reader:
    """Typed reads from a loaded record; a wrong or missing value is one line naming file and key."""

    path: Path

    def bad(self, key: str, problem: str) -> UsageError:
        return UsageError(f"{self.path}: {key}: {problem}", _LOAD_HINT)

    def record(self, data: object) -> Record:
        if not isinstance(data, dict) or "format" not in data:
            raise UsageError(
                f"{self.path}: not a devbox record (no `format:` key)", "`devbox record BOX` writes one"
            )
        if type(data["format"]) is not int or data["format"] != FORMAT:
            raise UsageError(
                f"{self.path}: a record of format {data['format']!r}; this devbox reads format {FORMAT}",
                "use the devbox version that wrote it, or record the box again",
            )
        image, hw, s = (self.section(data, k) for k in ("image", "gpus", "spec"))
        pk = self.section(data, "packages", required=False)
        return Record(
            box=self.value(data, "box", str),
            host=self.value(data, "host", str, ""),
            machine=self.value(data, "machine", str, ""),
            recorded=self.value(data, "recorded", str, ""),
            devbox=self.value(data, "devbox", str, ""),
            image=ImageRecord(
                self.value(image, "image.name", str),
                self.matching(image, "image.id", _ID, "an image ID, sha256: and 64 hex digits"),
                self.matching(image, "image.digest", _DIGEST, "a digest, repo@sha256:…", required=False),
                self.value(image, "image.layer", str, ""),
            ),
            gpus=GpuFacts(
                self.texts(hw, "gpus.devices"),
                self.texts(hw, "gpus.models"),
                self.value(hw, "gpus.driver", str, ""),
                self.value(hw, "gpus.cuda", str, ""),
            ),
            spec=SpecRecord(
                gpus=self.value(s, "spec.gpus", str, None),
                gpu_count=self.value(s, "spec.gpu_count", int, None),
                share_gpus=self.value(s, "spec.share_gpus", bool, False),
                mounts=self.texts(s, "spec.mounts"),
                env=self.env(s, "spec.env"),
                shm_size=self.value(s, "spec.shm_size", str, "8g"),
                memory=self.value(s, "spec.memory", str, None),
                cpus=self.value(s, "spec.cpus", (int, float), None),
                workdir=self.value(s, "spec.workdir", str, None),
                sudo=self.value(s, "spec.sudo", bool, True),
                ports=self.texts(s, "spec.ports"),
                user=self.value(s, "spec.user", str, None),
            ),
            packages=Packages(
                self.texts(pk, "packages.pip", none=True),
                self.texts(pk, "packages.conda", none=True),
                self.texts(pk, "packages.notes"),
            ),
        )

    def section(self, data: dict, key: str, required: bool = True) -> dict:
        found = data.get(key)
        if found is None and not required:
            return {}
        if not isinstance(found, dict):
            raise self.bad(key, "missing" if found is None else f"must be a mapping, not {_kind(found)}")
        return found

    def value(self, data: dict, key: str, kinds: type | tuple[type, ...], default: Any = _REQUIRED) -> Any:
        found = data.get(key.rpartition(".")[2])
        if found is None:
            if default is _REQUIRED:
                raise self.bad(key, "missing")
            return default
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        # bool is an int to Python, never to a record.
        if not isinstance(found, kinds) or (isinstance(found, bool) and bool not in kinds):
            raise self.bad(key, f"must be {' or '.join(_NAMES[k] for k in kinds)}, not {_kind(found)}")
        return found

    def matching(
        self, data: dict, key: str, pattern: re.Pattern[str], what: str, required: bool = True
    ) -> str:
        found = self.value(data, key, str, _REQUIRED if required else "")
        if found and not pattern.fullmatch(found):
            raise self.bad(key, f"{found!r} is not {what}")
        return found

    def texts(self, data: dict, key: str, none: bool = False) -> Any:
        found = data.get(key.rpartition(".")[2])
        if found is None:
            return None if none else ()
        if not isinstance(found, list) or not all(isinstance(v, str) for v in found):
            raise self.bad(key, f"must be a list of text, not {_kind(found)}")
        return tuple(found)

    def env(self, data: dict, key: str) -> tuple[tuple[str, str], ...]:
        found = data.get(key.rpartition(".")[2]) or {}
        if not isinstance(found, dict):
            raise self.bad(key, f"must be a mapping of NAME: value, not {_kind(found)}")
        for k, v in found.items():
            if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, str | int | float):
                raise self.bad(f"{key}.{k}", "must be text or a number")
        return tuple((k, str(v)) for k, v in found.items())


_NAMES = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "true/false" if isinstance(value, bool) else f"{type(value).__name__} {value!r}"[:60]
