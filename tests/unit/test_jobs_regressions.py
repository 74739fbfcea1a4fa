"""Regressions found by review of jobs.py and its scripts: each failed before its fix."""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from devbox import jobs
from devbox.errors import DevboxError, UsageError

from .conftest import usage_error
from .test_jobs import BOX, ENV_PRINTER, SH, FakeBox, _dead_pid, _incarnation


def rec(meta: str) -> bytes:
    return "\x1f".join(["j", "ended", meta, "1700000000", "exit=0\nended=1700000001", "", ""]).encode()


@pytest.mark.parametrize("meta", ["null", "[]", "3", '"x"', '{"argv": 5}', '{"gpus": 1}'])
def test_meta_that_is_json_but_not_the_expected_object_does_not_crash(meta: str) -> None:
    job = jobs._parse("b", rec(meta))  # was an AttributeError / TypeError
    assert job.state == jobs.EXITED


def test_start_sh_gives_up_when_it_cannot_make_a_job_directory(tmp_path: Path) -> None:
    home, bin_ = tmp_path / "home", tmp_path / "bin"
    home.mkdir()
    bin_.mkdir()
    (bin_ / "tmux").write_text("#!/bin/sh\nexit 1\n")
    # mkdir that fails as on a full (ENOSPC) or read-only home volume, except `mkdir -p` of existing dirs
    (bin_ / "mkdir").write_text(
        '#!/bin/sh\n[ "$1" = -p ] && exec /bin/mkdir "$@"\n'
        'echo "mkdir: No space left on device" >&2; exit 1\n'
    )
    for f in bin_.iterdir():
        f.chmod(0o755)
    script = jobs._script("lib.sh") + "\n" + jobs._script("start.sh")
    done = subprocess.run(
        ["/bin/sh", "-c", script, "devbox-start.sh", "", "{}", "exec true", "", "w"],
        env={"HOME": str(home), "PATH": f"{bin_}:{os.environ['PATH']}", "LC_ALL": "C"},
        capture_output=True,
        timeout=10,
    )  # looped for ever before
    assert done.returncode == 74


@pytest.mark.parametrize("sig", ["SIGSIGTERM", "IOT", "CLD", "POLL", "STKFLT"])
def test_kill_refuses_signal_names_the_box_shell_does_not_know(sig: str) -> None:
    # dash: `kill -s IOT` → "invalid signal number or name"; kill.sh hides it and KILLs after --grace
    with pytest.raises(UsageError):
        jobs.kill(None, BOX, "j", sig)


def test_a_huge_grace_is_a_usage_error_not_a_traceback() -> None:
    with pytest.raises(DevboxError):  # was an OverflowError (math.ceil(inf))
        jobs.kill(None, BOX, "j", "TERM", 1e308)


@pytest.mark.parametrize(
    ("last", "shown"),
    [
        ("\x1b[1mbold\x1b(B\x1b[m done", "bold done"),  # tput sgr0
        ("\x1b7saved\x1b8", "saved"),
        ("epoch\t3", "epoch 3"),
    ],
)
def test_last_line_cleaning(last: str, shown: str) -> None:
    assert jobs._printable(last) == shown


# ---------------------------------------------------------------- review 2


@pytest.fixture
def fake_box(tmp_path: Path) -> FakeBox:
    return FakeBox(tmp_path)


class LocalEngine:
    """Docker's exec API answered here: each exec runs its command (lib.sh and a job script) in a
    FakeBox's $HOME, as the box's user would; what `wait` and friends see is the scripts' own."""

    def __init__(self, fake: FakeBox) -> None:
        self.client = self
        self.api = self
        self.fake = fake
        self.created: dict[str, list[str]] = {}
        self.codes: dict[str, int] = {}

    def exec_create(self, container: str, cmd: list[str], **_kw: object) -> dict[str, str]:
        exec_id = str(len(self.created))
        self.created[exec_id] = cmd
        return {"Id": exec_id}

    def exec_start(self, exec_id: str, demux: bool = False, stream: bool = False):
        sh, flag, body, *args = self.created[exec_id]
        done = self.fake.run(body.removeprefix(jobs._script("lib.sh") + "\n"), *args[1:])
        self.codes[exec_id] = done.returncode
        return iter([(done.stdout, done.stderr)]) if stream else (done.stdout, done.stderr)

    def exec_inspect(self, exec_id: str) -> dict[str, int]:
        return {"ExitCode": self.codes[exec_id]}


