"""The engine lock against a scripted Docker API: waiters racing over a dead run's lock, and
start/restart saying who holds it while they wait (issue 12)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
import requests

from devbox import allocation, boxes
from devbox import engine as engine_mod
from devbox.engine import Engine
from devbox.errors import DevboxError, GpuBusyError

HOLDER = "alice@gpu1 pid 4242"


def api_error(status: int, text: str, cls: type[docker.errors.APIError] = docker.errors.APIError):
    response = requests.Response()
    response.status_code = status
    return cls(text, response=response, explanation=text)


class Sock:
    def __init__(self) -> None:
        self.closed = False

    def sendall(self, _data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@dataclass
class Made:
    """A container the fake engine created: a lock, or a box."""

    id: str
    labels: dict[str, str] = field(default_factory=dict)
    status: str = "created"
    name: str = ""
    attrs: dict = field(default_factory=dict)
    on_start: Callable[[], None] | None = None
    started: int = 0
    stopped: int = 0

    def start(self) -> None:
        self.started += 1
        if self.on_start is not None:
            self.on_start()
        self.status = "running"

    def stop(self, timeout: int) -> None:
        self.stopped += 1
        self.status = "exited"

    def restart(self, timeout: int) -> None:
        self.status = "running"


class FakeDocker:
    """Just the calls Engine.lock, allocation and boxes make, each step scriptable.

    `create`, `attach` and `start` are lists of what each lock attempt's step does: None goes
    through, an exception is raised. `held_for` is how many attempts find the lock held by HOLDER.
    """

    def __init__(self, *, create=(), attach=(), start=(), held_for: int = 0, box_list=()) -> None:
        self.create_script = list(create)
        self.attach_script = list(attach)
        self.start_script = list(start)
        self.held_for = held_for
        self.box_list = list(box_list)
        self.removed: list[str] = []
        self.socks: list[Sock] = []
        self.lock_attempts = 0
        self.containers = self
        self.api = self

    # -- containers collection
    def create(self, image: str, **kwargs) -> Made:
        self.lock_attempts += 1
        if self.held_for:
            self.held_for -= 1
            raise api_error(409, "Conflict. The container name is already in use")
        step = self.create_script.pop(0) if self.create_script else None
        if step is not None:
            raise step
        made = Made(f"lock{self.lock_attempts}", dict(kwargs["labels"]))
        step = self.start_script.pop(0) if self.start_script else None
        if step is not None:

            def fail(step=step) -> None:
                raise step

            made.on_start = fail
        return made

    def list(self, **_kwargs) -> list:
        return self.box_list

    # -- low-level API
    def __call__(self, **_kwargs) -> list[dict]:
        """api.containers(): the boxes as Docker's list reports them (the attribute `containers`
        is the collection, so the low-level call lands here)."""
        return [{"Id": c.id, "State": c.status, "Labels": c.labels} for c in self.box_list]

    def attach_socket(self, container_id: str, params: dict) -> Sock:
        step = self.attach_script.pop(0) if self.attach_script else None
        if step is not None:
            raise step
        sock = Sock()
        self.socks.append(sock)
        return sock

    def inspect_container(self, name_or_id: str) -> dict:
        if name_or_id.startswith("devbox-lock-") and self.held_for:
            return {
                "Id": "theirs",
                "Created": "2026-01-01T00:00:00Z",
                "State": {"Running": True, "Status": "running"},
                "Config": {"Labels": {"devbox.lock-holder": HOLDER}},
            }
        if name_or_id.startswith("devbox-lock-"):
            raise api_error(404, "No such container", docker.errors.NotFound)
        return {"State": {"StartedAt": "2026-01-01T00:00:00Z"}}

    def remove_container(self, container_id: str, force: bool) -> None:
        self.removed.append(container_id)

    def info(self) -> dict:
        return {"SystemTime": "2026-01-01T00:00:07Z"}


def engine_of(fake: FakeDocker) -> Engine:
    return Engine(fake, "fake")  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_mod.time, "sleep", lambda _s: None)


# -- several waiters on a dead run's lock ---------------------------------------------------------


@pytest.mark.parametrize(
    "script",
    [
        # Another waiter removed our unstarted lock container as a dead run's, at each step.
        {"start": [api_error(409, "container is marked for removal and cannot be started")]},
        {"start": [api_error(404, "No such container", docker.errors.NotFound)]},
        {"attach": [api_error(404, "No such container", docker.errors.NotFound)]},
        {"attach": [api_error(409, "removal of container is already in progress")]},
        # ...or before docker-py read the new container back after creating it.
        {"create": [api_error(404, "No such container: 1f2e", docker.errors.NotFound)]},
    ],
    ids=["start-409", "start-404", "attach-404", "attach-409", "create-readback-404"],
)
def test_a_lock_container_removed_by_another_waiter_before_it_started_means_try_again(script) -> None:
    fake = FakeDocker(**script)
    with engine_of(fake).lock("gpus", "img"):
        assert fake.lock_attempts == 2
    # The lost container is removed too (quietly: it may be gone), and the held one on release.
    assert fake.removed == (["lock2"] if "create" in script else ["lock1", "lock2"])
    assert all(s.closed for s in fake.socks)


def test_any_other_refusal_while_taking_the_lock_is_one_line_and_cleans_up() -> None:
    fake = FakeDocker(start=[api_error(500, "cannot start container: out of memory")])
    with pytest.raises(DevboxError) as exc, engine_of(fake).lock("gpus", "img"):
        pass
    assert (
        exc.value.message
        == "cannot take the engine lock devbox-lock-gpus: cannot start container: out of memory"
    )
    assert fake.removed == ["lock1"] and all(s.closed for s in fake.socks)


def test_a_missing_lock_image_is_an_error_not_an_endless_retry() -> None:
    fake = FakeDocker(
        create=[api_error(404, "No such image: devbox-layer:gone", docker.errors.ImageNotFound)]
    )
    with pytest.raises(DevboxError, match="No such image") as exc, engine_of(fake).lock("gpus", "img"):
        pass
    assert fake.lock_attempts == 1 and exc.value.hint


# -- start and restart say who holds the lock ---------------------------------------------------------


def box_container(status: str, gpus: str = "") -> Made:
    labels = {
        "devbox.name": "train",
        "devbox.owner": "bob",
        "devbox.user": "bob",
        "devbox.uid": "1000",
        "devbox.gid": "1000",
        "devbox.port": "20001",
        "devbox.gpus": gpus,
        "devbox.share-gpus": "0",
    }
    return Made("box1", labels, status, "devbox-bob.train", {"Config": {"Image": "devbox-layer:x"}})


@pytest.fixture
def as_bob(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Engine, "owner", property(lambda _self: "bob"))
    monkeypatch.setattr(boxes, "_wait_ready", lambda *_a: None)
    monkeypatch.setattr(boxes, "identity_of", lambda _box: None)
    monkeypatch.setattr(boxes.trust, "refresh", lambda *_a: None)


def test_starting_a_stopped_box_names_the_lock_holder_while_it_waits() -> None:
    box = box_container("exited")
    heard: list[str] = []
    allocation.start_checked(engine_of(FakeDocker(held_for=3, box_list=[box])), box, False, heard.append)
    assert heard == [f"Waiting for the engine lock held by {HOLDER} for 7 s"]
    assert box.status == "running"


def test_restart_names_the_lock_holder_while_it_waits(as_bob) -> None:
    box = box_container("running")
    heard: list[str] = []
    boxes.restart(engine_of(FakeDocker(held_for=2, box_list=[box])), "train", progress=heard.append)
    assert heard == [f"Waiting for the engine lock held by {HOLDER} for 7 s"]


def test_restart_of_a_stopped_box_and_start_name_the_lock_holder_too(as_bob, monkeypatch) -> None:
    monkeypatch.setattr(boxes, "_publish", lambda *_a: (None, None, None))
    for action in (boxes.restart, boxes.start):
        box = box_container("exited")
        heard: list[str] = []
        action(engine_of(FakeDocker(held_for=2, box_list=[box])), "train", progress=heard.append)
        assert heard == [f"Waiting for the engine lock held by {HOLDER} for 7 s"], action
        assert box.started == 1


# -- start's refusal offers what start takes ----------------------------------------------------------


def test_start_that_lost_a_race_for_its_gpu_backs_off_with_a_hint_start_can_follow() -> None:
    # The rival was not running when start looked (a client that ignored the lock started it in
    # between), and started first: start backs off, and its hint offers only what start takes.
    box = box_container("exited", gpus="2")
    rival = box_container("running", gpus="2")
    rival.id, rival.labels = "box0", {**rival.labels, "devbox.name": "rival", "devbox.owner": "carol"}
    fake = FakeDocker(box_list=[box])
    box.on_start = lambda: fake.box_list.append(rival)
    fake.inspect_container = lambda cid: {  # type: ignore[method-assign]
        "State": {"StartedAt": "2026-01-01T00:00:0" + ("1Z" if cid == "box0" else "2Z")}
    }
    with pytest.raises(GpuBusyError) as exc:
        allocation.start_checked(engine_of(fake), box, False)
    assert exc.value.message == "GPU 2 is in use by carol/rival"
    assert box.stopped == 1
    hint = exc.value.hint or ""
    assert "--share-gpus" in hint and "devbox start train" in hint
    assert "--gpu-count" not in hint and "--gpus" not in hint


def test_start_refused_before_starting_offers_what_start_takes() -> None:
    box = box_container("exited", gpus="2")
    rival = box_container("running", gpus="2")
    rival.id, rival.labels = "box0", {**rival.labels, "devbox.name": "rival", "devbox.owner": "carol"}
    fake = FakeDocker(box_list=[box, rival])
    with pytest.raises(GpuBusyError) as exc:
        allocation.start_checked(engine_of(fake), box, False)
    assert box.started == 0
    hint = exc.value.hint or ""
    assert "--share-gpus" in hint and "--gpu-count" not in hint and "--gpus" not in hint


# -- start passes on the ssh-entry warning --------------------------------------------------------


def test_start_hands_on_the_warning_when_the_ssh_entry_cannot_be_written(
    as_bob, monkeypatch: pytest.MonkeyPatch, clean_home: Path
) -> None:
    def refuse(*_a, **_kw):
        raise DevboxError(f"cannot write {clean_home}/.ssh/devbox/config: Read-only file system")

    monkeypatch.setattr(boxes.sshconfig, "upsert", refuse)
    identity = type("Identity", (), {"private_path": clean_home / "key"})()
    monkeypatch.setattr(boxes, "identity_of", lambda _box: identity)
    warnings: list[str] = []
    box = boxes.start(
        engine_of(FakeDocker(box_list=[box_container("running")])), "train", on_warning=warnings.append
    )
    assert box.name == "train"
    assert len(warnings) == 1
    assert warnings[0].startswith("train is up, but its ssh entry could not be written: cannot write ")
    assert "devbox ssh-config" in warnings[0]
