"""Environment records: taking one from a box (a fake engine answering as Docker does, the fake
nvidia-smi, the package scripts run by a real sh), the YAML round trip, the options that recreate
the box, what differs on another host, and bad record files as one line naming the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import docker
import pytest

from devbox import __version__, gpus, record
from devbox.errors import DevboxError
from devbox.hosts import LOCAL_HOST
from devbox.image import layer_files, layer_tag
from devbox.record import GpuFacts, ImageRecord, Packages, Record, SpecRecord
from devbox.spec import HostFacts, from_flags
from devbox.users import LoginUser

from .conftest import make_box, usage_error

ROOT = Path(__file__).resolve().parents[2]
FAKE_SMI = ROOT / "tests" / "fakes" / "nvidia-smi"
BASE_ID = "sha256:" + "ab" * 32
DIGEST = "pytorch/pytorch@sha256:" + "cd" * 32
LAYER_ID = "sha256:" + "ef" * 32
HOME = "/home/alice"
ALICE = LoginUser("alice", 1000, 1000)
IMAGE_ENV = ["PATH=/opt/conda/bin:/usr/bin:/bin", "CUDA_VERSION=12.4.1", "LANG=C.UTF-8"]


def facts(home: str = HOME, user: LoginUser = ALICE) -> HostFacts:
    return HostFacts(user, home, exists=lambda _path: True)


def made_spec(**flags: Any):
    """The BoxSpec a box was made from, as `up` builds it on its host."""
    base: dict[str, Any] = {
        "name": "train",
        "image": "pytorch/pytorch:2.4.0",
        "gpu_count": 2,
        "mounts": [f"{HOME}/data:/workspace/data:ro", "/scratch:/scratch"],
        "envs": ["WANDB_PROJECT=mnist", "GREETING=hello there", "LANG=en_US.UTF-8"],
        "shm_size": "16g",
        "memory": "64g",
        "cpus": 8.0,
        "workdir": "/workspace",
        "ports": ["8888", "6006:16006"],
    }
    return from_flags(**{**base, **flags}, facts=facts())


def fake_smi(args: list[str]) -> str:
    """Run tests/fakes/nvidia-smi in place of the `nvidia-smi` the args name."""
    return gpus.local_runner([str(FAKE_SMI), *args[1:]])


class FakeApi:
    """Docker's low-level API as `record` uses it: inspect, info, and exec run here with `sh`."""

    def __init__(self, containers: dict, images: dict, path: str) -> None:
        self.containers, self.images, self.path = containers, images, path
        self.execs: dict[str, dict] = {}

    def inspect_container(self, ref: str) -> dict:
        return self.containers[ref]

    def inspect_image(self, ref: str) -> dict:
        if ref not in self.images:
            raise docker.errors.ImageNotFound(f"No such image: {ref}")
        return self.images[ref]

    def exec_create(self, container: str, cmd: list[str], user: str, environment: dict) -> dict:
        assert cmd[:2] == ["sh", "-c"] and user == "alice"
        exec_id = f"exec{len(self.execs)}"
        self.execs[exec_id] = {"cmd": ["/bin/sh", *cmd[1:]], "env": {**environment, "PATH": self.path}}
        return {"Id": exec_id}

    def exec_start(self, exec_id: str, demux: bool) -> tuple[bytes, bytes]:
        done = subprocess.run(self.execs[exec_id]["cmd"], env=self.execs[exec_id]["env"], capture_output=True)
        self.execs[exec_id]["code"] = done.returncode
        return done.stdout or None, done.stderr or None  # type: ignore[return-value]

    def exec_inspect(self, exec_id: str) -> dict:
        return {"ExitCode": self.execs[exec_id]["code"]}


class FakeClient:
    def __init__(self, api: FakeApi) -> None:
        self.api = api

    def info(self) -> dict:
        return {"Name": "gpu-node-7"}


