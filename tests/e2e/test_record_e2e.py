"""Environment records end to end, as an ordinary user: `devbox record` writes a box's image, GPUs,
driver, options and packages; `devbox up --from` makes a second box from it with the same base
image and options and says what differs on its host; a missing, bad or unpullable record is one
line, exit 2, and creates nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from .conftest import User, box_container, devbox_containers

# python3 with pip, and conda, as the box's user finds them on PATH (the test image has neither).
FAKE_TOOLS = (
    'RUN printf \'#!/bin/sh\\ncase "$*" in\\n'
    '"-m pip --version") echo pip 24.0 ;;\\n'
    '"-m pip freeze") echo numpy==1.26.4; echo torch==2.4.0 ;;\\n'
    "*) exit 2 ;;\\nesac\\n' >/usr/local/bin/python3"
    " && printf '#!/bin/sh\\necho \"# platform: linux-64\"\\necho python=3.11.9=h955ad1f_0\\n'"
    " >/usr/local/bin/conda"
    " && chmod 755 /usr/local/bin/python3 /usr/local/bin/conda"
)


def _own(user: User, *paths: Path) -> None:
    for path in paths:
        os.chown(path, user.uid, user.gid)


def _spec_label(client, name: str) -> dict:
    return json.loads(box_container(client, name).labels["devbox.spec"])


def test_record_then_up_from_on_a_second_box_gives_the_same_image_and_spec(
    user: User, client, name: str, derived_image
) -> None:
    image = derived_image(FAKE_TOOLS)
    data = user.home / f"data-{name}"
    data.mkdir()
    (data / "train.csv").write_text("x,y\n")
    _own(user, data, data / "train.csv")
    second = f"{name}-again"
    path = user.home / f"{name}.devbox-record.yaml"
    machine = client.info()["Name"]
    try:
        user.ok(
            "up",
            name,
            "--image",
            image,
            "--gpu-count",
            "1",
            "--env",
            "GREETING=hello there",
            "--env",
            "EPOCHS=3",
            "--shm-size",
            "2g",
            "--mount",
            f"{data}:/workspace/data:ro",
            "--workdir",
            "/workspace",
            "--user",
            "trainer",
        )
        proc = user.ok("record", name)  # into the current directory, the user's home
        assert f"Wrote {path.name}: {name} on {machine}" in proc.stdout
        assert "has no registry digest: the record pins its ID" in proc.stderr
        rec = yaml.safe_load(path.read_text())
        base_id = client.images.get(image).id
        assert rec["box"] == name and rec["image"]["name"] == image
        assert rec["image"]["id"] == base_id and rec["image"]["digest"] is None
        assert rec["image"]["layer"] == box_container(client, name).attrs["Config"]["Image"]
        assert rec["gpus"]["models"] == ["NVIDIA H100 80GB HBM3"]
        assert (rec["gpus"]["driver"], rec["gpus"]["cuda"]) == ("550.54.15", "12.4")
        assert rec["spec"] == {
            "gpus": None,
            "gpu_count": 1,
            "share_gpus": False,
            "mounts": [f"~/data-{name}:/workspace/data:ro"],
            "env": {"GREETING": "hello there", "EPOCHS": "3"},
            "shm_size": "2g",
            "memory": None,
            "cpus": None,
            "workdir": "/workspace",
            "sudo": True,
            "ports": [],
            "user": "trainer",
        }
        assert rec["packages"] == {
            "pip": ["numpy==1.26.4", "torch==2.4.0"],
            "conda": ["# platform: linux-64", "python=3.11.9=h955ad1f_0"],
            "notes": [],
        }
        again = user.devbox("record", name)
        assert again.returncode == 2 and "already exists" in again.stderr  # never overwritten

        # Another driver and GPU model on the host it is recreated on: said, not refused.
        elsewhere = {"FAKE_NVIDIA_SMI_DRIVER": "535.104.05", "FAKE_NVIDIA_SMI_NAME": "NVIDIA A100-SXM4-80GB"}
        up = user.ok("up", second, "--from", str(path), extra_env=elsewhere)
        assert [line for line in up.stderr.splitlines() if line.startswith("warning:")] == [
            f"warning: recorded on {machine} with GPUs 1× NVIDIA H100 80GB HBM3, "
            "here 1× NVIDIA A100-SXM4-80GB",
            f"warning: recorded on {machine} with driver 550.54.15, here driver 535.104.05",
        ]
        first_spec, second_spec = _spec_label(client, name), _spec_label(client, second)
        assert first_spec.pop("image") == image and second_spec.pop("image") == base_id  # pinned by ID
        assert second_spec == first_spec
        assert box_container(client, second).image.id == box_container(client, name).image.id

        user.ok("record", second, "-o", f"{second}.yaml")
        rec2 = yaml.safe_load((user.home / f"{second}.yaml").read_text())
        assert rec2["image"]["id"] == base_id and rec2["image"]["layer"] == rec["image"]["layer"]
        assert rec2["spec"] == rec["spec"] and rec2["packages"] == rec["packages"]
        box = next(b for b in json.loads(user.ok("ls", "--json").stdout) if b["name"] == second)
        seen = user.ssh(box["ssh_alias"], "echo $GREETING $EPOCHS; pwd; cat /workspace/data/train.csv").stdout
        assert seen == "hello there 3\n/workspace\nx,y\n"
        assert user.ssh(box["ssh_alias"], "id -un").stdout == "trainer\n"
    finally:
        user.devbox("rm", name, "--purge")
        user.devbox("rm", second, "--purge")


UNPULLABLE = """\
format: 1
box: {name}
host: gpu9
machine: elsewhere
image:
  name: built-on-gpu9:latest
  id: sha256:{zeros}
  digest: null
gpus: {{devices: [], models: [], driver: '', cuda: ''}}
spec: {{gpus: none, shm_size: 1g}}
"""


def test_a_missing_bad_or_unpullable_record_is_one_line_exit_2_and_creates_nothing(
    user: User, client, name: str
) -> None:
    bad = user.home / f"{name}-bad.yaml"
    bad.write_text(f"format: 1\nbox: {name}\nimage: {{}}\ngpus: {{}}\nspec: {{}}\n")
    unpullable = user.home / f"{name}-elsewhere.yaml"
    unpullable.write_text(UNPULLABLE.format(name=name, zeros="0" * 64))
    _own(user, bad, unpullable)
    cases = [
        (user.home / "nope.yaml", ["up", name], "no such record file"),
        (bad, ["up", name], "image.name: missing"),
        # NAME from the record; an image ID that only another engine has cannot be pulled.
        (unpullable, ["up"], "pins image built-on-gpu9:latest by its ID sha256:000000000000…"),
    ]
    for path, argv, message in cases:
        proc = user.devbox(*argv, "--from", str(path))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        (line,) = proc.stderr.splitlines()
        assert line.startswith(f"error: {path}") and message in line, line
        assert "Traceback" not in proc.stderr
        assert devbox_containers(client, name) == []
    assert "push the image to a registry from gpu9" in line
