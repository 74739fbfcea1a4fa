"""config.yaml's defaults reach the commands: the default host, the alias prefix and the image,
each below its environment variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from devbox import config, hosts, sshconfig


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for var in ("DEVBOX_HOST", "DEVBOX_HOST_PREFIX", "DEVBOX_IMAGE"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "devbox").mkdir()
    return tmp_path / "devbox" / "config.yaml"


def test_config_host_is_the_default_unless_a_host_is_named(xdg: Path) -> None:
    hosts.add("gpu1", "ana@gpu1.lab")
    hosts.add("gpu2", "ana@gpu2.lab", make_default=True)
    assert hosts.resolve(None).name == "gpu2"
    xdg.write_text("host: gpu1\n")
    assert hosts.resolve(None).name == "gpu1"
    assert hosts.resolve("gpu2").name == "gpu2"
    xdg.write_text("host: local\n")
    assert hosts.resolve(None).is_local


def test_alias_prefix_and_image_come_from_config_below_the_environment(
    xdg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sshconfig.host_alias("train") == "devbox-train"
    assert config.default_image() == "ubuntu:24.04"
    xdg.write_text("alias_prefix: lab-\nimage: pytorch/pytorch:2.5.1\n")
    assert sshconfig.host_alias("train") == "lab-train"
    assert config.default_image() == "pytorch/pytorch:2.5.1"
    monkeypatch.setenv("DEVBOX_HOST_PREFIX", "x-")
    monkeypatch.setenv("DEVBOX_IMAGE", "debian:12")
    assert sshconfig.host_alias("train") == "x-train"
    assert config.default_image() == "debian:12"