def test_wait_reports_jobs_that_had_ended_by_when_they_ended_not_when_they_started(fake_box: FakeBox) -> None:
    # a started first and failed last; b started later and failed first: the same first failure
    # whether `wait` saw them end or found them ended (it gave a's code here before).
    fake_box.job("a", started=1_700_000_000, status="exit=3\nended=1700000300\n")
    fake_box.job("b", started=1_700_000_100, status="exit=5\nended=1700000200\n")
    fake_box.job("c", started=1_700_000_150, status="exit=0\nended=1700000300\n")
    seen: list[str] = []
    ended = jobs.wait(LocalEngine(fake_box), BOX, ["c", "a", "b"], on_end=lambda j: seen.append(j.name))
    assert [j.name for j in ended] == seen == ["b", "c", "a"]  # a tie: in the order named


def test_a_stale_start_lock_of_a_start_that_died_is_broken_and_every_exit_lets_go(fake_box: FakeBox) -> None:
    locks = fake_box.home / ".devbox" / "locks"
    (locks / "start-a").mkdir(parents=True)
    (locks / "start-a" / "pid").write_text(f"{_dead_pid()}\n")  # SIGKILLed mid-start
    done = fake_box.run("start.sh", "a", "{}", "exec true", "", "")
    assert done.returncode == 75  # on to tmux, which the fake has not
    assert list(locks.iterdir()) == []
    fake_box.job("b", incarnation=_incarnation(), pid=os.getpid())
    assert fake_box.run("start.sh", "b", "{}", "exec true", "", "").returncode == 73
    assert list(locks.iterdir()) == []