class FakeEngine:
    def __init__(self, api: FakeApi, run_on_host=fake_smi, home: str = HOME) -> None:
        self.client = FakeClient(api)
        self.host = LOCAL_HOST
        self.run_on_host = run_on_host
        self._home = home

    def home(self) -> str:
        return self._home


def tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A box's PATH: python3 with pip and conda answering as they do."""
    folder = tmp_path / "bin"
    folder.mkdir()
    tool(
        folder,
        "python3",
        'case "$*" in\n'
        '"-m pip --version") echo "pip 24.0 from /opt/conda/lib/python3.11" ;;\n'
        '"-m pip freeze") printf "numpy==1.26.4\\ntorch==2.4.0\\n" ;;\n'
        "*) exit 2 ;;\nesac\n",
    )
    tool(folder, "conda", 'printf "# platform: linux-64\\npython=3.11.9=h955ad1f_0\\n"\n')
    return folder


def box_container(spec, device_ids: tuple[str, ...] = ("1", "3")) -> dict:
    """What `docker inspect` says of a box made from `spec` (boxes._create_args' labels and env)."""
    env = {
        "DEVBOX_USER": "alice",
        "DEVBOX_UID": "1000",
        "DEVBOX_GID": "1000",
        "DEVBOX_SUDO": "1",
        "DEVBOX_WORKDIR": spec.workdir or "",
        **dict(spec.env),
    }
    merged = dict(e.split("=", 1) for e in IMAGE_ENV) | env  # Docker: the container's values win
    labels = {
        "devbox.name": spec.name,
        "devbox.owner": "alice",
        "devbox.spec": json.dumps(spec.fingerprint(), sort_keys=True),
        "devbox.share-gpus": "1" if spec.share_gpus else "0",
        "devbox.ports": ",".join(spec.ports),
        "devbox.gpus": ",".join(device_ids),
    }
    return {
        "Name": f"/devbox-alice.{spec.name}",
        "Image": LAYER_ID,
        "Config": {
            "Image": layer_tag(BASE_ID, layer_files()),
            "Labels": labels,
            "Env": [f"{k}={v}" for k, v in merged.items()],
        },
    }


def images(digests: list[str] | None = None) -> dict:
    base = {"Id": BASE_ID, "RepoDigests": [DIGEST] if digests is None else digests, "RootFS": {}}
    layer = {"Id": LAYER_ID, "RootFS": {"Layers": ["sha256:l1", "sha256:l2"]}}
    return {"pytorch/pytorch:2.4.0": base, BASE_ID: base, LAYER_ID: layer}


def take(spec, path: str, *, digests: list[str] | None = None, run_on_host=fake_smi) -> Record:
    api = FakeApi({"c0ffee": box_container(spec)}, images(digests), path)
    box = make_box(
        spec.name, gpus=("1", "3"), image=spec.image, container_id="c0ffee", ports=spec.ports, user="alice"
    )
    return record.take(FakeEngine(api, run_on_host), box)  # type: ignore[arg-type]


def sample(**changes: Any) -> Record:
    rec = Record(
        box="train",
        host="gpu1",
        machine="gpu-node-7",
        recorded="2025-03-01T12:00:00+00:00",
        devbox=__version__,
        image=ImageRecord("pytorch/pytorch:2.4.0", BASE_ID, DIGEST, "devbox-layer:0123456789abcdef01234567"),
        gpus=GpuFacts(("1", "3"), ("NVIDIA H100 80GB HBM3",) * 2, "550.54.15", "12.4"),
        spec=SpecRecord(
            gpu_count=2,
            mounts=("~/data:/workspace/data:ro", "/scratch:/scratch:rw"),
            env=(("WANDB_PROJECT", "mnist"), ("GREETING", "hello there: 'quoted' # not a comment")),
            shm_size="16g",
            memory="64g",
            cpus=8.0,
            workdir="/workspace",
            ports=("8888", "6006:16006"),
        ),
        packages=Packages(("numpy==1.26.4",), None, ("no conda",)),
    )
    return replace(rec, **changes)


