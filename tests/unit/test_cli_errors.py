"""The installed `devbox` command on bad input and without a Docker engine: one `error:` line and an
exit code, never a traceback; `--help` stays light."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

DEVBOX = Path(sys.executable).parent / "devbox"
NO_ENGINE = "unix:///nonexistent.sock"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


def clean_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DEVBOX_", "XDG_", "DOCKER_")) and k not in ("FORCE_COLOR", "PYTHONPATH")
    }
    env.update(HOME=str(home), DOCKER_HOST=NO_ENGINE, NO_COLOR="1", COLUMNS="80")
    return env


def run_in(home: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `argv` from `home` with a clean environment (the checkout never shadows the package)."""
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=clean_env(home),
        cwd=home,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def devbox(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert DEVBOX.is_file(), f"the devbox console script is installed next to {sys.executable}"
    return run_in(home, [str(DEVBOX), *args])


def python_in(home: Path, code: str) -> subprocess.CompletedProcess[str]:
    return run_in(home, [sys.executable, "-c", code])


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


BAD_UP = {
    "uppercase name": (["Bad_Name"], "invalid box name 'Bad_Name'"),
    "64-char name": (["a" * 64], "invalid box name"),
    "gpus word": (["--gpus", "abc"], 'invalid GPU selection "abc"'),
    "gpus twice": (["--gpus", "0,0"], "listed twice"),
    "gpus reversed range": (["--gpus", "3-1"], "reversed"),
    "gpus all plus index": (["--gpus", "all,0"], "cannot be combined"),
    "gpus negative": (["--gpus=-1"], "cannot be negative"),
    "gpus empty item": (["--gpus", "0,,1"], "empty item"),
    "gpus MIG": (["--gpus", "MIG-0123"], "MIG devices cannot be selected"),
    "gpus with gpu-count": (
        ["--gpus", "0", "--gpu-count", "1"],
        "--gpus and --gpu-count cannot be used together",
    ),
    "gpu-count zero": (["--gpu-count", "0"], "--gpu-count must be at least 1"),
    "relative mount source": (["--mount", "data:/data"], "mount source 'data' is not an absolute path"),
    "missing mount source": (
        ["--mount", "/nonexistent/src:/data"],
        "mount source /nonexistent/src does not exist",
    ),
    "relative mount target": (["--mount", "/:data"], "mount target 'data' is not an absolute path"),
    "mount without target": (["--mount", "/tmp"], "invalid --mount '/tmp'"),
    "env without value": (["--env", "NOVALUE"], "invalid --env 'NOVALUE'"),
    "env bad name": (["--env", "1A=b"], "invalid --env '1A=b'"),
    "env reserved": (["--env", "DEVBOX_USER=root"], "--env DEVBOX_USER is reserved for devbox"),
    "shm-size": (["--shm-size", "8gb"], "invalid --shm-size '8gb'"),
    "memory": (["--memory", "lots"], "invalid --memory 'lots'"),
    "cpus zero": (["--cpus", "0"], "invalid --cpus 0.0"),
    "cpus negative": (["--cpus=-2"], "invalid --cpus -2.0"),
    "relative workdir": (["--workdir", "workspace"], "--workdir 'workspace' is not an absolute path"),
    # Once silently dropped: with no --build and no build in a project file, there is nothing to build.
    "build-arg alone": (["--build-arg", "X=1"], "--build-context and --build-arg apply to a build"),
    "build-context alone": (["--build-context", "/nonexistent"], "apply to a build, and none is given"),
}


@pytest.mark.parametrize(("args", "message"), BAD_UP.values(), ids=BAD_UP.keys())
def test_up_with_bad_input_exits_2_with_one_error_line_before_touching_anything(
    home: Path, args: list[str], message: str
) -> None:
    proc = devbox(home, "up", *args)
    assert proc.returncode == 2, proc.stderr
    assert message in one_error_line(proc)
    assert proc.stdout == ""
    # Rejected before the login key is made and before the (unreachable) engine is asked.
    assert not (home / ".config" / "devbox").exists()
    assert "cannot reach" not in proc.stderr


@pytest.mark.parametrize(
    "args", [["ls"], ["ls", "--all", "--json"], ["stop", "x"], ["rm", "x"], ["gpus"], ["ssh-config"]]
)
def test_commands_without_a_reachable_engine_exit_1_naming_it(home: Path, args: list[str]) -> None:
    proc = devbox(home, *args)
    assert proc.returncode == 1, proc.stderr
    line = one_error_line(proc)
    assert f"cannot reach the Docker engine at {NO_ENGINE}: no socket there" in line
    assert "DOCKER_HOST" in line, "the hint says what to check"
    assert proc.stdout == ""


def test_unknown_host_name_is_one_line_listing_the_known_ones(home: Path) -> None:
    proc = devbox(home, "ls", "--host", "gpu9")
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "no host named 'gpu9' (known: local)" in line
    assert "devbox host add" in line


@pytest.mark.parametrize("url", ["ssh://me@gpu1", "tcp://10.0.0.1:2375"])
def test_a_docker_host_that_is_not_a_local_socket_points_at_host_add(home: Path, url: str) -> None:
    env = clean_env(home) | {"DOCKER_HOST": url}
    proc = subprocess.run([str(DEVBOX), "ls"], capture_output=True, text=True, env=env, cwd=home, timeout=60)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert f"DOCKER_HOST={url} is not a local engine" in line
    assert "devbox host add" in line


def test_valid_up_gets_as_far_as_the_engine_and_fails_there_with_exit_1(home: Path) -> None:
    proc = devbox(home, "up", "okbox", "--gpus", "0-1", "--mount", f"{home}:/w:ro", "--env", "A=b=c")
    assert proc.returncode == 1, proc.stderr
    assert "cannot reach" in one_error_line(proc)


def test_click_parse_errors_are_one_error_line_with_exit_2(home: Path) -> None:
    proc = devbox(home, "up", "--cpus", "abc")
    assert proc.returncode == 2
    assert "Invalid value for '--cpus'" in one_error_line(proc)


def test_unknown_command_is_one_error_line_with_exit_2(home: Path) -> None:
    proc = devbox(home, "frobnicate")
    assert proc.returncode == 2
    assert "No such command 'frobnicate'" in one_error_line(proc)


def test_help_lists_every_command(home: Path) -> None:
    proc = devbox(home, "--help")
    assert proc.returncode == 0
    assert proc.stderr == ""
    listed = proc.stdout.split("Commands:", 1)[1].split()
    for command in ("up", "ls", "ssh", "stop", "start", "restart", "rm", "ssh-config", "code", "gpus"):
        assert command in listed


def test_version_prints_the_package_version(home: Path) -> None:
    proc = devbox(home, "--version")
    assert proc.returncode == 0
    assert "0.1.0" in proc.stdout


HEAVY_IMPORT_CHECK = """
import sys
sys.argv = ["devbox", *{argv!r}]
from devbox.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted(
    m for m in ("docker", "paramiko", "invoke", "textual", "yaml", "charset_normalizer") if sys.modules.get(m)
)
print("RESULT", code, ",".join(heavy) or "-", file=sys.stderr)
"""


def heavy_modules(home: Path, argv: list[str]) -> tuple[str, set[str]]:
    proc = python_in(home, HEAVY_IMPORT_CHECK.format(argv=argv))
    result = [ln for ln in proc.stderr.splitlines() if ln.startswith("RESULT ")]
    assert len(result) == 1, proc.stderr
    _, code, heavy = result[0].split()
    return code, set() if heavy == "-" else set(heavy.split(","))


@pytest.mark.parametrize("argv", [["--help"], ["up", "--help"], ["up", "Bad_Name"]])
def test_help_and_usage_errors_import_no_docker_paramiko_or_textual(home: Path, argv: list[str]) -> None:
    code, heavy = heavy_modules(home, argv)
    assert code in ("0", "2")
    assert heavy == set()


def test_ls_imports_the_docker_sdk_without_its_ssh_transport_paramiko_or_textual(home: Path) -> None:
    # docker-py imports paramiko for ssh:// engines devbox never uses: 0.1 s of every command;
    # requests, a character-set detector; with no hosts.yaml there is no YAML to parse.
    code, heavy = heavy_modules(home, ["ls"])
    assert code == "1"
    assert heavy == {"docker"}


def test_paramiko_still_loads_where_devbox_logs_in_without_invoke_or_docker_s_ssh_transport(
    home: Path,
) -> None:
    code = (
        "import sys, devbox, docker, paramiko; from devbox import sshclient; "
        "print(sorted(m for m in ('invoke', 'docker.transport.sshconn') if sys.modules.get(m)), "
        "paramiko.SSHClient.__name__, docker.from_env.__name__)"
    )
    proc = python_in(home, code)
    assert proc.stdout.split() == ["[]", "SSHClient", "from_env"], proc.stderr


def test_requests_decodes_the_engine_s_text_without_a_detector_and_without_a_warning(home: Path) -> None:
    code = (
        "import sys, devbox, docker, requests; r = requests.Response(); r._content = 'Grüße ✓'.encode(); "
        "print(sys.modules.get('charset_normalizer'), r.text == 'Grüße ✓', r.apparent_encoding)"
    )
    proc = run_in(home, [sys.executable, "-W", "error", "-c", code])  # a warning would be an error
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["None", "True", "utf-8"]


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_a_meaningless_timeout_is_refused(home: Path, value: str) -> None:
    proc = devbox(home, "restart", "x", "--timeout", value)
    assert proc.returncode == 2
    assert "give a number of seconds above 0, at most 3600" in one_error_line(proc)


def test_an_empty_identity_is_refused_not_ignored(home: Path) -> None:
    proc = devbox(home, "up", "box", "--identity", "")
    assert proc.returncode == 2
    assert "--identity is empty" in one_error_line(proc)
    assert not (home / ".config" / "devbox").exists()


def test_a_bad_connect_timeout_is_refused_before_a_host_is_saved(home: Path) -> None:
    env = clean_env(home) | {"DEVBOX_CONNECT_TIMEOUT": "8s"}
    proc = subprocess.run(
        [str(DEVBOX), "host", "add", "gpu1", "gpu1.lab"], capture_output=True, text=True, env=env, cwd=home
    )
    assert proc.returncode == 2
    assert "invalid DEVBOX_CONNECT_TIMEOUT='8s'" in one_error_line(proc)
    assert not (home / ".config" / "devbox" / "hosts.yaml").exists()


def test_host_add_of_a_server_that_fails_its_check_keeps_it_and_exits_1(home: Path) -> None:
    import socket

    with socket.socket() as s:  # a port on 127.0.0.1 nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = devbox(home, "host", "add", "dead", f"nobody@127.0.0.1:{port}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in proc.stdout
    assert "error: dead is added but failed a check above" in one_error_line(proc)
    assert "dead:" in (home / ".config" / "devbox" / "hosts.yaml").read_text()


TEARDOWN_CHECK = """
import atexit, sys, threading, time

class Noisy:
    def __del__(self):
        sys.stderr.write("teardown ran\\n")

noisy = Noisy()  # freed by Python's teardown only
atexit.register(lambda: print("atexit ran", file=sys.stderr))
if {keep_thread!r}:
    threading.Thread(target=time.sleep, args=(0.2,)).start()  # not a daemon: Python waits for it
sys.argv = ["devbox", *{argv!r}]
from devbox.cli import entry
entry()
"""


@pytest.mark.parametrize(("argv", "code"), [(["--version"], 0), (["up", "Bad_Name"], 2)])
def test_the_command_skips_python_s_teardown_but_flushes_and_runs_exit_handlers(
    home: Path, argv: list[str], code: int
) -> None:
    proc = python_in(home, TEARDOWN_CHECK.format(keep_thread=False, argv=argv))
    assert proc.returncode == code, proc.stderr
    assert "atexit ran" in proc.stderr and "teardown ran" not in proc.stderr
    if code == 0:
        assert "0.1.0" in proc.stdout
    else:
        assert "invalid box name 'Bad_Name'" in proc.stderr


def test_a_kill_while_the_command_ends_ends_it_without_a_traceback(home: Path) -> None:
    # SIGTERM arriving while exit handlers run (urllib3's, paramiko's): the CLI's own handler,
    # which raises, is gone by then, so the process ends by the signal as any other would.
    code = (
        "import atexit, os, signal, sys, time\n"
        "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGTERM), time.sleep(1), print('survived')))\n"
        "sys.argv = ['devbox', '--version']\n"
        "from devbox.cli import entry\n"
        "entry()\n"
    )
    proc = python_in(home, code)
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    assert "Traceback" not in proc.stderr and "survived" not in proc.stdout
    assert "0.1.0" in proc.stdout


def test_a_command_leaving_a_running_thread_exits_the_usual_way(home: Path) -> None:
    proc = python_in(home, TEARDOWN_CHECK.format(keep_thread=True, argv=["--version"]))
    assert proc.returncode == 0, proc.stderr
    assert "0.1.0" in proc.stdout
    assert "atexit ran" in proc.stderr and "teardown ran" in proc.stderr


@pytest.mark.parametrize("stdout", ["closed pipe", "no stdout"])
def test_output_that_cannot_be_written_ends_as_it_did_before(home: Path, stdout: str) -> None:
    # The reader went away, or there is no stdout at all: the same status and report as main().
    def run(function: str) -> tuple[int, str]:
        code = f"import sys; sys.argv = ['devbox', '--help']\nfrom devbox.cli import {function}\n{function}()"
        read, write = os.pipe()
        os.close(read)  # a reader that went away
        try:
            proc = subprocess.run(
                [sys.executable, "-c", code],
                stdout=write if stdout == "closed pipe" else None,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "HOME": str(home)},
                timeout=60,
                preexec_fn=None if stdout == "closed pipe" else (lambda: os.close(1)),
            )
        finally:
            os.close(write)
        return proc.returncode, proc.stderr.replace(function, "F")

    via_entry = run("entry")
    assert via_entry == run("main")
    assert "Traceback" not in via_entry[1]
