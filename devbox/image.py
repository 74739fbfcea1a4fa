"""The devbox layer: build `images/` on top of any base image, once per (base image, layer files)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from devbox import __version__, paths, terminal
from devbox.engine import LABEL_PREFIX, Engine, describe_error
from devbox.errors import DevboxError, UsageError
from devbox.spec import Build

LAYER_FILES = ("Dockerfile", "install.sh", "entrypoint.sh", "algorithms.sh", "sshd_config.in")
IMAGE_REPO = "devbox-layer"
BUILD_REPO = "devbox-build"  # base images built from a project's Dockerfile

Progress = Callable[[str], None]


@dataclass(frozen=True)
class LayerImage:
    tag: str
    built: bool  # False when the cached image was reused


def layer_files() -> dict[str, bytes]:
    root = resources.files("devbox.images")
    return {name: (root / name).read_bytes() for name in LAYER_FILES}


def layer_tag(base_id: str, files: dict[str, bytes]) -> str:
    """Same base image + same layer files → same tag, so a second `up` builds nothing."""
    h = hashlib.sha256(base_id.encode())
    for name in sorted(files):
        h.update(b"\0" + name.encode() + b"\0" + files[name])
    return f"{IMAGE_REPO}:{h.hexdigest()[:24]}"


def ensure_image(engine: Engine, base: str, progress: Progress = lambda _line: None) -> LayerImage:
    base_id = _base_image_id(engine, base, progress)
    files = layer_files()
    tag = layer_tag(base_id, files)
    import docker

    try:
        engine.client.images.get(tag)
        return LayerImage(tag, built=False)
    except docker.errors.ImageNotFound:
        pass
    progress(f"Building the devbox layer on {base} (once per base image)")
    _build(engine, base, base_id, tag, files, progress)
    return LayerImage(tag, built=True)


def _base_image_id(engine: Engine, base: str, progress: Progress) -> str:
    import docker

    try:
        return engine.client.images.get(base).id
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        raise UsageError(f"invalid image {base!r}: {describe_error(exc)}", "check the image name") from None
    progress(f"Pulling {base}")
    try:
        return engine.client.images.pull(base).id
    except docker.errors.DockerException as exc:
        raise UsageError(
            f"image {base!r} is not on the engine and could not be pulled: {describe_error(exc)}",
            "check the name, or `docker pull`/`docker build` it first",
        ) from None


def _context_tar(files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


# ~/.docker/config.json's "proxies" (GPU clusters often sit behind one), as the docker CLI hands
# them to builds; docker-py does not, so we do. Docker accepts these without an ARG.
_PROXY_KEYS = {
    "httpProxy": "HTTP_PROXY",
    "httpsProxy": "HTTPS_PROXY",
    "noProxy": "NO_PROXY",
    "ftpProxy": "FTP_PROXY",
}


def build_proxies() -> dict[str, str]:
    path = Path(os.environ.get("DOCKER_CONFIG") or paths.home() / ".docker") / "config.json"
    try:
        proxies = json.loads(path.read_text()).get("proxies", {}).get("default", {})
    except (OSError, ValueError, AttributeError):
        return {}
    args = {}
    for key, var in _PROXY_KEYS.items():
        if isinstance(proxies.get(key), str):
            args[var] = args[var.lower()] = proxies[key]
    return args


def _build(
    engine: Engine, base: str, base_id: str, tag: str, files: dict[str, bytes], progress: Progress
) -> None:
    import docker

    # FROM the image ID the tag was hashed from, so a re-tag of `base` meanwhile cannot mismatch.
    buildargs = {"BASE_IMAGE": base_id.removeprefix("sha256:")}
    buildargs.update(build_proxies())

    log: list[str] = []
    try:
        stream = engine.client.api.build(
            fileobj=_context_tar(files),
            custom_context=True,
            tag=tag,
            buildargs=buildargs,
            labels={f"{LABEL_PREFIX}base": base, f"{LABEL_PREFIX}version": __version__},
            pull=False,
            rm=True,
            forcerm=True,
            decode=True,
        )
        _follow_build(stream, lambda error: _build_failure(base, error, log), log, progress)
    except docker.errors.DockerException as exc:
        raise DevboxError(_build_failure(base, describe_error(exc), log)) from None


def _follow_build(stream, failure: Callable[[str], str], log: list[str], progress: Progress) -> str:
    """Pass a build's output on line by line (kept in `log` for the error); its image ID, if told."""
    image_id = ""
    for chunk in stream:
        if "error" in chunk:
            raise DevboxError(failure(_plain(chunk["error"])))
        image_id = (chunk.get("aux") or {}).get("ID", image_id)
        for line in _plain(chunk.get("stream", "")).splitlines():
            if line.strip():
                log.append(line.rstrip())
                progress(line.rstrip())
    return image_id


