"""tmux jobs end to end, as an ordinary user: real tmux in real boxes, real ssh for attach, a real
terminal (tmux on the client side) for what a person sees."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator

import docker
import pytest

from devbox import jobs

from .conftest import User, box_container, holding_proxy

BOX = "jobbox"
HOSTILE = [
    "a b",
    "",
    "$HOME",
    "`id`",
    ";",
    "&&",
    "'single'",
    '"double"',
    "back\\slash",
    "ünïcødé ✓",
    "-n",
    "*",
]


@pytest.fixture(scope="module")
def box(user: User) -> Iterator[str]:
    user.ok("up", BOX, "--gpus", "1,2")
    yield BOX
    user.devbox("rm", BOX, "--purge")


def jobs_of(user: User) -> dict[str, dict]:
    return {j["name"]: j for j in json.loads(user.ok("jobs", BOX, "--json").stdout)}


def eventually(check: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_a_failing_job_is_recorded_with_its_code_and_its_whole_log(user: User, box: str) -> None:
    script = "echo first line; for i in $(seq 1 50); do echo middle $i; done; echo last line; exit 3"
    started = user.ok("run", box, "--name", "fails", "--", "sh", "-c", script)
    assert "Started job fails" in started.stdout
    waited = user.devbox("wait", box, "fails")
    assert waited.returncode == 3, waited.stderr
    assert "fails: exited 3" in waited.stderr
    job = jobs_of(user)["fails"]
    assert (job["state"], job["exit_code"], job["signal"]) == ("exited", 3, None)
    assert job["last_line"] == "last line"
    assert job["gpus"] == ["1", "2"] and job["duration"] is not None and job["started"] <= job["ended"]
    log = user.ok("logs", box, "fails").stdout.splitlines()
    assert log[0] == "first line" and log[-1] == "last line" and len(log) == 52
    assert user.ok("logs", box, "fails", "-n", "2").stdout.splitlines() == ["middle 50", "last line"]
    table = user.ok("jobs", box).stdout
    assert "fails" in table and "exited 3" in table


def test_argv_reaches_the_job_exactly_and_a_single_string_is_a_shell_line(user: User, box: str) -> None:
    user.ok("run", box, "--name", "argv", "--", "printf", "[%s]\\n", *HOSTILE)
    user.ok("run", box, "--name", "line", "--", "echo $((6*7)) | tr 4 x; echo $DEVBOX_JOB")
    assert user.devbox("wait", box, "argv", "line").returncode == 0
    assert user.ok("logs", box, "argv").stdout == "".join(f"[{a}]\n" for a in HOSTILE)
    assert user.ok("logs", box, "line").stdout == "x2\nline\n"


def test_logs_follow_ends_with_the_job_and_carries_its_code(user: User, box: str) -> None:
    user.ok(
        "run",
        box,
        "--name",
        "follow",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3; do echo tick $i; sleep 0.5; done; exit 7",
    )
    proc = user.devbox("logs", box, "follow", "-f")
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == "tick 1\ntick 2\ntick 3\n"
    run = user.devbox(
        "run", box, "--name", "inline", "--wait", "--", "sh", "-c", "echo out; echo err >&2; exit 5"
    )
    assert run.returncode == 5
    assert run.stdout == "out\nerr\n"  # a terminal: both streams, in order, from the first byte
    # The job's record follows its log on stderr behind a GS: one in its output changes nothing.
    marked = user.devbox("run", box, "--name", "marked", "--wait", "--", "printf", "a\\035b\\036c\\037d\\n")
    assert marked.returncode == 0, marked.stderr
    assert marked.stdout == "a\x1db\x1ec\x1fd\n"
    assert "Traceback" not in marked.stderr
    [listed] = [j for j in json.loads(user.ok("jobs", box, "--json").stdout) if j["name"] == "marked"]
    assert listed["exit_code"] == 0 and listed["last_line"] == "a b c d"


def test_a_running_name_is_refused_and_an_ended_one_is_taken_over_keeping_its_log(
    user: User, box: str
) -> None:
    user.ok("run", box, "--name", "dup", "--", "sleep", "300")
    for wait in ((), ("--wait",)):
        proc = user.devbox("run", box, "--name", "dup", *wait, "--", "true")
        assert proc.returncode == 2
        assert "a job named 'dup' is already running" in proc.stderr and len(proc.stderr.splitlines()) == 1
    user.ok("kill", box, "dup", "--grace", "1")
    user.ok("run", box, "--name", "dup", "--wait", "--", "echo", "second")
    assert user.ok("logs", box, "dup").stdout == "second\n"
    kept = user.ssh(f"devbox-{box}", "ls ~/.devbox/logs").stdout.split()
    assert any(name.startswith("dup-") for name in kept), kept


def test_kill_records_the_signal_and_kills_a_job_that_ignores_it_after_the_grace(
    user: User, box: str
) -> None:
    user.ok("run", box, "--name", "polite", "--", "sleep", "300")
    assert "polite: killed by TERM" in user.ok("kill", box, "polite").stdout
    user.ok(
        "run",
        box,
        "--name",
        "stubborn",
        "--",
        "sh",
        "-c",
        "trap 'echo ignoring TERM' TERM; while :; do sleep 0.2; done",
    )
    eventually(lambda: jobs_of(user)["stubborn"]["started"] is not None, what="stubborn started")
    assert "stubborn: killed by KILL" in user.ok("kill", box, "stubborn", "--grace", "1").stdout
    assert "ignoring TERM" in user.ok("logs", box, "stubborn").stdout
    user.ok("run", box, "--name", "hup", "--", "sleep", "300")
    assert "hup: killed by HUP" in user.ok("kill", box, "hup", "--signal", "HUP").stdout
    jobs = jobs_of(user)
    assert (jobs["polite"]["state"], jobs["polite"]["signal"]) == ("killed", "TERM")
    assert (jobs["stubborn"]["state"], jobs["stubborn"]["signal"]) == ("killed", "KILL")
    waited = user.devbox("wait", box, "polite")
    assert waited.returncode == 128 + signal.SIGTERM
    again = user.devbox("kill", box, "polite")
    assert again.returncode == 2 and "is not running (killed by TERM)" in again.stderr


def test_gpus_narrow_the_box_s_own_and_nothing_else(user: User, box: str) -> None:
    user.ok(
        "run",
        box,
        "--name",
        "gpu",
        "--gpus",
        "2",
        "--wait",
        "--",
        "sh",
        "-c",
        "echo cuda=$CUDA_VISIBLE_DEVICES",
    )
    # Inside the box CUDA numbers the box's GPUs 1,2 as 0,1: host GPU 2 is device 1.
    assert user.ok("logs", box, "gpu").stdout == "cuda=1\n"
    assert jobs_of(user)["gpu"]["gpus"] == ["2"]
    for outside in ("0", "1,3"):
        proc = user.devbox("run", box, "--gpus", outside, "--", "true")
        assert proc.returncode == 2 and "not one of box jobbox's GPUs (1,2)" in proc.stderr, proc.stderr
    assert user.devbox("run", box, "--gpus", "x", "--", "true").returncode == 2


def test_a_job_survives_its_client_and_ssh_sessions_and_shows_in_the_user_s_tmux(
    user: User, box: str
) -> None:
    devbox = f"{user.env['DEVBOX_VENV']}/bin/devbox"
    script = "echo begin; sleep 3; echo end; exit 4"
    client = user.popen(devbox, "run", box, "--name", "orphan", "--wait", "--", "sh", "-c", script)
    eventually(lambda: "orphan" in user.ssh(f"devbox-{box}", "tmux ls").stdout, what="the job's tmux session")
    os.killpg(client.pid, signal.SIGKILL)  # the laptop goes away mid --wait
    client.wait()
    listed = user.ssh(f"devbox-{box}", "tmux ls -F '#{session_name}'")  # an ssh session opens and closes
    assert "orphan" in listed.stdout.split()
    assert jobs_of(user)["orphan"]["state"] == "running"
    assert user.devbox("wait", box, "orphan").returncode == 4
    assert user.ok("logs", box, "orphan").stdout == "begin\nend\n"


def test_attach_in_a_real_terminal_shows_live_output_and_detaching_keeps_the_job(
    user: User, box: str
) -> None:
    user.ok(
        "run",
        box,
        "--name",
        "live",
        "--",
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo count $i; sleep 0.3; done",
    )
    session = "dbx-attach"
    sock = ["-L", "devbox-test-attach", "-f", "/dev/null"]
    devbox = f"{user.env['DEVBOX_VENV']}/bin/devbox"
    started = user.run(
        "tmux",
        *sock,
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        "120",
        "-y",
        "30",
        f"{devbox} attach {box} live",
    )
    assert started.returncode == 0, started.stderr
    try:

        def screen() -> str:
            return user.run("tmux", *sock, "capture-pane", "-p", "-t", session).stdout

        eventually(lambda: "count" in screen(), what=f"live output on the attached screen:\n{screen()}")
        first = max(int(w) for w in screen().split() if w.isdigit())
        eventually(
            lambda: max(int(w) for w in screen().split() if w.isdigit()) > first, what="the count going on"
        )
        # C-b d reaches the box's tmux (send-keys bypasses this terminal's own prefix): it detaches.
        user.run("tmux", *sock, "send-keys", "-t", session, "C-b", "d")
        eventually(
            lambda: user.run("tmux", *sock, "has-session", "-t", session).returncode != 0,
            what="devbox attach ending once detached",
        )
        assert jobs_of(user)["live"]["state"] == "running"
    finally:
        user.run("tmux", *sock, "kill-server")
        user.devbox("kill", box, "live", "--grace", "1")
    ended = user.devbox("attach", box, "live")
    assert ended.returncode == 2 and "job live is not running" in ended.stderr


def test_a_box_restart_leaves_a_running_job_lost_with_its_log_and_rm_up_keeps_logs(
    user: User, name: str
) -> None:
    user.ok("up", name)
    try:
        user.ok("run", name, "--name", "done", "--wait", "--", "echo", "kept across rm and up")
        user.ok("run", name, "--name", "cut", "--", "sh", "-c", "echo before restart; sleep 300")
        eventually(lambda: "before restart" in user.ok("logs", name, "cut").stdout, what="the job's output")
        user.ok("restart", name)
        jobs = {j["name"]: j for j in json.loads(user.ok("jobs", name, "--json").stdout)}
        assert jobs["cut"]["state"] == "lost" and jobs["done"]["state"] == "exited"
        assert user.ok("logs", name, "cut").stdout == "before restart\n"
        assert user.devbox("wait", name, "cut").returncode == 1
        user.ok("rm", name)
        user.ok("up", name)
        assert user.ok("logs", name, "done").stdout == "kept across rm and up\n"
        pruned = user.ok("jobs", name, "--prune").stdout
        assert "Forgot 2 ended job(s)" in pruned
        assert json.loads(user.ok("jobs", name, "--json").stdout) == []
        archived = user.ssh(f"devbox-{name}", "cat ~/.devbox/logs/done-*.log").stdout
        assert archived.replace("\r\n", "\n") == "kept across rm and up\n"
    finally:
        user.devbox("rm", name, "--purge")


def test_the_tail_of_a_100_mb_log_comes_from_its_end(user: User, box: str) -> None:
    # The job appends 104 MB straight to its own log (faster than through a terminal), then ends.
    log = '"$HOME/.devbox/jobs/$DEVBOX_JOB/log"'
    fill = f'yes "a log line of filler text" | head -n 4000000 >>{log}; echo the end'
    user.ok("run", box, "--name", "big", "--wait", "--", fill)
    started = time.monotonic()
    tail = user.ok("logs", box, "big", "-n", "3").stdout.splitlines()
    assert tail[-1] == "the end" and tail[0] == "a log line of filler text", tail
    assert time.monotonic() - started < 30  # a sanity bound; the ratio lives in benchmarks/
    assert jobs_of(user)["big"]["last_line"] == "the end"


def test_bad_job_input_is_one_line_and_exit_2(user: User, box: str) -> None:
    for args in (
        ["run", box, "--name", "bad name", "--", "true"],
        ["run", box, "--cwd", "relative", "--", "true"],
        ["run", box, "--env", "NOEQ", "--", "true"],
        ["run", box, "--", ""],
        ["kill", box, "x", "--signal", "NOPE"],
        ["kill", box, "x", "--grace", "-1"],
        ["logs", box, "x", "-n", "-5"],
        ["jobs", box, "--logs"],
        ["run", box, "--wait", "--", "printf", "%s\\n", "a\udcffb"],  # the byte 0xff: not UTF-8
    ):
        proc = user.devbox(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: "), (args, proc.stderr)
    for args in (["logs", box, "nosuchjob"], ["wait", box, "nosuchjob"], ["attach", box, "nosuchjob"]):
        proc = user.devbox(*args)
        assert proc.returncode == 1 and "no job named 'nosuchjob'" in proc.stderr, (args, proc.stderr)


def test_run_wait_starts_and_follows_its_job_in_one_exec(user: User, box: str, env: dict[str, str]) -> None:
    # Each exec into a box is a process Docker starts there (~40 ms); `run --wait` takes one.
    seen: list[str] = []
    with holding_proxy(env["DOCKER_HOST"], b"\0", 0, seen) as (sock, _held):
        proc = user.devbox(
            "run",
            box,
            "--name",
            "once",
            "--wait",
            "--",
            "sh",
            "-c",
            "echo one; exit 3",
            extra_env={"DOCKER_HOST": f"unix://{sock}"},
        )
    assert (proc.returncode, proc.stdout) == (3, "one\n"), proc.stderr
    assert "job once in jobbox" in proc.stderr and "once: exited 3" in proc.stderr
    assert len([r for r in seen if r.startswith("POST") and r.endswith("/exec")]) == 1, seen


def test_concurrent_starts_of_one_name_start_exactly_one(
    user: User, box: str, client: docker.DockerClient
) -> None:
    # Two `devbox run --name N` at once send the box two start.sh execs; through the CLI their
    # start-up spreads them too far apart to race, so the box runs the pairs itself, as they come.
    start = jobs._script("lib.sh") + "\n" + jobs._script("start.sh")
    meta = json.dumps({"argv": ["sleep", "60"], "cwd": "", "gpus": []})
    pairs = """for i in $(seq 1 20); do
        sh -c "$0" x race$i "$1" "exec sleep 60" "" "$2" >/dev/null 2>&1 & a=$!
        sh -c "$0" x race$i "$1" "exec sleep 60" "" "$2" >/dev/null 2>&1 & b=$!
        wait $a; ra=$?; wait $b; rb=$?
        echo "$ra $rb"
    done"""
    ran = box_container(client, box).exec_run(
        ["sh", "-c", pairs, start, meta, jobs._script("run.sh")],
        user=user.name,
        environment={"HOME": f"/home/{user.name}", "LC_ALL": "C"},
    )
    try:
        codes = ran.output.decode().split("\n")[:-1]
        assert sorted(codes) == sorted(codes) and all(sorted(c.split()) == ["0", "73"] for c in codes), codes
        listed = jobs_of(user)
        for i in range(1, 21):
            job = listed[f"race{i}"]
            assert (job["state"], job["argv"], job["started"] is not None) == (
                "running",
                ["sleep", "60"],
                True,
            )
        assert not user.ssh(f"devbox-{box}", "ls ~/.devbox/locks").stdout.split()
    finally:
        for i in range(1, 21):
            user.devbox("kill", box, f"race{i}", "--grace", "0")


def test_wait_gives_the_same_first_failure_while_the_jobs_run_and_after(user: User, box: str) -> None:
    user.ok("run", box, "--name", "late", "--", "sh", "-c", "sleep 3; exit 3")
    user.ok("run", box, "--name", "early", "--", "sh", "-c", "sleep 1; exit 5")
    for _ in range(2):  # the second time both ended long ago
        waited = user.devbox("wait", box, "late", "early")
        assert waited.returncode == 5, waited.stderr
        assert waited.stderr.splitlines() == ["early: exited 5", "late: exited 3"]


def test_a_job_s_environment_is_an_ssh_session_s_plus_its_env(user: User, box: str) -> None:
    show = 'printf "\\303\\274" | wc -m; echo "${LC_ALL-none} ${HOSTNAME-none} ${DEVBOX_UID-none}"'
    ran = user.devbox("run", box, "--wait", "--env", "LANG=C.UTF-8", "--", "sh", "-c", show)
    assert (ran.returncode, ran.stdout.split()) == (0, ["1", "none", "none", "none"]), ran.stderr
    session = user.ssh(f"devbox-{box}", f"LANG=C.UTF-8 sh -c '{show}'").stdout
    assert session.split() == ran.stdout.split()


def test_remain_on_exit_holds_no_name_and_a_user_s_own_session_is_named_as_such(user: User, box: str) -> None:
    alias = f"devbox-{box}"
    assert user.ssh(alias, "tmux new-session -d -s mysess && tmux set -g remain-on-exit on").returncode == 0
    try:
        user.ok("run", box, "--name", "roe", "--wait", "--", "echo", "hi")
        user.ok("run", box, "--name", "roe", "--wait", "--", "echo", "again")
        assert user.ok("logs", box, "roe").stdout == "again\n"
        # A job from before devbox turned it off for its windows: its dead pane holds the name.
        user.ok("run", box, "--name", "relic", "--", "sh", "-c", "sleep 1")
        user.ssh(alias, "tmux set-option -w -t =relic: remain-on-exit on")
        assert user.devbox("wait", box, "relic").returncode == 0
        assert user.ssh(alias, "tmux has-session -t =relic").returncode == 0
        user.ok("run", box, "--name", "relic", "--wait", "--", "true")
        taken = user.devbox("run", box, "--name", "mysess", "--", "true")
        assert taken.returncode == 2 and len(taken.stderr.splitlines()) == 1, taken.stderr
        assert "a tmux session named 'mysess' (not a devbox job)" in taken.stderr
        assert "devbox kill" not in taken.stderr and "pick another --name" in taken.stderr
    finally:
        user.ssh(alias, "tmux set -gu remain-on-exit; tmux kill-session -t =mysess")


def test_a_missing_program_is_named_by_sh_not_by_a_devbox_file(user: User, box: str) -> None:
    ran = user.devbox("run", box, "--wait", "--", "nosuchprog", "x")
    assert ran.returncode == 127
    assert "nosuchprog: not found" in ran.stdout and "pgid" not in ran.stdout, ran.stdout


def test_an_interrupted_follower_leaves_nothing_running_in_the_box(user: User, box: str) -> None:
    # Docker lets an exec run on when its client goes away: a follower of a quiet job polled there
    # until the job ended.
    alias = f"devbox-{box}"
    devbox = f"{user.env['DEVBOX_VENV']}/bin/devbox"

    def followers(name: str) -> int:
        found = user.ssh(alias, f"ps -eo args -ww | grep -c '[d]evbox-[a-z]*.sh {name} '").stdout
        return int(found.strip() or 0)

    user.ok("run", box, "--name", "quiet", "--", "sleep", "120")
    clients = {
        "quiet": user.popen(devbox, "logs", box, "quiet", "-f"),
        "quiet2": user.popen(devbox, "run", box, "--name", "quiet2", "--wait", "--", "sleep", "120"),
    }
    try:
        for name, client in clients.items():
            eventually(lambda name=name: followers(name) == 1, what=f"{name}'s follower in the box")
            os.killpg(client.pid, signal.SIGINT)  # Ctrl-C
            client.wait()
            eventually(lambda name=name: followers(name) == 0, timeout=10, what=f"{name}'s follower gone")
        assert {jobs_of(user)[n]["state"] for n in clients} == {"running"}
        # A follow that ends with its job leaves no reader of its stdin behind either (each job's
        # log has a cat of its own, tmux's child).
        user.ok("run", box, "--name", "loud", "--wait", "--", "echo", "done")
        procs = [
            p.split(None, 2)
            for p in user.ssh(alias, "ps -u $(id -u) -o pid=,ppid=,comm=").stdout.splitlines()
        ]
        tmux = {pid for pid, _ppid, comm in procs if comm.startswith("tmux")}
        assert [p for p in procs if p[2] == "cat" and p[1] not in tmux] == [], procs
    finally:
        for name in clients:
            user.devbox("kill", box, name, "--grace", "0")
