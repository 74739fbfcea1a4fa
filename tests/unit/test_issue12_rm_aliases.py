"""Which ssh aliases `rm` cleans up: the one the box was published under, whatever the prefix is
now, and never another box's (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devbox import boxes, paths, sshconfig
from devbox.spec import HostFacts, from_flags


@pytest.fixture(autouse=True)
def home(clean_home: Path) -> Path:
    return clean_home


def publish(alias: str, port: int, jump: str = "") -> None:
    sshconfig.upsert(
        sshconfig.HostEntry(
            alias, port, "bob", paths.user_key_path(), paths.known_hosts_path(), proxy_jump=jump
        )
    )


def labels(port: int, alias: str | None = None) -> dict[str, str]:
    found = {"devbox.name": "train", "devbox.owner": "bob", "devbox.port": str(port)}
    if alias is not None:
        found["devbox.alias"] = alias
    return found


def test_the_alias_recorded_at_creation_is_removed_after_the_prefix_changed() -> None:
    # Made with DEVBOX_HOST_PREFIX=gpu- and its ssh entry never written; removed without the prefix.
    assert boxes.published_aliases(labels(20001, "gpu-train"), "", "train") == ["devbox-train", "gpu-train"]


def test_an_old_box_without_the_label_is_found_by_its_block(monkeypatch: pytest.MonkeyPatch) -> None:
    publish("gpu-train", 20001)
    publish("gpu-other", 20002)
    monkeypatch.setenv("DEVBOX_HOST_PREFIX", "x-")
    assert boxes.published_aliases(labels(20001), "", "train") == ["gpu-train", "x-train"]


def test_another_hosts_box_of_the_same_alias_keeps_its_block() -> None:
    # devbox-train is a box on gpu2; this one (local, published as gpu-train) goes.
    publish("devbox-train", 20001, jump="gpu2")
    publish("gpu-train", 20001)
    assert boxes.published_aliases(labels(20001, "gpu-train"), "", "train") == ["gpu-train"]


def test_a_damaged_alias_label_or_an_unusable_prefix_names_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVBOX_HOST_PREFIX", "bad prefix*")
    assert boxes.published_aliases(labels(20001, "gpu train\nHost *"), "", "train") == []


def test_boxes_record_the_alias_they_are_published_under(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVBOX_HOST_PREFIX", "gpu-")
    spec = from_flags(name="train", image="ubuntu:24.04", facts=HostFacts.unchecked())
    labels = boxes._create_args(spec, "bob", "vol", 20001, (), "")["labels"]
    assert labels["devbox.alias"] == "gpu-train"  # type: ignore[index]


def test_the_home_mount_carries_the_volume_labels_so_a_volume_docker_makes_again_is_devboxs() -> None:
    spec = from_flags(name="train", image="ubuntu:24.04", facts=HostFacts.unchecked())
    (home, *_) = boxes._create_args(spec, "bob", "devbox-bob.train.home", 20001, (), "")["mounts"]  # type: ignore[misc]
    assert home["Source"] == "devbox-bob.train.home" and home["Type"] == "volume"
    assert home["VolumeOptions"]["Labels"] == {"devbox.name": "train", "devbox.owner": "bob"}