def _plain(text: str) -> str:
    """Build output without terminal escapes: package managers colour their errors."""
    return terminal.plain(text)


def _build_failure(base: str, error: str, log: list[str]) -> str:
    # The install script says why on a line starting with "devbox: cannot"; that beats
    # Docker's "returned a non-zero code".
    reason = next((ln for ln in reversed(log) if ln.startswith("devbox: cannot")), None)
    detail = reason or " ".join(error.split())
    tail = " | ".join(log[-3:])
    return f"building the devbox layer on {base} failed: {detail}" + (
        f" (last output: {tail})" if tail else ""
    )


# ---------------------------------------------------------------- a project's own Dockerfile


def build_repo(owner: str, name: str) -> str:
    return f"{BUILD_REPO}/{owner}-{name}".lower()


def build_base(engine: Engine, build: Build, owner: str, name: str, progress: Progress) -> str:
    """Build the project's Dockerfile on the box's engine (the context is sent from here, as
    `docker build` does) and return the tag it got: `devbox-build/OWNER-NAME:ID`, the ID part
    changing with what was built, so a changed Dockerfile shows as a changed image."""
    import docker

    where = os.path.relpath(build.dockerfile, build.context)
    progress(f"Building {where} on {engine.host.name}")
    repo = build_repo(owner, name)
    log: list[str] = []
    try:
        stream = engine.client.api.build(
            path=build.context,
            dockerfile=build.dockerfile,
            tag=f"{repo}:latest",
            buildargs={**build_proxies(), **dict(a.split("=", 1) for a in build.args)},
            labels={f"{LABEL_PREFIX}built-for": f"{owner}/{name}"},
            rm=True,
            forcerm=True,
            decode=True,
        )
        built = _follow_build(stream, lambda error: _user_build_failure(where, error, log), log, progress)
        image_id = built or engine.client.images.get(f"{repo}:latest").id
        tag = image_id.removeprefix("sha256:")[:12]
        engine.client.api.tag(image_id, repo, tag)
    except docker.errors.DockerException as exc:
        raise DevboxError(_user_build_failure(where, describe_error(exc), log)) from None
    except OSError as exc:  # the context could not be read here (permissions, a vanished file)
        raise DevboxError(
            f"cannot send the build context {build.context}: {exc.strerror or exc}",
            "check that you can read every file in it, or list what to leave out in .dockerignore",
        ) from None
    return f"{repo}:{tag}"


def _user_build_failure(where: str, error: str, log: list[str]) -> str:
    tail = " | ".join(log[-3:])
    return f"building {where} failed: {' '.join(error.split())}" + (f" (last output: {tail})" if tail else "")


def remove_builds(engine: Engine, owner: str, name: str) -> None:
    """Untag what `build_base` made for this box (`rm --purge`); images still in use stay."""
    import docker

    for img in engine.client.images.list(name=build_repo(owner, name)):
        for tag in img.tags:
            if tag.startswith(build_repo(owner, name) + ":"):
                with contextlib.suppress(docker.errors.APIError):
                    engine.client.images.remove(tag, noprune=False)