# ---------------------------------------------------------------- taking a record


def test_a_record_holds_the_image_digest_gpus_driver_options_and_packages(bin_dir: Path) -> None:
    rec = take(made_spec(), str(bin_dir))
    assert rec.box == "train" and rec.machine == "gpu-node-7" and rec.devbox == __version__
    assert rec.image == ImageRecord(
        "pytorch/pytorch:2.4.0", BASE_ID, DIGEST, layer_tag(BASE_ID, layer_files())
    )
    assert rec.gpus == GpuFacts(("1", "3"), ("NVIDIA H100 80GB HBM3",) * 2, "550.54.15", "12.4")
    assert rec.spec == SpecRecord(
        gpu_count=2,
        mounts=("~/data:/workspace/data:ro", "/scratch:/scratch:rw"),
        # The --env values only: not devbox's DEVBOX_*, nor the image's PATH; LANG as given.
        env=(("LANG", "en_US.UTF-8"), ("WANDB_PROJECT", "mnist"), ("GREETING", "hello there")),
        shm_size="16g",
        memory="64g",
        cpus=8.0,
        workdir="/workspace",
        ports=("8888", "6006:16006"),
    )
    assert rec.packages == Packages(
        ("numpy==1.26.4", "torch==2.4.0"), ("# platform: linux-64", "python=3.11.9=h955ad1f_0"), ()
    )
    assert record.notes(rec) == []


def test_a_box_without_python_or_conda_records_none_and_says_so(tmp_path: Path) -> None:
    rec = take(made_spec(), str(tmp_path))  # an empty PATH: no python, no pip, no conda
    assert rec.packages.pip is None and rec.packages.conda is None
    assert record.notes(rec) == ["no python with pip in the box: no pip packages recorded"]


def test_a_failing_pip_freeze_is_a_note_not_a_failure(tmp_path: Path) -> None:
    tool(tmp_path, "python3", '[ "$*" = "-m pip --version" ] && exit 0\necho "pip is broken" >&2\nexit 1\n')
    rec = take(made_spec(), str(tmp_path))
    assert rec.packages.pip is None
    assert record.notes(rec) == ["pip failed in the box (pip is broken): no pip packages recorded"]


def test_an_image_without_a_registry_digest_is_pinned_by_id_and_said(tmp_path: Path) -> None:
    rec = take(made_spec(), str(tmp_path), digests=[])
    assert rec.image.digest == "" and rec.image.pinned == BASE_ID
    assert any("has no registry digest" in n and "gpu-node-7" in n for n in record.notes(rec))


def test_a_host_without_nvidia_smi_records_no_models_or_driver(tmp_path: Path) -> None:
    def missing(args: list[str]) -> str:
        raise FileNotFoundError(args[0])

    rec = take(made_spec(), str(tmp_path), run_on_host=missing)
    assert rec.gpus == GpuFacts(("1", "3"), (), "", "")


def test_a_stopped_box_is_refused_with_how_to_start_it() -> None:
    box = make_box("train", status="exited")
    with pytest.raises(DevboxError) as caught:
        record.take(FakeEngine(FakeApi({}, {}, "")), box)  # type: ignore[arg-type]
    assert "is exited" in caught.value.message and "devbox start train" in (caught.value.hint or "")


