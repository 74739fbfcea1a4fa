"""Long runs in tmux inside a box: start, list, read logs of, wait for, and kill jobs.

A job runs in a detached tmux session of the box's user (the tmux server `ssh` then sees), under
a small wrapper that records how it ended; its record and its log live in `~/.devbox/jobs/JOB/`
on the home volume. Everything goes through `docker exec` as the box's user with the scripts in
`jobscripts/`, over the same engine connection as every other box command, so local and remote
hosts take one code path and nothing needs the box's sshd but `attach`.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import signal as signals
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from devbox import gpus, terminal
from devbox.engine import describe_error
from devbox.errors import DevboxError, NotFoundError, UsageError

if TYPE_CHECKING:
    from devbox.boxes import Box
    from devbox.engine import Engine

RUNNING, EXITED, KILLED, LOST = "running", "exited", "killed", "lost"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_NAME_HINT = "use 1-63 letters, digits, '-' and '_', starting with a letter or digit"
POLL_S = 1.0
# The signals every shell's `kill -s` knows by name.
SIGNALS = ("TERM", "INT", "HUP", "QUIT", "KILL", "USR1", "USR2", "ALRM", "ABRT", "CONT", "STOP", "TSTP")
MAX_GRACE_S = 86400
# Shell variables bash will not let a job set: exporting one ends the job before it starts.
_READONLY_ENV = {"UID", "EUID", "PPID", "SHELLOPTS", "BASHOPTS", "BASH_VERSINFO", "GROUPS"}
TICK_S = 0.2  # the kill script's grace-period tick
# Exit codes of the job scripts (see jobscripts/*.sh).
_NO_TMUX, _FOREIGN, _RUNNING, _SETUP, _TMUX_FAILED, _NO_JOB, _NOT_RUNNING = 71, 72, 73, 74, 75, 66, 67


@dataclass(frozen=True)
class JobRequest:
    """What `devbox run` asks for; validated by `request()`."""

    argv: tuple[str, ...]
    name: str = ""  # "" → job-N
    cwd: str = ""  # "" → the box's workdir
    env: tuple[tuple[str, str], ...] = ()
    gpus: tuple[str, ...] | None = None  # host GPU indices, a subset of the box's; None → all of its


@dataclass(frozen=True)
class Job:
    box: str
    name: str
    state: str  # RUNNING, EXITED, KILLED or LOST
    argv: tuple[str, ...]
    cwd: str
    gpus: tuple[str, ...]
    started: float | None
    ended: float | None
    exit_code: int | None  # as the wrapper saw it: 128+N for a signal
    signal: str  # the signal that ended it ("" unless KILLED)
    last_line: str

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def exit_status(self) -> int:
        """What `wait`, `logs -f` and `run --wait` exit with: the job's code (128+N for a signal,
        as shells report it); 1 for a lost job, whose end nobody saw."""
        if self.state == LOST or self.exit_code is None:
            return 1
        return self.exit_code

    def duration(self, now: float | None = None) -> float | None:
        if self.started is None:
            return None
        end = self.ended if self.ended is not None else (now or time.time())
        return max(0.0, end - self.started) if self.state != LOST else None

    def describe(self) -> str:
        """'running', 'exited 3', 'killed by TERM', 'lost'."""
        if self.state == EXITED:
            return f"exited {self.exit_code}"
        if self.state == KILLED:
            return f"killed by {self.signal}"
        return self.state

    def to_json(self) -> dict[str, object]:
        return {
            "box": self.box,
            "name": self.name,
            "state": self.state,
            "exit_code": self.exit_code,
            "signal": self.signal or None,
            "argv": list(self.argv),
            "cwd": self.cwd,
            "gpus": list(self.gpus),
            "started": self.started,
            "ended": self.ended,
            "duration": self.duration(),
            "last_line": self.last_line,
        }


# ---------------------------------------------------------------- validation


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise UsageError(f"invalid job name {name!r}", _NAME_HINT)
    return name


def request(
    box: Box,
    argv: Iterable[str],
    *,
    name: str | None = None,
    cwd: str | None = None,
    envs: Iterable[str] = (),
    gpus_text: str | None = None,
) -> JobRequest:
    """Validate what a front end collected for `run` against the box it goes to."""
    argv = tuple(argv)
    if not argv or argv == ("",):
        raise UsageError("no command to run", f"e.g. devbox run {box.name} -- python train.py")
    if name is not None:
        check_name(name)
    if cwd is not None and (not cwd.startswith("/") or "\n" in cwd or "\0" in cwd):
        raise UsageError(f"--cwd {cwd!r} is not an absolute path", "e.g. --cwd /workspace")
    from devbox.spec import is_utf8, parse_env

    env = tuple(parse_env(e) for e in envs)
    for key, _value in env:
        if key in _READONLY_ENV:
            raise UsageError(f"--env {key} is a read-only shell variable", "pick another variable name")
    if any("\0" in a for a in argv):
        raise UsageError("the command holds a NUL character", "no program can receive one in its arguments")
    # Undecodable command-line bytes would become U+FFFD on their way through Docker.
    for text in (*argv, cwd or ""):
        if not is_utf8(text):
            raise UsageError(f"{text!r} in the command is not valid UTF-8 text", "pass binary data in a file")
    return JobRequest(argv, name or "", cwd or "", env, _narrow_gpus(box, gpus_text))


def _narrow_gpus(box: Box, text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    selection = gpus.parse_selection(text)
    if selection.kind == "none":
        return ()
    owned = box.gpus
    if selection.kind != "indices" or selection.uuids:
        raise UsageError(f"--gpus {text!r}: a job takes GPU indices", f"the box's GPUs: {_show(owned)}")
    wanted = tuple(str(i) for i in selection.indices)
    if owned != (gpus.ALL,):
        outside = [g for g in wanted if g not in owned]
        if outside:
            raise UsageError(
                f"GPU {', '.join(outside)} is not one of box {box.name}'s GPUs ({_show(owned)})",
                "a job can only narrow the box's own GPUs; `devbox ls` shows them",
            )
    return wanted


def _show(ids: tuple[str, ...]) -> str:
    return ",".join(ids) or "none"


def _cuda_devices(box: Box, wanted: tuple[str, ...]) -> str:
    """CUDA_VISIBLE_DEVICES for host GPUs `wanted`: inside the box CUDA numbers the box's own GPUs
    from 0 in host order, so host GPU 5 of a box holding 4,5 is device 1."""
    if box.gpus == (gpus.ALL,):
        return ",".join(wanted)
    order = sorted(box.gpus, key=int)
    return ",".join(str(order.index(g)) for g in wanted)


def command_line(box: Box, req: JobRequest) -> str:
    """The shell text the wrapper evaluates: exports, then exec of the argv exactly as given (a
    single string is a shell command line, run by the user's login shell, as with `devbox ssh`)."""
    env = list(req.env)
    if req.gpus is not None:
        env.append(("CUDA_VISIBLE_DEVICES", _cuda_devices(box, req.gpus)))
    lines = [f"export {k}={shlex.quote(v)}" for k, v in env]
    if len(req.argv) == 1:
        lines.append(f'exec "$DEVBOX_JOB_SHELL" -c {shlex.quote(req.argv[0])}')
    else:
        lines.append("exec " + shlex.join(req.argv))
    return "\n".join(lines)


# ---------------------------------------------------------------- talking to the box


def _script(name: str) -> str:
    return resources.files("devbox.jobscripts").joinpath(name).read_text()


def _exec_create(
    engine: Engine, box: Box, script: str | tuple[str, ...], args: Iterable[str], stdin: bool = False
) -> str:
    """An exec running `script` (several: one after the other, in one shell) after lib.sh; with
    `stdin`, its stdin is this connection's, never written to: it ends when the connection does."""
    if not box.running:
        raise DevboxError(f"box {box.name!r} is {box.status}", f"start it with `devbox start {box.name}`")
    scripts = (script,) if isinstance(script, str) else script
    body = "\n".join(_script(name) for name in ("lib.sh", *scripts))
    cmd = ["sh", "-c", body, f"devbox-{scripts[0]}", *args]
    try:
        created = engine.client.api.exec_create(
            box.container_id,
            cmd,
            user=box.user,
            environment={"HOME": f"/home/{box.user}", "LC_ALL": "C"},
            stdin=stdin,
        )
    except Exception as exc:  # docker's APIError, or the engine's connection going away
        raise DevboxError(f"cannot reach box {box.name}: {describe_error(exc)}") from None
    return created["Id"]


def _exec(engine: Engine, box: Box, script: str, *args: str) -> tuple[int, bytes, bytes]:
    exec_id = _exec_create(engine, box, script, args)
    try:
        out, err = engine.client.api.exec_start(exec_id, demux=True)
        code = engine.client.api.exec_inspect(exec_id)["ExitCode"]
    except Exception as exc:
        raise DevboxError(f"lost the connection to box {box.name}: {describe_error(exc)}") from None
    return code, out or b"", err or b""


def _stream(
    engine: Engine,
    box: Box,
    script: str | tuple[str, ...],
    *args: str,
    stderr: list[bytes] | None = None,
    codes: list[int] | None = None,
    stdin: bool = False,
) -> Iterator[bytes]:
    """The script's stdout as it comes; its stderr is kept in `stderr`, its exit code in `codes`,
    when given."""
    exec_id = _exec_create(engine, box, script, args, stdin)
    try:
        for out, err in engine.client.api.exec_start(exec_id, stream=True, demux=True):
            if out:
                yield out
            if err and stderr is not None:
                stderr.append(err)
        code = engine.client.api.exec_inspect(exec_id)["ExitCode"]
    except DevboxError:
        raise
    except Exception as exc:
        raise DevboxError(f"lost the connection to box {box.name}: {describe_error(exc)}") from None
    if codes is not None:
        codes.append(code)
    if code == _NO_JOB:
        raise NotFoundError(
            f"no job named {args[0]!r} in box {box.name}", f"`devbox jobs {box.name}` lists them"
        )


# ---------------------------------------------------------------- the API


def run(engine: Engine, box: Box, req: JobRequest) -> Job:
    """Start the job; return it once it runs, its log open from the first byte."""
    code, out, err = _exec(engine, box, "start.sh", *_start_args(box, req))
    _check_started(box, req.name, code, err)
    return _started(box, out)


def run_and_follow(
    engine: Engine, box: Box, req: JobRequest, on_start: Callable[[Job], None], write: Callable[[bytes], None]
) -> Job:
    """run(), then follow() the job, in one exec into the box: `run --wait` makes one exec (a
    process Docker starts in the box) fewer. `on_start` gets the job once it runs; returns it
    ended."""
    stderr: list[bytes] = []
    codes: list[int] = []
    head, job = b"", None
    scripts = ("start.sh", "then-follow.sh", "logs.sh")
    chunks = _stream(engine, box, scripts, *_start_args(box, req), stderr=stderr, codes=codes, stdin=True)
    for chunk in chunks:
        if job is None:
            record, found, chunk = (head + chunk).partition(b"\x1e")
            if not found:
                head = record
                continue
            job = _started(box, record + found)
            on_start(job)
        if chunk:
            write(chunk.replace(b"\r\n", b"\n"))
    if job is None:  # it never started: why, as run() says it
        _check_started(box, req.name, codes[0] if codes else 1, b"".join(stderr))
        return _started(box, head)
    ended = _records(box.name, b"".join(stderr).rpartition(b"\x1d")[2])
    return ended[-1] if ended else get(engine, box, job.name)


def _start_args(box: Box, req: JobRequest) -> tuple[str, ...]:
    """start.sh's arguments: NAME META CMD CWD WRAPPER."""
    meta = {"argv": list(req.argv), "cwd": req.cwd, "gpus": list(box.gpus if req.gpus is None else req.gpus)}
    return (req.name, json.dumps(meta), command_line(box, req), req.cwd, _script("run.sh"))


def _check_started(box: Box, name: str, code: int, err: bytes) -> None:
    if code == _RUNNING:
        taken = err.decode(errors="replace").strip() or name
        raise UsageError(
            f"a job named {taken!r} is already running in box {box.name}",
            f"pick another --name, or `devbox kill {box.name} {taken}` first",
        )
    if code == _FOREIGN:
        taken = err.decode(errors="replace").strip() or name
        raise UsageError(
            f"a tmux session named {taken!r} (not a devbox job) is running in box {box.name}",
            "pick another --name",
        )
    if code == _NO_TMUX:
        raise DevboxError(
            f"box {box.name} has no tmux",
            "install it in the box (e.g. `sudo apt install tmux`), or rebuild it",
        )
    if code != 0:
        detail = err.decode(errors="replace").strip()
        raise DevboxError(f"cannot start the job in box {box.name}" + (f": {detail}" if detail else ""))


def _started(box: Box, out: bytes) -> Job:
    started = _records(box.name, out)
    if not started:
        raise DevboxError(
            f"the job started in box {box.name} but did not report back", f"`devbox jobs {box.name}` lists it"
        )
    return started[0]


def list_jobs(engine: Engine, box: Box, names: Iterable[str] = ()) -> list[Job]:
    """The box's jobs (or just `names`), oldest first."""
    code, out, err = _exec(engine, box, "list.sh", *names)
    if code != 0:
        raise DevboxError(f"cannot list the jobs of box {box.name}: {err.decode(errors='replace').strip()}")
    found = _records(box.name, out)
    return sorted(found, key=lambda j: (j.started is None, j.started or 0, j.name))


def get(engine: Engine, box: Box, name: str) -> Job:
    check_name(name)
    found = list_jobs(engine, box, [name])
    if not found:
        raise NotFoundError(
            f"no job named {name!r} in box {box.name}", f"`devbox jobs {box.name}` lists them"
        )
    return found[0]


def _records(box: str, data: bytes) -> list[Job]:
    """The jobs in job scripts' output: records ended by RS (lib.sh's job_record); anything else
    (a stream cut mid-record, stray output) is no job."""
    records = data.split(b"\x1e")[:-1]  # what follows the last RS is not a whole record
    return [_parse(box, rec) for rec in records if rec.count(b"\x1f") == 6]


def _parse(box: str, record: bytes) -> Job:
    name, state, meta_text, started, status, killed, last = record.decode(errors="replace").split("\x1f")
    try:
        meta = json.loads(meta_text)
    except json.JSONDecodeError:
        meta = {}
    if not isinstance(meta, dict):  # one damaged record must not break every job command
        meta = {}
    fields = dict(line.split("=", 1) for line in status.splitlines() if "=" in line)
    code = _int(fields.get("exit"))
    sig = ""
    if state == "ended":
        sig = killed.strip()
        if not sig and code is not None and 128 < code < 128 + 65:
            sig = _signal_name(code - 128)  # killed by something else: the OOM killer, a user's kill
        elif sig and code is not None and code <= 128:
            sig = ""  # it caught the signal and exited on its own terms
        state = KILLED if sig else EXITED
    else:
        state = RUNNING if state == "running" else LOST
    return Job(
        box=box,
        name=name,
        state=state,
        argv=_strings(meta.get("argv")),
        cwd=str(meta.get("cwd") or ""),
        gpus=_strings(meta.get("gpus")),
        started=_float(started),
        ended=_float(fields.get("ended")),
        exit_code=code,
        signal=sig,
        last_line=_printable(last),
    )


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _signal_name(number: int) -> str:
    try:
        return signals.Signals(number).name.removeprefix("SIG")
    except ValueError:
        return str(number)


def _printable(text: str) -> str:
    """A log line as a table cell: terminal escapes and control characters gone."""
    return "".join(ch for ch in terminal.plain(text).replace("\t", " ") if ch.isprintable()).strip()


def logs(engine: Engine, box: Box, name: str, lines: int | None = None) -> bytes:
    """The job's log, or its last `lines` lines (read from the end: fast on any size)."""
    check_name(name)
    return b"".join(_stream(engine, box, "logs.sh", name, check_lines(lines), "0")).replace(b"\r\n", b"\n")


def follow(
    engine: Engine, box: Box, name: str, write: Callable[[bytes], None], lines: int | None = None
) -> Job:
    """Write the job's log as it grows until the job ends; return the ended job."""
    check_name(name)
    stderr: list[bytes] = []
    # Docker lets an exec run on when its client goes away: logs.sh ends when its stdin does.
    for chunk in _stream(
        engine, box, "logs.sh", name, check_lines(lines), "1", "1", stderr=stderr, stdin=True
    ):
        write(chunk.replace(b"\r\n", b"\n"))
    # logs.sh ends with the ended job's record after a GS; a stream cut short has none: ask the box.
    ended = _records(box.name, b"".join(stderr).rpartition(b"\x1d")[2])
    return ended[-1] if ended else get(engine, box, name)


def check_lines(lines: int | None) -> str:
    """`-n`: 'all' or a count, checked before any box is asked."""
    if lines is None:
        return "all"
    if lines < 0:
        raise UsageError(f"-n {lines}: give a number of lines, 0 or more", "e.g. -n 100")
    return str(lines)


def wait(
    engine: Engine,
    box: Box,
    names: Iterable[str],
    *,
    on_end: Callable[[Job], None] = lambda _job: None,
    poll: float = POLL_S,
) -> list[Job]:
    """Block until every job in `names` ended; return them in the order they ended (jobs that
    ended at the same second: in the order named)."""
    pending = [check_name(n) for n in dict.fromkeys(names)]
    order = {n: i for i, n in enumerate(pending)}
    known = {j.name for j in list_jobs(engine, box, pending)}
    missing = [n for n in pending if n not in known]
    if missing:
        raise NotFoundError(
            f"no job named {missing[0]!r} in box {box.name}", f"`devbox jobs {box.name}` lists them"
        )
    ended: list[Job] = []
    while pending:
        # One look may find several ended, some long ago: by when they ended, not when they started.
        done = [j for j in list_jobs(engine, box, pending) if not j.running]
        for job in sorted(done, key=lambda j: (j.ended is None, j.ended or 0, order[j.name])):
            ended.append(job)
            pending.remove(job.name)
            on_end(job)
        if pending:
            time.sleep(poll)
    return ended


def check_kill(name: str, signal: str, grace: float) -> tuple[str, int]:
    """`kill`'s input, checked before any box is asked: the signal's name and the grace in ticks."""
    check_name(name)
    sig = signal.upper().removeprefix("SIG")
    if sig not in SIGNALS:
        raise UsageError(f"unknown signal {signal!r}", f"one of {', '.join(SIGNALS)}")
    if not math.isfinite(grace) or not 0 <= grace <= MAX_GRACE_S:
        raise UsageError(
            f"--grace {grace:g}: give a number of seconds from 0 to {MAX_GRACE_S}", "e.g. --grace 30"
        )
    return sig, math.ceil(grace / TICK_S)


def kill(engine: Engine, box: Box, name: str, signal: str = "TERM", grace: float = 10.0) -> Job:
    """Send `signal` to the job's process group, then KILL after `grace` seconds; return the job."""
    sig, ticks = check_kill(name, signal, grace)
    code, _out, err = _exec(engine, box, "kill.sh", name, sig, str(ticks))
    if code == _NO_JOB:
        raise NotFoundError(
            f"no job named {name!r} in box {box.name}", f"`devbox jobs {box.name}` lists them"
        )
    job = get(engine, box, name)
    if code == _NOT_RUNNING:
        raise UsageError(f"job {name} is not running ({job.describe()})", f"`devbox logs {box.name} {name}`")
    if code != 0:
        raise DevboxError(f"cannot signal job {name}: {err.decode(errors='replace').strip()}")
    return job


def prune(engine: Engine, box: Box, *, drop_logs: bool = False) -> list[str]:
    """Forget the box's ended and lost jobs; their logs move to ~/.devbox/logs unless `drop_logs`."""
    code, out, err = _exec(engine, box, "prune.sh", "1" if drop_logs else "0")
    if code != 0:
        raise DevboxError(f"cannot prune the jobs of box {box.name}: {err.decode(errors='replace').strip()}")
    return out.decode().split()


def attach_command(box: Box, name: str, ssh_config: Path | None = None) -> list[str]:
    """The system ssh command that attaches a terminal to the job's tmux session."""
    from devbox import sshconfig

    check_name(name)
    remote = f"tmux attach-session -t {shlex.quote('=' + name)}"
    ssh, *rest = sshconfig.ssh_command(box.alias, user_config=ssh_config)
    return [ssh, "-t", *rest, remote]
