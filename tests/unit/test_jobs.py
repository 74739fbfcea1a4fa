"""Jobs without Docker: `run`'s validation, the command line the wrapper evaluates (run for real by
the shells a box's /bin/sh may be), the records `list.sh` prints and their parsing, and the job
scripts themselves, run in a temporary $HOME with a fake tmux."""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from devbox import jobs
from devbox.boxes import Box
from devbox.errors import DevboxError, UsageError

from .conftest import make_box, usage_error

BOX = make_box(gpus=("4", "5"), volume="devbox-b-home", container="devbox-b")
ALL_GPUS_BOX = replace(BOX, gpus=("all",))
NO_GPUS_BOX = replace(BOX, gpus=())

# Prints its own arguments (after the program name) as JSON: what the job's process got.
ARGV_PRINTER = (sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))")
# Prints the named environment variables (None where unset) as JSON.
ENV_PRINTER = (
    sys.executable,
    "-c",
    "import os, sys, json; print(json.dumps({k: os.environ.get(k) for k in sys.argv[1:]}))",
)

# The /bin/sh of a box evaluates the command line (run.sh); bases differ: dash, bash, busybox ash.
EVAL_SHELLS = [pytest.param(("/bin/sh",), id="bin-sh")]
if shutil.which("dash"):
    EVAL_SHELLS.append(pytest.param((shutil.which("dash"),), id="dash"))
if shutil.which("bash"):
    EVAL_SHELLS.append(pytest.param((shutil.which("bash"), "--posix"), id="bash"))
if shutil.which("busybox"):
    EVAL_SHELLS.append(pytest.param((shutil.which("busybox"), "sh"), id="busybox"))

# start.sh stores the line with printf '%s\n'; run.sh reads it back with "$(cat …)" (trailing
# newlines go) and has /bin/sh eval it in a shell whose $1 is the pgid file and $2 the line.
_WRAPPER = """printf '%s\\n' "$1" >"$2" || exit 99
cmd=$(cat "$2")
shift 2
exec "$@" -c 'eval "$2"' sh pgid "$cmd"
"""

# Text a command line must carry exactly: no NUL (it cannot cross execve), no lone surrogates
# (not encodable), and a bias towards what shells treat specially.
_SHELLISH = st.text(alphabet=st.sampled_from(list("'\"$`\\\n\t !*?[]{}()<>|&;~#=%-^,.:@/é字\r")))
_ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\0"))
ARG = st.one_of(_SHELLISH, _ANY_TEXT)