def test_a_base_tag_pointing_elsewhere_now_is_refused_rather_than_recorded_wrongly(tmp_path: Path) -> None:
    spec = made_spec()
    other = {"Id": "sha256:" + "99" * 32, "RepoDigests": [], "RootFS": {"Layers": ["sha256:x"]}}
    api = FakeApi({"c0ffee": box_container(spec)}, {**images(), "pytorch/pytorch:2.4.0": other}, "")
    box = make_box("train", image=spec.image, container_id="c0ffee", user="alice")
    with pytest.raises(DevboxError, match="is no longer the one box train was made from"):
        record.take(FakeEngine(api), box)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("base_layers", "built"),
    [(["sha256:l1"], True), (["sha256:l1", "sha256:l2"], False), (["sha256:zz"], False), ([], False)],
)
def test_a_layer_from_another_devbox_version_is_matched_by_its_base_s_file_system_layers(
    base_layers: list[str], built: bool
) -> None:
    layer = {"RootFS": {"Layers": ["sha256:l1", "sha256:l2"]}}
    base = {"Id": BASE_ID, "RootFS": {"Layers": base_layers}}
    assert record.built_on(layer, "devbox-layer:made-by-another-version", base) is built


@pytest.mark.parametrize(
    ("name", "digests", "pinned"),
    [
        ("ubuntu:24.04", ["other@sha256:1", "ubuntu@sha256:2"], "ubuntu@sha256:2"),
        ("localhost:5000/team/img", ["localhost:5000/team/img@sha256:3"], "localhost:5000/team/img@sha256:3"),
        ("ubuntu@sha256:4", ["ubuntu@sha256:4"], "ubuntu@sha256:4"),
        ("docker.io/library/ubuntu:24.04", ["ubuntu@sha256:5"], "ubuntu@sha256:5"),
        ("built-here:latest", [], ""),
    ],
)
def test_the_digest_of_the_image_s_own_repository_is_preferred(
    name: str, digests: list[str], pinned: str
) -> None:
    assert record.repo_digest(name, digests) == pinned


@pytest.mark.parametrize(
    ("env", "versions"),
    [
        ({}, ("550.54.15", "12.4")),
        ({"FAKE_NVIDIA_SMI_DRIVER": "570.86.15", "FAKE_NVIDIA_SMI_CUDA": "12.8"}, ("570.86.15", "12.8")),
    ],
)
def test_driver_and_cuda_versions_are_read_from_plain_nvidia_smi(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], versions: tuple[str, str]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert gpus.read_versions(fake_smi) == versions


def test_a_driver_that_shows_no_cuda_version_reads_as_blank() -> None:
    header = "| NVIDIA-SMI 418.87.01    Driver Version: 418.87.01    CUDA Version: N/A      |"
    assert gpus.parse_versions(header) == ("418.87.01", "")
    assert gpus.parse_versions("No devices were found") == ("", "")


# ---------------------------------------------------------------- the file


def test_a_record_survives_the_yaml_round_trip(tmp_path: Path) -> None:
    rec = sample()
    path = tmp_path / "train.devbox-record.yaml"
    record.write(rec, path)
    assert record.load(path) == rec
    text = path.read_text()
    assert text.startswith("# devbox environment record of box train, taken on gpu-node-7 (gpu1)")
    assert "  cuda: '12.4'\n" in text and "  pip:\n  - numpy==1.26.4\n" in text
    assert path.stat().st_mode & 0o777 == 0o600  # env values may be secrets


def test_a_record_without_a_digest_or_packages_survives_the_round_trip_too(tmp_path: Path) -> None:
    rec = sample(
        image=ImageRecord("built-here:latest", BASE_ID, "", ""),
        gpus=GpuFacts(),
        spec=SpecRecord(gpus="all", share_gpus=True, sudo=False, cpus=0.5),
        packages=Packages(),
    )
    path = tmp_path / "r.yaml"
    record.write(rec, path)
    assert record.load(path) == rec


def test_an_existing_file_is_never_replaced_without_being_told(tmp_path: Path) -> None:
    path = tmp_path / "train.devbox-record.yaml"
    path.write_text("mine\n")
    error = usage_error(record.write, sample(), path)
    assert error.message == f"{path} already exists" and "--force" in (error.hint or "")
    assert path.read_text() == "mine\n"
    record.write(sample(), path, overwrite=True)
    assert record.load(path) == sample()