def test_a_start_waits_for_a_live_start_of_the_name_then_sees_its_job(fake_box: FakeBox) -> None:
    lock = fake_box.home / ".devbox" / "locks" / "start-a"
    lock.mkdir(parents=True)
    holder = subprocess.Popen(["sleep", "60"])
    (lock / "pid").write_text(f"{holder.pid}\n")
    try:
        env = {"HOME": str(fake_box.home), "PATH": fake_box.path, "LC_ALL": "C"}
        env |= {"FAKE_TMUX_LOG": str(fake_box.tmux_log), "FAKE_TMUX_RC": "1", "FAKE_TMUX_SESSIONS": ""}
        script = jobs._script("lib.sh") + "\n" + jobs._script("start.sh")
        second = subprocess.Popen(
            ["sh", "-c", script, "devbox-start.sh", "a", "{}", "exec true", "", ""],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(1)
        assert second.poll() is None  # it waits: no look at the half-made job
        fake_box.job("a", incarnation=_incarnation(), pid=holder.pid)  # the first start's job runs
        shutil.rmtree(lock)
        assert second.wait(timeout=10) == 73
    finally:
        holder.kill()
        holder.wait()


def test_a_tmux_session_of_the_user_s_own_is_refused_with_its_own_code(fake_box: FakeBox) -> None:
    fake_box.tmux_rc = 0  # has-session: the name is a session; list-panes: no dead pane in it
    done = fake_box.run("start.sh", "mysess", "{}", "exec true", "", "")
    assert (done.returncode, done.stderr) == (72, b"mysess\n")
    assert list(fake_box.jobs.iterdir()) == []
    error = usage_error(jobs._check_started, BOX, "mysess", 72, done.stderr)
    assert error.message == "a tmux session named 'mysess' (not a devbox job) is running in box b"
    assert error.hint == "pick another --name" and "kill" not in str(error)


def test_archived_logs_of_runs_started_in_the_same_second_are_all_kept(fake_box: FakeBox) -> None:
    archive = fake_box.home / ".devbox" / "logs"
    for i in range(3):  # prune, then start.sh taking over an ended name: both archive
        fake_box.job("a", started=1_700_000_000, status="exit=0\nended=1\n", log=f"run {i}\n".encode())
        done = fake_box.run("prune.sh", "0") if i < 2 else fake_box.run("start.sh", "a", "{}", "x", "", "")
        assert done.returncode == (0 if i < 2 else 75), done.stderr
    kept = {p.name: p.read_text() for p in archive.iterdir()}
    assert kept == {
        "a-1700000000.log": "run 0\n",
        "a-1700000000-2.log": "run 1\n",
        "a-1700000000-3.log": "run 2\n",
    }


def test_prune_leaves_a_job_being_started_alone(fake_box: FakeBox) -> None:
    (fake_box.home / ".devbox" / "locks" / "start-a").mkdir(parents=True)
    (fake_box.jobs / "a").mkdir()  # half made: no meta.json, no incarnation yet
    assert fake_box.run("prune.sh", "0").stdout == b""
    assert (fake_box.jobs / "a").is_dir()


@pytest.mark.parametrize("argv", [["printf", "%s\n", "a\udcffb"], ["echo \udce9t\udce9"]])
def test_argv_that_is_not_utf_8_is_refused_not_changed(argv: list[str]) -> None:
    error = usage_error(jobs.request, BOX, argv)
    assert "is not valid UTF-8 text" in error.message and error.hint == "pass binary data in a file"
    assert "is not valid UTF-8" in usage_error(jobs.request, BOX, ["true"], cwd="/w\udcff").message


def run_wrapper(
    tmp_path: Path, req: jobs.JobRequest, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """The job wrapper (run.sh) in a job directory, as tmux runs it, with a tmux that lets it go."""
    fake = FakeBox(tmp_path)
    fake_tmux = fake.bin / "tmux"
    fake_tmux.write_text("#!/bin/sh\nexit 0\n")
    job = fake.job("j")
    (job / "cmd").write_text(jobs.command_line(BOX, req) + "\n")
    (job / "cwd").write_text("\n")
    (job / "log").write_text("")
    return subprocess.run(
        [SH, "-c", jobs._script("run.sh")],
        cwd=job,
        env={"HOME": str(fake.home), "PATH": fake.path, **env},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def test_a_job_gets_none_of_the_exec_only_environment_and_keeps_its_env(tmp_path: Path) -> None:
    exec_only = {"LC_ALL": "C", "HOSTNAME": "abc123", "DEVBOX_USER": "u", "DEVBOX_UID": "1000"}
    exec_only |= {"DEVBOX_GID": "1000", "DEVBOX_SUDO": "1", "DEVBOX_WORKDIR": ""}
    keys = [*exec_only, "LANG", "DEVBOX_JOB"]
    req = jobs.JobRequest(argv=(*ENV_PRINTER, *keys), env=(("LANG", "C.UTF-8"),))
    done = run_wrapper(tmp_path, req, exec_only)
    got = json.loads(done.stdout.splitlines()[-1])
    assert got == {**dict.fromkeys(exec_only), "LANG": "C.UTF-8", "DEVBOX_JOB": "j"}  # LC_ALL=C won


def test_a_missing_program_is_reported_by_sh_not_by_the_pgid_file(tmp_path: Path) -> None:
    done = run_wrapper(tmp_path, jobs.JobRequest(argv=("nosuchprog-devbox", "x")), {"LC_ALL": "C"})
    assert "nosuchprog-devbox: not found" in done.stderr
    assert "pgid" not in done.stderr and done.stderr.splitlines()[-1].startswith("sh: ")


def follow_sh(fake: FakeBox, *args: str) -> subprocess.Popen[bytes]:
    """logs.sh following job a, its stdin a pipe held by this test, as devbox's connection is."""
    env = {"HOME": str(fake.home), "PATH": fake.path, "LC_ALL": "C", "FAKE_TMUX_LOG": str(fake.tmux_log)}
    script = jobs._script("lib.sh") + "\n" + jobs._script("logs.sh")
    return subprocess.Popen(
        [SH, "-c", script, "devbox-logs.sh", "a", "all", *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_follower_ends_when_devbox_s_connection_closes_its_stdin(fake_box: FakeBox) -> None:
    fake_box.job("a", incarnation=_incarnation(), pid=os.getpid(), log=b"quiet\n")  # runs on
    follower = follow_sh(fake_box, "1", "1")
    try:
        time.sleep(0.5)
        assert follower.poll() is None
        follower.stdin.close()  # the client went away: Docker closes the exec's stdin
        assert follower.wait(timeout=5) == 0  # it polled until the job ended before
        assert follower.stdout.read() == b"quiet\n"
    finally:
        follower.kill()
        follower.wait()


def test_a_follower_not_told_its_stdin_is_devbox_s_follows_on_without_it(fake_box: FakeBox) -> None:
    fake_box.job("a", incarnation=_incarnation(), pid=os.getpid(), log=b"quiet\n")
    follower = follow_sh(fake_box, "1")
    try:
        follower.stdin.close()
        time.sleep(1)
        assert follower.poll() is None
    finally:
        follower.kill()
        follower.wait()