def run_line(
    shell: tuple[str, ...], line: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `line` the way a job's wrapper does: stored in a file, read back, eval'ed by `shell`."""
    with tempfile.TemporaryDirectory() as tmp:
        return subprocess.run(
            [*shell, "-c", _WRAPPER, "run.sh", line, str(Path(tmp, "cmd")), *shell],
            env={"PATH": os.environ["PATH"], "LC_ALL": "C", "DEVBOX_JOB_SHELL": "/bin/sh", **(env or {})},
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )


def printed(done: subprocess.CompletedProcess[str]) -> object:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# ---------------------------------------------------------------- request(): what `run` accepts


def test_a_plain_request_keeps_the_argv_and_leaves_the_rest_to_the_box() -> None:
    req = jobs.request(BOX, ["python", "train.py", "--lr", "0.1"])
    assert req == jobs.JobRequest(argv=("python", "train.py", "--lr", "0.1"))
    assert (req.name, req.cwd, req.env, req.gpus) == ("", "", (), None)


@pytest.mark.parametrize("argv", [(), ("",), []])
def test_a_request_without_a_command_is_refused(argv) -> None:
    err = usage_error(jobs.request, BOX, argv)
    assert err.message == "no command to run"
    assert "devbox run b --" in (err.hint or "")


@pytest.mark.parametrize("name", ["a", "7", "job-1", "train_v2", "A-b_C", "a" * 63])
def test_valid_job_names_are_taken(name: str) -> None:
    assert jobs.request(BOX, ["true"], name=name).name == name
    assert jobs.check_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "my job", "-x", "_x", "a" * 64, ".", "..", ":", "a:b", "a.b", "a/b", "bøx", "x\n", "=x", "x\0"],
)
def test_invalid_job_names_are_usage_errors_quoting_the_name(name: str) -> None:
    err = usage_error(jobs.request, BOX, ["true"], name=name)
    assert err.message == f"invalid job name {name!r}"
    assert "1-63 letters" in (err.hint or "")


@pytest.mark.parametrize("cwd", ["/", "/workspace", "/data/my run", "/tmp/ü"])
def test_an_absolute_cwd_is_taken(cwd: str) -> None:
    assert jobs.request(BOX, ["true"], cwd=cwd).cwd == cwd


@pytest.mark.parametrize("cwd", ["", "relative", "./x", "~/x", "/a\nb", "/a\0b"])
def test_a_cwd_that_is_not_an_absolute_path_is_refused(cwd: str) -> None:
    err = usage_error(jobs.request, BOX, ["true"], cwd=cwd)
    assert err.message == f"--cwd {cwd!r} is not an absolute path"


def test_env_goes_through_the_box_env_rules() -> None:
    req = jobs.request(BOX, ["true"], envs=["A=1", "EMPTY=", "URL=x=y&z", "_U=ü"])
    assert req.env == (("A", "1"), ("EMPTY", ""), ("URL", "x=y&z"), ("_U", "ü"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ("NOVALUE", "invalid --env 'NOVALUE'"),
        ("1A=x", "invalid --env '1A=x'"),
        ("A B=x", "invalid --env 'A B=x'"),
        ("=x", "invalid --env '=x'"),
        ("DEVBOX_JOB_SHELL=/bin/zsh", "--env DEVBOX_JOB_SHELL is reserved for devbox"),
        ("NVIDIA_VISIBLE_DEVICES=0", "--env NVIDIA_VISIBLE_DEVICES would bypass GPU allocation"),
        ("A=x\ny", "--env A holds a newline or NUL"),
        ("A=x\0y", "--env A holds a newline or NUL"),
        ("A=\udcff", "--env A is not valid UTF-8 text"),
    ],
)
def test_bad_env_is_refused(env: str, message: str) -> None:
    assert usage_error(jobs.request, BOX, ["true"], envs=["OK=1", env]).message == message


# ---------------------------------------------------------------- --gpus: narrowing the box's GPUs


@pytest.mark.parametrize(
    ("text", "wanted"),
    [("5", ("5",)), ("4,5", ("4", "5")), ("5,4", ("5", "4")), ("4-5", ("4", "5")), (" 4 ", ("4",))],
)
def test_a_job_may_take_a_subset_of_the_boxs_gpus(text: str, wanted: tuple[str, ...]) -> None:
    assert jobs.request(BOX, ["true"], gpus_text=text).gpus == wanted


@pytest.mark.parametrize("text", ["none", "NONE", " none "])
def test_gpus_none_is_no_gpus(text: str) -> None:
    assert jobs.request(BOX, ["true"], gpus_text=text).gpus == ()
    assert jobs.request(NO_GPUS_BOX, ["true"], gpus_text=text).gpus == ()


def test_without_gpus_the_job_gets_all_of_the_boxs() -> None:
    assert jobs.request(BOX, ["true"]).gpus is None


@pytest.mark.parametrize(("text", "outside"), [("6", "6"), ("0,5", "0"), ("3-6", "3, 6"), ("0,1", "0, 1")])
def test_gpus_outside_the_box_are_refused_naming_the_boxs_gpus(text: str, outside: str) -> None:
    err = usage_error(jobs.request, BOX, ["true"], gpus_text=text)
    assert err.message == f"GPU {outside} is not one of box b's GPUs (4,5)"


def test_a_box_without_gpus_says_so() -> None:
    err = usage_error(jobs.request, NO_GPUS_BOX, ["true"], gpus_text="0")
    assert err.message == "GPU 0 is not one of box b's GPUs (none)"


@pytest.mark.parametrize("text", ["GPU-3f2a", "GPU-3f2a9c1e-0000-4000-8000-000000000000", "4,GPU-3f2a"])
def test_gpu_uuids_are_refused_naming_the_boxs_gpus(text: str) -> None:
    err = usage_error(jobs.request, BOX, ["true"], gpus_text=text)
    assert err.message == f"--gpus {text!r}: a job takes GPU indices"
    assert err.hint == "the box's GPUs: 4,5"


@pytest.mark.parametrize("text", ["", "x", "-1", "5,5", "7-3"])
def test_malformed_gpus_are_usage_errors(text: str) -> None:
    usage_error(jobs.request, BOX, ["true"], gpus_text=text)


@pytest.mark.parametrize(("text", "wanted"), [("0", ("0",)), ("7,3", ("7", "3")), ("0-2", ("0", "1", "2"))])
def test_a_box_holding_all_gpus_accepts_any_index(text: str, wanted: tuple[str, ...]) -> None:
    assert jobs.request(ALL_GPUS_BOX, ["true"], gpus_text=text).gpus == wanted


_BOX_GPUS = st.lists(st.integers(0, 15), min_size=1, max_size=8, unique=True)


@given(data=st.data(), owned=_BOX_GPUS)
def test_any_subset_of_the_boxs_gpus_is_accepted_and_numbered_from_0_in_host_order(
    data: st.DataObject, owned: list[int]
) -> None:
    box = replace(BOX, gpus=tuple(map(str, owned)))  # labels need not be sorted
    wanted = data.draw(st.permutations(owned).flatmap(lambda p: st.integers(1, len(p)).map(lambda n: p[:n])))
    req = jobs.request(box, ["true"], gpus_text=",".join(map(str, wanted)))
    assert req.gpus == tuple(map(str, wanted))
    first = shlex.split(jobs.command_line(box, req).splitlines()[0])
    rank = sorted(owned)  # numerically: host GPU 10 comes after host GPU 2
    assert first == ["export", "CUDA_VISIBLE_DEVICES=" + ",".join(str(rank.index(g)) for g in wanted)]


@given(owned=_BOX_GPUS, other=st.integers(0, 15))
def test_any_index_outside_the_box_is_refused(owned: list[int], other: int) -> None:
    assume(other not in owned)
    box = replace(BOX, gpus=tuple(map(str, owned)))
    err = usage_error(jobs.request, box, ["true"], gpus_text=f"{owned[0]},{other}")
    assert err.message == f"GPU {other} is not one of box b's GPUs ({','.join(map(str, owned))})"


# ---------------------------------------------------------------- command_line(): run for real


@pytest.mark.parametrize("shell", EVAL_SHELLS)
@settings(max_examples=40)
@given(args=st.lists(ARG, max_size=6))
def test_every_argument_reaches_the_job_exactly(shell: tuple[str, ...], args: list[str]) -> None:
    req = jobs.request(BOX, [*ARGV_PRINTER, *args])
    assert printed(run_line(shell, jobs.command_line(BOX, req))) == args


@pytest.mark.parametrize(
    "args",
    [
        [""],
        ["", "", ""],
        ["$HOME", "`id`", "$(id)", "${PATH:?x}", "'", '"', "\\", "\\'"],
        ["a\nb", "trailing newline\n\n", "\n", "\r\n", "tab\there"],
        ["*", "?", "[a-z]", "~", "~root", "#comment", "a;b", "a|b", "a&&b", "x>y", "<y"],
        ["-c", "--", "-", "exec", "eval", "export", "A=b"],
        ["é", "字", "😀", "\u2028", "\x85", "\x1b[31m", "\x01\x7f"],
    ],
)
@pytest.mark.parametrize("shell", EVAL_SHELLS)
def test_hard_arguments_reach_the_job_exactly(shell: tuple[str, ...], args: list[str]) -> None:
    req = jobs.request(BOX, [*ARGV_PRINTER, *args])
    assert printed(run_line(shell, jobs.command_line(BOX, req))) == args


def test_a_two_word_argv_is_not_a_shell_line() -> None:
    req = jobs.request(BOX, ["/bin/echo", "$HOME `id` 'x' > out; exit 3"])
    done = run_line(("/bin/sh",), jobs.command_line(BOX, req), {"HOME": "/home/alice"})
    assert (done.returncode, done.stdout) == (0, "$HOME `id` 'x' > out; exit 3\n")


@pytest.mark.parametrize("shell", EVAL_SHELLS)
@settings(max_examples=40)
@given(
    values=st.dictionaries(
        st.from_regex(r"T_[A-Za-z0-9_]{0,8}", fullmatch=True),
        st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\0\n")),
        max_size=5,
    )
)
def test_env_values_reach_the_job_exactly(shell: tuple[str, ...], values: dict[str, str]) -> None:
    req = jobs.request(BOX, [*ENV_PRINTER, *values], envs=[f"{k}={v}" for k, v in values.items()])
    assert printed(run_line(shell, jobs.command_line(BOX, req))) == values


def test_env_is_exported_to_a_shell_line_too() -> None:
    req = jobs.request(BOX, ['printf "%s|" "$A" "$B"'], envs=["A=x y", "B=$A 'q'"])
    done = run_line(("/bin/sh",), jobs.command_line(BOX, req))
    assert (done.returncode, done.stdout) == (0, "x y|$A 'q'|")


@pytest.mark.parametrize(
    ("box", "text", "visible"),
    [
        (BOX, "5", "1"),
        (BOX, "4", "0"),
        (BOX, "4,5", "0,1"),
        (BOX, "5,4", "1,0"),
        (BOX, "none", ""),
        (replace(BOX, gpus=("2", "10")), "10", "1"),  # numeric host order, not "10" < "2"
        (replace(BOX, gpus=("7", "3")), "7", "1"),
        (ALL_GPUS_BOX, "5", "5"),
        (ALL_GPUS_BOX, "3,1", "3,1"),
    ],
)
def test_cuda_visible_devices_numbers_the_boxs_own_gpus(box: Box, text: str, visible: str) -> None:
    req = jobs.request(box, [*ENV_PRINTER, "CUDA_VISIBLE_DEVICES"], gpus_text=text)
    assert printed(run_line(("/bin/sh",), jobs.command_line(box, req))) == {"CUDA_VISIBLE_DEVICES": visible}


def test_without_gpus_cuda_visible_devices_is_left_alone() -> None:
    req = jobs.request(BOX, [*ENV_PRINTER, "CUDA_VISIBLE_DEVICES"])
    assert "export" not in jobs.command_line(BOX, req)
    done = run_line(("/bin/sh",), jobs.command_line(BOX, req), {"CUDA_VISIBLE_DEVICES": "0,1"})
    assert printed(done) == {"CUDA_VISIBLE_DEVICES": "0,1"}


def test_gpus_win_over_an_env_cuda_visible_devices() -> None:
    req = jobs.request(
        BOX, [*ENV_PRINTER, "CUDA_VISIBLE_DEVICES"], envs=["CUDA_VISIBLE_DEVICES=7"], gpus_text="5"
    )
    assert printed(run_line(("/bin/sh",), jobs.command_line(BOX, req))) == {"CUDA_VISIBLE_DEVICES": "1"}


def test_a_single_string_is_a_shell_line() -> None:
    req = jobs.request(BOX, ['echo "$((2 + 3))" | tr 5 X; exit 4'])
    done = run_line(("/bin/sh",), jobs.command_line(BOX, req))
    assert (done.returncode, done.stdout) == (4, "X\n")


@pytest.fixture(scope="module")
def login_shell(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A stand-in for the user's login shell that prints the arguments it was given."""
    path = tmp_path_factory.mktemp("shell") / "loginsh"
    path.write_text(f"#!{sys.executable}\nimport sys, json\nprint(json.dumps(sys.argv[1:]))\n")
    path.chmod(0o755)
    return str(path)


@settings(max_examples=40)
@given(line=ARG.filter(lambda s: s != ""))
def test_a_single_string_goes_verbatim_to_the_login_shell(login_shell: str, line: str) -> None:
    req = jobs.request(BOX, [line])
    done = run_line(("/bin/sh",), jobs.command_line(BOX, req), {"DEVBOX_JOB_SHELL": login_shell})
    assert printed(done) == ["-c", line]


# ---------------------------------------------------------------- _parse(): list.sh's records


def status_text(code: int, ended: int = 1_700_000_100) -> str:
    """A status file as list.sh passes it on: `$(cat status)` drops the last newline."""
    return f"exit={code}\nended={ended}"


def record(
    name: str = "train",
    state: str = "ended",
    meta: str | None = None,
    started: str = "1700000000",
    status: str = "",
    killed: str = "",
    last: str = "",
) -> bytes:
    """One record as list.sh prints it (without the record separator)."""
    if meta is None:
        meta = json.dumps({"argv": ["python", "train.py"], "cwd": "/w", "gpus": ["5"]})
    return "\x1f".join([name, state, meta, started, status, killed, last]).encode()


def test_only_whole_records_are_jobs_a_stream_cut_mid_record_is_none() -> None:
    whole = record(name="a") + b"\x1e" + record(name="b") + b"\x1e"
    assert [j.name for j in jobs._records("b", whole)] == ["a", "b"]
    assert [j.name for j in jobs._records("b", whole + record(name="c")[:9])] == ["a", "b"]
    assert jobs._records("b", b"stray output\x1e") == [] == jobs._records("b", b"")


def test_an_ended_job_with_exit_3_exited_3() -> None:
    job = jobs._parse("b", record(status=status_text(3), last="loss 0.1"))
    assert job == jobs.Job(
        box="b",
        name="train",
        state=jobs.EXITED,
        argv=("python", "train.py"),
        cwd="/w",
        gpus=("5",),
        started=1_700_000_000.0,
        ended=1_700_000_100.0,
        exit_code=3,
        signal="",
        last_line="loss 0.1",
    )
    assert (job.describe(), job.exit_status, job.running) == ("exited 3", 3, False)
    assert job.duration() == job.duration(now=2_000_000_000) == 100.0


def test_a_status_file_with_its_last_newline_reads_the_same() -> None:
    job = jobs._parse("b", record(status="exit=0\nended=1700000100\n"))
    assert (job.state, job.exit_code, job.ended, job.describe(), job.exit_status) == (
        jobs.EXITED,
        0,
        1_700_000_100.0,
        "exited 0",
        0,
    )


@pytest.mark.parametrize("killed", ["TERM", "TERM\n"])
def test_an_ended_job_devbox_sent_term_was_killed_by_term(killed: str) -> None:
    job = jobs._parse("b", record(status=status_text(143), killed=killed))
    assert (job.state, job.signal, job.exit_code) == (jobs.KILLED, "TERM", 143)
    assert (job.describe(), job.exit_status) == ("killed by TERM", 143)


def test_an_ended_job_devbox_escalated_was_killed_by_kill() -> None:
    job = jobs._parse("b", record(status=status_text(137), killed="KILL"))
    assert (job.state, job.signal, job.describe()) == (jobs.KILLED, "KILL", "killed by KILL")


@pytest.mark.parametrize(
    ("code", "sig"), [(137, "KILL"), (143, "TERM"), (130, "INT"), (139, "SEGV"), (129, "HUP")]
)
def test_a_signal_nobody_recorded_is_read_from_the_exit_code(code: int, sig: str) -> None:
    job = jobs._parse("b", record(status=status_text(code)))
    assert (job.state, job.signal, job.exit_code, job.exit_status) == (jobs.KILLED, sig, code, code)
    assert job.describe() == f"killed by {sig}"


@pytest.mark.parametrize("code", [0, 1, 2, 127, 128])
def test_a_job_that_caught_the_signal_and_exited_itself_exited(code: int) -> None:
    job = jobs._parse("b", record(status=status_text(code), killed="TERM"))
    assert (job.state, job.signal, job.exit_code, job.exit_status) == (jobs.EXITED, "", code, code)
    assert job.describe() == f"exited {code}"


@pytest.mark.parametrize("code", [0, 1, 126, 127, 128, 193, 255])
def test_codes_that_are_no_signal_are_exits(code: int) -> None:
    job = jobs._parse("b", record(status=status_text(code)))
    assert (job.state, job.signal, job.exit_status) == (jobs.EXITED, "", code)


def test_a_lost_job_failed_and_has_no_duration() -> None:
    job = jobs._parse("b", record(state="lost"))
    assert (job.state, job.exit_code, job.exit_status, job.signal) == (jobs.LOST, None, 1, "")
    assert job.describe() == "lost"
    assert job.duration() is None
    assert job.duration(now=1_700_000_500) is None
    assert not job.running


def test_an_unknown_state_is_lost() -> None:
    assert jobs._parse("b", record(state="")).state == jobs.LOST
    assert jobs._parse("b", record(state="weird")).state == jobs.LOST


def test_a_running_job_grows_older() -> None:
    job = jobs._parse("b", record(state="running", last="step 5"))
    assert (job.state, job.running, job.describe(), job.ended, job.exit_code) == (
        jobs.RUNNING,
        True,
        "running",
        None,
        None,
    )
    assert job.duration(now=1_700_000_005) == 5.0
    assert job.duration(now=1_700_000_065) == 65.0
    assert job.duration(now=1_699_999_000) == 0.0  # a clock that went back is no negative age
    assert job.exit_status == 1  # not ended: nothing to report success with


def test_a_job_not_yet_past_its_starting_line_has_no_duration() -> None:
    job = jobs._parse("b", record(state="running", started=""))
    assert (job.started, job.duration(now=1_700_000_005)) == (None, None)


@pytest.mark.parametrize("meta", ["", "{", "{not json", "\x00\xff", '{"argv": null, "cwd": null}', "{}"])
def test_garbage_meta_does_not_crash(meta: str) -> None:
    job = jobs._parse("b", record(meta=meta, status=status_text(0)))
    assert (job.argv, job.cwd, job.gpus, job.state) == ((), "", (), jobs.EXITED)


def test_garbage_status_and_started_are_unknowns() -> None:
    job = jobs._parse("b", record(state="lost", started="soon", status="exit=x\nended=later\nnoise"))
    assert (job.started, job.ended, job.exit_code) == (None, None, None)


def test_undecodable_bytes_do_not_crash() -> None:
    job = jobs._parse("b", record(status=status_text(1), last="x").replace(b"x", b"\xff\xfe"))
    assert job.last_line == "\ufffd\ufffd"


@pytest.mark.parametrize(
    ("last", "shown"),
    [
        ("epoch 3 loss=0.12", "epoch 3 loss=0.12"),
        ("\x1b[1;32mepoch 3\x1b[0m loss=0.12", "epoch 3 loss=0.12"),
        ("\x1b]0;window title\x07done", "done"),
        ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x1b[2K\x1b[1G 45%|████▌     | 45/100", "45%|████▌     | 45/100"),
        ("bell\x07 back\x08space\x7f", "bell backspace"),
        ("  padded  ", "padded"),
        ("\x1b[?25l", ""),
    ],
)
def test_the_last_line_loses_terminal_escapes_and_control_characters(last: str, shown: str) -> None:
    assert jobs._parse("b", record(state="running", last=last)).last_line == shown


_FIELD = st.binary(max_size=40).map(lambda b: b.replace(b"\x1f", b"").replace(b"\x1e", b""))


@given(
    state=st.sampled_from([b"running", b"ended", b"lost"]),
    # Not JSON, or a JSON object: meta.json as devbox writes it, or cut short.
    meta=st.one_of(
        _FIELD.map(lambda b: b"{" + b),
        st.just(b""),
        st.dictionaries(st.sampled_from(["argv", "cwd", "gpus", "x"]), st.none()).map(
            lambda d: json.dumps(d).encode()
        ),
    ),
    started=st.one_of(_FIELD, st.integers(0, 2**40).map(lambda n: str(n).encode())),
    status=st.one_of(
        _FIELD,
        st.tuples(st.integers(-1, 300), st.integers(0, 2**40)).map(
            lambda t: f"exit={t[0]}\nended={t[1]}".encode()
        ),
    ),
    killed=st.one_of(_FIELD, st.sampled_from([b"TERM", b"KILL\n", b"INT", b""])),
    last=_FIELD,
)
def test_any_record_parses_to_a_job_that_prints_as_json(
    state: bytes, meta: bytes, started: bytes, status: bytes, killed: bytes, last: bytes
) -> None:
    job = jobs._parse("b", b"\x1f".join([b"j", state, meta, started, status, killed, last]))
    assert job.state in {jobs.RUNNING, jobs.EXITED, jobs.KILLED, jobs.LOST}
    assert (job.signal != "") == (job.state == jobs.KILLED)
    assert job.running == (state == b"running")
    assert isinstance(job.exit_status, int)
    assert "\x1b" not in job.last_line and job.last_line.isprintable()
    json.dumps(job.to_json())


# ---------------------------------------------------------------- Job.to_json()


def test_to_json_has_every_field_and_is_json() -> None:
    job = jobs._parse("b", record(status=status_text(3), last="loss 0.1"))
    out = job.to_json()
    assert out == {
        "box": "b",
        "name": "train",
        "state": "exited",
        "exit_code": 3,
        "signal": None,
        "argv": ["python", "train.py"],
        "cwd": "/w",
        "gpus": ["5"],
        "started": 1_700_000_000.0,
        "ended": 1_700_000_100.0,
        "duration": 100.0,
        "last_line": "loss 0.1",
    }
    assert json.loads(json.dumps(out)) == out


def test_to_json_of_killed_running_and_lost_jobs() -> None:
    killed = jobs._parse("b", record(status=status_text(143), killed="TERM")).to_json()
    assert (killed["state"], killed["signal"], killed["exit_code"]) == ("killed", "TERM", 143)
    running = jobs._parse("b", record(state="running")).to_json()
    assert (running["state"], running["ended"], running["exit_code"], running["signal"]) == (
        "running",
        None,
        None,
        None,
    )
    assert isinstance(running["duration"], float) and running["duration"] > 0
    lost = jobs._parse("b", record(state="lost")).to_json()
    assert (lost["state"], lost["duration"]) == ("lost", None)
    for out in (killed, running, lost):
        json.dumps(out)


# ---------------------------------------------------------------- arguments checked before the box


@pytest.mark.parametrize("sig", ["NOPE", "", "SIG", "9", "TERM ", "-TERM", "SIGNOPE"])
def test_kill_refuses_an_unknown_signal_before_reaching_the_box(sig: str) -> None:
    err = usage_error(jobs.kill, None, BOX, "train", sig)
    assert err.message == f"unknown signal {sig!r}"


@pytest.mark.parametrize("grace", [-1.0, -0.001, math.nan, math.inf, -math.inf])
def test_kill_refuses_a_bad_grace_before_reaching_the_box(grace: float) -> None:
    err = usage_error(jobs.kill, None, BOX, "train", "TERM", grace)
    assert err.message.startswith("--grace ")


def test_kill_refuses_a_bad_job_name_before_reaching_the_box() -> None:
    assert usage_error(jobs.kill, None, BOX, "no such", "NOPE").message == "invalid job name 'no such'"


@pytest.mark.parametrize(
    ("sig", "grace"), [("TERM", 10.0), ("term", 0.0), ("SIGKILL", 0.0), ("sigusr1", 3.5)]
)
def test_kill_with_good_arguments_goes_on_to_the_box(sig: str, grace: float) -> None:
    # No engine: getting past validation shows as the box being unreachable.
    with pytest.raises(DevboxError, match="cannot reach box b") as info:
        jobs.kill(None, BOX, "train", sig, grace)
    assert not isinstance(info.value, UsageError)


def test_logs_follow_and_wait_check_names_and_lines_before_reaching_the_box() -> None:
    assert usage_error(jobs.logs, None, BOX, "a b").message == "invalid job name 'a b'"
    assert usage_error(jobs.logs, None, BOX, "train", -1).message.startswith("-n -1:")
    assert usage_error(jobs.follow, None, BOX, "train", print, -5).message.startswith("-n -5:")
    assert usage_error(jobs.wait, None, BOX, ["train", "a:b"]).message == "invalid job name 'a:b'"


def test_lines() -> None:
    assert jobs.check_lines(None) == "all"
    assert jobs.check_lines(0) == "0"
    assert jobs.check_lines(100) == "100"
    err = usage_error(jobs.check_lines, -1)
    assert err.message == "-n -1: give a number of lines, 0 or more"


# ---------------------------------------------------------------- the job scripts, run in a fake box

SH = shutil.which("sh") or "/bin/sh"
SCRIPTS = ["lib.sh", "run.sh", "start.sh", "list.sh", "logs.sh", "kill.sh", "prune.sh"]


def test_every_job_script_ships_with_the_package() -> None:
    shipped = {p.name for p in resources.files("devbox.jobscripts").iterdir() if p.name.endswith(".sh")}
    assert set(SCRIPTS) <= shipped


@pytest.mark.parametrize("name", SCRIPTS)
def test_job_scripts_are_valid_sh(name: str) -> None:
    # As _exec_create runs them: lib.sh, then the script (run.sh runs alone, as the wrapper).
    for text in (jobs._script(name), jobs._script("lib.sh") + "\n" + jobs._script(name)):
        done = subprocess.run(["sh", "-n"], input=text, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr


def _incarnation() -> str:
    """What lib.sh's `incarnation` prints: field 22 of /proc/1/stat, as `cut -d' ' -f22` splits it."""
    # devbox boxes and CI are Linux: a missing /proc/1/stat is a failure, never a skip.
    return Path("/proc/1/stat").read_text().split(" ")[21]


def _dead_pid() -> int:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())  # one past the largest PID
    except OSError:
        return 2**22 + 1


class FakeBox:
    """A box's user's side, without the box: $HOME with ~/.devbox/jobs, and a fake tmux on PATH
    (it logs its arguments and exits with `tmux_rc`)."""

    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        self.jobs = self.home / ".devbox" / "jobs"
        self.jobs.mkdir(parents=True)
        self.bin = root / "bin"
        self.bin.mkdir()
        self.tmux_log = root / "tmux.log"
        tmux = self.bin / "tmux"
        tmux.write_text(
            '#!/bin/sh\nprintf \'%s\\n\' "$*" >>"$FAKE_TMUX_LOG"\n'
            # list-sessions: the session names in FAKE_TMUX_SESSIONS, one per line.
            "[ \"$1\" = list-sessions ] && printf '%s\\n' $FAKE_TMUX_SESSIONS\n"
            'exit "${FAKE_TMUX_RC:-1}"\n'
        )
        tmux.chmod(0o755)
        self.tmux_rc = 1
        self.tmux_sessions = ""
        self.path = f"{self.bin}:{os.environ['PATH']}"

    def job(
        self,
        name: str,
        *,
        meta: dict | None = None,
        incarnation: str | None = None,
        pid: int | None = None,
        started: int | None = None,
        status: str | None = None,
        killed: str | None = None,
        log: bytes | None = None,
    ) -> Path:
        d = self.jobs / name
        d.mkdir()
        files = {
            "meta.json": json.dumps(meta if meta is not None else {"argv": ["x"], "cwd": "", "gpus": []})
            + "\n",
            "incarnation": None if incarnation is None else incarnation + "\n",
            "pid": None if pid is None else f"{pid}\n",
            "started": None if started is None else f"{started}\n",
            "status": status,
            "killed": killed,
        }
        for file, text in files.items():
            if text is not None:
                (d / file).write_text(text)
        if log is not None:
            (d / "log").write_bytes(log)
        return d

    def run(self, script: str, *args: str, path: str | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run lib.sh + `script` (a file name or a snippet) as _exec_create does."""
        body = jobs._script(script) if script.endswith(".sh") else script
        return subprocess.run(
            [SH, "-c", jobs._script("lib.sh") + "\n" + body, f"devbox-{script}", *args],
            env={
                "HOME": str(self.home),
                "PATH": path or self.path,
                "LC_ALL": "C",
                "FAKE_TMUX_LOG": str(self.tmux_log),
                "FAKE_TMUX_RC": str(self.tmux_rc),
                "FAKE_TMUX_SESSIONS": self.tmux_sessions,
            },
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )

    def state(self, job: Path, path: str | None = None) -> str:
        done = self.run('job_state "$1"', str(job), path=path)
        assert done.returncode == 0, done.stderr
        return done.stdout.decode().strip()


@pytest.fixture
def fake_box(tmp_path: Path) -> FakeBox:
    return FakeBox(tmp_path)


def test_a_job_that_recorded_its_end_ended(fake_box: FakeBox) -> None:
    done = "exit=0\nended=1700000100\n"
    assert fake_box.state(fake_box.job("a", status=done)) == "ended"
    assert fake_box.state(fake_box.job("b", status=done, incarnation="nope", pid=_dead_pid())) == "ended"
    assert (
        fake_box.state(fake_box.job("c", status=done, incarnation=_incarnation(), pid=os.getpid())) == "ended"
    )


def test_a_live_job_of_this_incarnation_runs(fake_box: FakeBox) -> None:
    assert fake_box.state(fake_box.job("a", incarnation=_incarnation(), pid=os.getpid())) == "running"


def test_a_job_of_this_incarnation_whose_wrapper_died_is_lost(fake_box: FakeBox) -> None:
    assert fake_box.state(fake_box.job("a", incarnation=_incarnation(), pid=_dead_pid())) == "lost"


@pytest.mark.parametrize("incarnation", [None, "", "0", "x"])
def test_a_job_of_an_earlier_incarnation_is_lost_even_if_its_pid_lives(
    fake_box: FakeBox, incarnation: str | None
) -> None:
    if incarnation == "x":
        incarnation = str(int(_incarnation()) + 1)
    fake_box.tmux_rc = 0
    assert fake_box.state(fake_box.job("a", incarnation=incarnation, pid=os.getpid())) == "lost"


def test_a_starting_job_runs_while_its_tmux_session_exists(fake_box: FakeBox) -> None:
    job = fake_box.job("starting", incarnation=_incarnation())
    fake_box.tmux_rc = 0
    assert fake_box.state(job) == "running"
    assert fake_box.tmux_log.read_text().splitlines() == ["has-session -t =starting"]
    fake_box.tmux_rc = 1
    assert fake_box.state(job) == "lost"


def test_a_starting_job_is_lost_where_there_is_no_tmux(fake_box: FakeBox, tmp_path: Path) -> None:
    only = tmp_path / "only"  # cat and cut, but no tmux
    only.mkdir()
    for tool in ("cat", "cut"):
        (only / tool).symlink_to(shutil.which(tool))
    assert fake_box.state(fake_box.job("a", incarnation=_incarnation()), path=str(only)) == "lost"


def _listed(done: subprocess.CompletedProcess[bytes]) -> list[jobs.Job]:
    """What list_jobs makes of list.sh's output."""
    assert done.returncode == 0, done.stderr
    return [jobs._parse("b", rec) for rec in done.stdout.split(b"\x1e") if rec.strip()]


def test_list_sh_prints_records_parse_reads(fake_box: FakeBox) -> None:
    inc = _incarnation()
    meta = {"argv": ["python", "-c", "print('a\\x1fb')"], "cwd": "/w s", "gpus": ["4"]}
    fake_box.job(
        "exited",
        meta=meta,
        incarnation=inc,
        pid=_dead_pid(),
        started=1_700_000_000,
        status="exit=3\nended=1700000100\n",
        log=b"epoch 1\n\x1b[32mepoch 2\x1b[0m\r\n\n   \n",
    )
    fake_box.job(
        "killed",
        incarnation=inc,
        started=1_700_000_001,
        status="exit=143\nended=1700000002\n",
        killed="TERM\n",
    )
    fake_box.job(
        "live", incarnation=inc, pid=os.getpid(), started=1_700_000_002, log=b"a\x1fb\x1ec\nstep 9\r"
    )
    fake_box.job("old", incarnation="0", pid=os.getpid(), started=1_700_000_003, log=b"")
    (fake_box.jobs / "half").mkdir()  # being set up: no meta.json yet
    found = {j.name: j for j in _listed(fake_box.run("list.sh"))}
    assert sorted(found) == ["exited", "killed", "live", "old"]
    exited = found["exited"]
    assert (exited.state, exited.exit_code, exited.argv, exited.cwd, exited.gpus) == (
        jobs.EXITED,
        3,
        ("python", "-c", "print('a\\x1fb')"),
        "/w s",
        ("4",),
    )
    assert (exited.started, exited.ended, exited.last_line) == (1_700_000_000.0, 1_700_000_100.0, "epoch 2")
    assert (found["killed"].state, found["killed"].signal) == (jobs.KILLED, "TERM")
    assert (found["live"].state, found["live"].last_line) == (jobs.RUNNING, "step 9")
    assert (found["old"].state, found["old"].last_line) == (jobs.LOST, "")


def test_list_sh_lists_only_the_named_jobs_that_exist(fake_box: FakeBox) -> None:
    fake_box.job("a", status="exit=0\nended=1\n")
    fake_box.job("b", status="exit=0\nended=1\n")
    assert [j.name for j in _listed(fake_box.run("list.sh", "b", "nope"))] == ["b"]
    assert _listed(fake_box.run("list.sh", "nope")) == []


def test_list_sh_of_a_user_who_never_ran_a_job_is_empty(fake_box: FakeBox) -> None:
    fake_box.jobs.rmdir()
    assert _listed(fake_box.run("list.sh")) == []


def test_a_last_line_in_a_truncated_character_does_not_break_the_record(fake_box: FakeBox) -> None:
    fake_box.job("a", status="exit=0\nended=1\n", log=("é" * 3000 + "x").encode())  # tail -c 4096 cuts an é
    (job,) = _listed(fake_box.run("list.sh"))
    assert job.state == jobs.EXITED
    assert job.last_line == "\ufffd" + "é" * 2047 + "x"


def test_logs_sh_prints_all_or_the_last_lines(fake_box: FakeBox) -> None:
    fake_box.job("a", status="exit=0\nended=1\n", log=b"1\n2\n3\n4\n")
    assert fake_box.run("logs.sh", "a", "all", "0").stdout == b"1\n2\n3\n4\n"
    assert fake_box.run("logs.sh", "a", "2", "0").stdout == b"3\n4\n"
    assert fake_box.run("logs.sh", "a", "9", "0").stdout == b"1\n2\n3\n4\n"
    assert fake_box.run("logs.sh", "a", "0", "0").stdout == b""
    assert fake_box.run("logs.sh", "a", "all", "1").stdout == b"1\n2\n3\n4\n"  # ended: no following


def test_logs_and_kill_of_no_such_job_exit_66(fake_box: FakeBox) -> None:
    assert fake_box.run("logs.sh", "nope", "all", "0").returncode == 66
    assert fake_box.run("kill.sh", "nope", "TERM", "5").returncode == 66


def test_kill_of_a_job_that_is_not_running_exits_67_and_sends_nothing(fake_box: FakeBox) -> None:
    job = fake_box.job("a", status="exit=0\nended=1\n")
    assert fake_box.run("kill.sh", "a", "TERM", "5").returncode == 67
    assert not (job / "killed").exists()
    fake_box.job("b", incarnation="0", pid=os.getpid())  # lost
    assert fake_box.run("kill.sh", "b", "TERM", "5").returncode == 67


def test_prune_sh_forgets_ended_and_lost_jobs_and_keeps_their_logs(fake_box: FakeBox) -> None:
    inc = _incarnation()
    fake_box.job("ended", started=1_700_000_000, status="exit=0\nended=1\n", log=b"done\n")
    fake_box.job("lost", incarnation="0", log=b"half\n")
    fake_box.job("live", incarnation=inc, pid=os.getpid(), log=b"going\n")
    done = fake_box.run("prune.sh", "0")
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.decode().split()) == ["ended", "lost"]
    assert sorted(p.name for p in fake_box.jobs.iterdir()) == ["live"]
    archive = fake_box.home / ".devbox" / "logs"
    assert (archive / "ended-1700000000.log").read_bytes() == b"done\n"
    (lost_log,) = archive.glob("lost-*.log")
    assert lost_log.read_bytes() == b"half\n"


def test_prune_sh_can_drop_the_logs(fake_box: FakeBox) -> None:
    fake_box.job("ended", started=1_700_000_000, status="exit=0\nended=1\n", log=b"done\n")
    done = fake_box.run("prune.sh", "1")
    assert done.stdout == b"ended\n"
    assert list(fake_box.jobs.iterdir()) == []
    assert not (fake_box.home / ".devbox" / "logs").exists()


def test_start_sh_without_tmux_exits_71(fake_box: FakeBox, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = fake_box.run("start.sh", "a", "{}", "exec true", "", "", path=str(empty))
    assert done.returncode == 71
    assert b"no tmux" in done.stderr


@pytest.mark.parametrize(
    ("dirs", "sessions", "chosen"),
    [
        ((), "", "job-1"),
        (("job-1", "job-3"), "", "job-2"),
        (("job-1", "job-3"), "main job-2", "job-4"),  # the user's own tmux session job-2 too
        (("job-2", "train", "job-x"), "job-1", "job-3"),
    ],
)
def test_start_sh_names_a_job_the_lowest_job_n_free_of_directories_and_tmux_sessions(
    fake_box: FakeBox, dirs: tuple[str, ...], sessions: str, chosen: str
) -> None:
    for name in dirs:
        fake_box.job(name, status="exit=0\nended=1\n")
    fake_box.tmux_sessions = sessions
    done = fake_box.run("start.sh", "", "{}", "exec true", "", "")
    assert done.returncode == 75  # the fake tmux starts nothing
    assert f"new-session -d -s {chosen} " in fake_box.tmux_log.read_text()
    assert sorted(p.name for p in fake_box.jobs.iterdir()) == sorted(dirs)  # its directory went again


def test_start_sh_will_not_take_the_name_of_a_running_job(fake_box: FakeBox) -> None:
    job = fake_box.job("a", incarnation=_incarnation(), pid=os.getpid(), log=b"mine\n")
    done = fake_box.run("start.sh", "a", "{}", "exec true", "", "")
    assert (done.returncode, done.stderr) == (73, b"a\n")
    assert (job / "log").read_bytes() == b"mine\n"