def test_the_default_file_is_named_after_the_box_in_this_directory() -> None:
    assert record.default_path("train") == Path("train.devbox-record.yaml")


# ---------------------------------------------------------------- recreating


def test_spec_flags_pin_the_digest_and_recreate_the_same_spec(bin_dir: Path) -> None:
    made = made_spec()
    flags = record.spec_flags(take(made, str(bin_dir)))
    assert flags["name"] == "train" and flags["image"] == DIGEST
    again = from_flags(**flags, facts=facts())  # type: ignore[arg-type]
    assert again.fingerprint() == {**made.fingerprint(), "image": DIGEST}
    assert again.ports == made.ports and again.env == (
        ("LANG", "en_US.UTF-8"),
        ("WANDB_PROJECT", "mnist"),
        ("GREETING", "hello there"),
    )


def test_spec_flags_pin_the_image_id_where_there_is_no_digest() -> None:
    rec = sample(image=ImageRecord("built-here:latest", BASE_ID, "", ""))
    assert record.spec_flags(rec)["image"] == BASE_ID


def test_home_mounts_follow_the_login_to_another_host(bin_dir: Path) -> None:
    flags = record.spec_flags(take(made_spec(), str(bin_dir)))
    bob_facts = facts("/srv/home/bob", LoginUser("bob", 2000, 2000))
    bob = from_flags(**flags, facts=bob_facts)  # type: ignore[arg-type]
    assert sorted(str(m) for m in bob.mounts) == [
        "/scratch:/scratch:rw",
        "/srv/home/bob/data:/workspace/data:ro",
    ]


def test_a_login_name_chosen_with_user_is_recorded_and_follows_to_another_host(bin_dir: Path) -> None:
    assert take(made_spec(), str(bin_dir)).spec.user is None  # the owner's own name: each host's own
    rec = take(made_spec(user="vscode"), str(bin_dir))
    assert rec.spec.user == "vscode"
    bob = from_flags(**record.spec_flags(rec), facts=facts("/srv/home/bob", LoginUser("bob", 2000, 2000)))  # type: ignore[arg-type]
    assert bob.user == LoginUser("vscode", 2000, 2000)


def test_a_record_with_a_login_name_survives_the_round_trip(tmp_path: Path) -> None:
    rec = sample(spec=SpecRecord(gpus="0", user="vscode"))
    record.write(rec, tmp_path / "r.yaml")
    assert record.load(tmp_path / "r.yaml") == rec


@pytest.mark.parametrize(
    ("selection", "flags"),
    [
        ({"gpus_text": "0,2"}, {"gpus_text": "0,2", "gpu_count": None}),
        ({"gpus_text": "all"}, {"gpus_text": "all", "gpu_count": None}),
        ({"gpus_text": None}, {"gpus_text": "none", "gpu_count": None}),
        ({"gpu_count": 3}, {"gpus_text": None, "gpu_count": 3}),
    ],
)
def test_the_gpu_request_is_recorded_as_it_was_given(
    tmp_path: Path, selection: dict[str, Any], flags: dict[str, Any]
) -> None:
    spec = made_spec(**{"gpu_count": None, **selection})
    got = record.spec_flags(take(spec, str(tmp_path)))
    assert {k: got[k] for k in flags} == flags


def test_nothing_differs_on_the_host_it_was_recorded_on() -> None:
    rec = sample()
    assert record.differences(rec, rec.gpus, __version__) == []


def test_another_driver_gpu_model_and_cuda_are_each_one_line() -> None:
    here = GpuFacts(("0", "1"), ("NVIDIA A100-SXM4-80GB",) * 2, "535.104.05", "12.2")
    assert record.differences(sample(), here, __version__) == [
        "recorded on gpu-node-7 with GPUs 2× NVIDIA H100 80GB HBM3, here 2× NVIDIA A100-SXM4-80GB",
        "recorded on gpu-node-7 with driver 550.54.15, here driver 535.104.05",
        "recorded on gpu-node-7 with CUDA 12.4, here CUDA 12.2",
    ]


