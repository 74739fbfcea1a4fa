"""Regressions found by review of jobs.py and its scripts: each failed before its fix."""

import os
import subprocess
from pathlib import Path

import pytest

from devbox import jobs
from devbox.errors import DevboxError, UsageError

from .test_jobs import BOX


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