def test_a_host_without_a_driver_is_said_once() -> None:
    assert record.differences(sample(), GpuFacts(("0", "1")), __version__) == [
        "recorded on gpu-node-7 with GPUs 2× NVIDIA H100 80GB HBM3, here none",
        "recorded on gpu-node-7 with driver 550.54.15, "
        "here no NVIDIA driver (nvidia-smi not found or failing)",
    ]


def test_a_box_without_gpus_has_no_driver_to_differ_but_devbox_versions_still_do() -> None:
    rec = sample(gpus=GpuFacts((), (), "550.54.15", "12.4"), devbox="0.0.9")
    assert record.differences(rec, GpuFacts(), __version__) == [
        f"recorded with devbox 0.0.9, here devbox {__version__}"
    ]


def test_an_image_id_the_engine_lacks_is_one_line_pointing_at_a_registry(tmp_path: Path) -> None:
    rec = sample(image=ImageRecord("built-here:latest", BASE_ID, "", ""))
    path = tmp_path / "r.yaml"
    error = usage_error(record.require_image, rec, FakeEngine(FakeApi({}, {}, "")), path)
    assert error.message.startswith(f"{path} pins image built-here:latest by its ID sha256:abababab")
    assert "push the image to a registry" in (error.hint or "")
    record.require_image(rec, FakeEngine(FakeApi({}, images(), "")), path)  # type: ignore[arg-type]
    record.require_image(sample(), FakeEngine(FakeApi({}, {}, "")), path)  # type: ignore[arg-type]


# ---------------------------------------------------------------- bad record files


def _valid(tmp_path: Path) -> str:
    path = tmp_path / "good.yaml"
    record.write(sample(), path)
    return path.read_text()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: "", "not a devbox record (no `format:` key)"),
        (lambda t: "- a\n- list\n", "not a devbox record (no `format:` key)"),
        (lambda t: t.replace("format: 1", "format: 2"), "a record of format 2; this devbox reads format 1"),
        (lambda t: t.replace("box: train", "box: [train"), ":8: not valid YAML"),
        (lambda t: t.replace("box: train\n", ""), "box: missing"),
        (lambda t: t.replace("  id: sha256:", "  id: md5:"), "image.id: 'md5:"),
        (
            lambda t: t.replace("  shm_size: 16g", "  shm_size: [16g]"),
            "spec.shm_size: must be text, not a list",
        ),
        (
            lambda t: t.replace("  sudo: true", "  sudo: 'yes'"),
            "spec.sudo: must be true or false, not str 'yes'",
        ),
        (
            lambda t: t.replace("  mounts:\n", "  mounts: 3\n  was_mounts:\n"),
            "spec.mounts: must be a list of text",
        ),
        (lambda t: t.replace("  shm_size: 16g", "  shm_size: lots"), "invalid --shm-size 'lots'"),
        (lambda t: t.replace("  WANDB_PROJECT: mnist", "  DEVBOX_X: mnist"), "--env DEVBOX_X is reserved"),
        (lambda t: t.replace("spec:", "spec: 1\nold_spec:"), "spec: must be a mapping, not int 1"),
    ],
)
def test_a_bad_record_is_one_line_naming_the_file(tmp_path: Path, edit, message: str) -> None:
    path = tmp_path / "bad.devbox-record.yaml"
    path.write_text(edit(_valid(tmp_path)))
    error = usage_error(record.load, path)
    assert error.message.startswith(str(path)), error.message
    assert message in error.message, error.message


def test_a_missing_record_is_one_line_naming_the_file(tmp_path: Path) -> None:
    error = usage_error(record.load, tmp_path / "nope.yaml")
    assert error.message == f"{tmp_path / 'nope.yaml'}: no such record file"


def _devbox(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI as `devbox` runs it (in-process code, this interpreter), with no engine to reach."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVBOX_", "DOCKER_"))}
    env.update(HOME=str(cwd), DOCKER_HOST="unix:///nonexistent.sock", NO_COLOR="1", COLUMNS="200")
    code = "import sys; from devbox.cli import main; sys.argv[0] = 'devbox'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


def test_up_from_a_bad_record_exits_2_with_one_line_before_any_engine_is_asked(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("format: 1\nbox: x\n")
    for name, message in (("missing.yaml", "no such record file"), ("bad.yaml", "image: missing")):
        proc = _devbox("up", "--from", name, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.splitlines()
        assert line.startswith(f"error: {name}: ") and message in line, line


def test_record_refuses_an_existing_file_before_asking_any_engine(tmp_path: Path) -> None:
    (tmp_path / "train.devbox-record.yaml").write_text("mine\n")
    proc = _devbox("record", "train", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: train.devbox-record.yaml already exists — pass --force"), line


def test_up_from_fills_every_option_not_typed_pins_the_image_and_warns_of_differences(
    tmp_path: Path, clean_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from devbox import boxes, cli
    from devbox.engine import Engine

    data = tmp_path / "data"
    data.mkdir()
    rec = sample(
        image=ImageRecord("built-here:latest", BASE_ID, "", ""),
        spec=replace(sample().spec, mounts=(f"{data}:/workspace/data:ro",)),
    )
    path = tmp_path / "train.devbox-record.yaml"
    record.write(rec, path)
    engine = FakeEngine(FakeApi({}, images(), ""))
    engine.facts = HostFacts.local  # type: ignore[attr-defined]
    monkeypatch.setattr(Engine, "connect", classmethod(lambda _cls, host, **_kw: engine))
    made: list[Any] = []

    def up(_engine, spec, _identity, **options):
        made.append((spec, options["given"]))
        box = make_box(spec.name, gpus=("0", "2"), image=spec.image, host="local")
        return boxes.UpResult(box, True, None, None)

    monkeypatch.setattr(boxes, "up", up)
    monkeypatch.setenv("FAKE_NVIDIA_SMI_DRIVER", "535.104.05")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nvidia-smi").symlink_to(FAKE_SMI)

    done = CliRunner().invoke(
        cli.cli, ["up", "again", "--from", str(path), "--shm-size", "4g", "--host", "local"]
    )
    assert done.exit_code == 0, done.output
    ((spec, given),) = made
    assert spec.name == "again" and spec.image == BASE_ID  # NAME typed wins; the image pinned
    assert spec.shm_size == "4g" and spec.memory == "64g" and spec.cpus == 8.0  # the flag wins
    assert (
        str(spec.gpus) == "2 free" and spec.workdir == "/workspace" and spec.ports == ("8888", "6006:16006")
    )
    assert dict(spec.env) == dict(rec.spec.env)
    assert {"image", "gpus", "mounts", "env", "memory", "cpus", "workdir", "shm_size"} <= given
    assert "warning: recorded on gpu-node-7 with driver 550.54.15, here driver 535.104.05" in done.output


def test_a_record_nested_past_python_s_recursion_limit_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.devbox-record.yaml"
    path.write_text("[" * 5000 + "]" * 5000 + "\n")

    error = usage_error(record.load, path)
    assert error.message == f"{path}: not valid YAML: nested too deeply"


def test_yaml_aliases_in_a_record_are_refused_before_they_are_expanded(tmp_path: Path) -> None:
    # A record is shared like code: nine levels of ten aliases would print as 10^9 strings.
    levels = ["a0: &a0 [xxxxxxxxxx, xxxxxxxxxx]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path = tmp_path / "bomb.devbox-record.yaml"
    path.write_text("x:\n" + "".join(f"  {line}\n" for line in levels) + "format: *a8\n")

    error = usage_error(record.load, path)
    assert error.message == f"{path}:3: not valid YAML: aliases (*name) are not allowed here"
