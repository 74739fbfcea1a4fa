"""The codebase stays ruff-clean and ruff-formatted (pyproject's settings), so CI enforces the style."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert exe, "ruff is a test dependency: pip install '.[test]'"
    return subprocess.run([exe, *args, str(ROOT)], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_ruff_finds_nothing_to_complain_about() -> None:
    proc = ruff("check", "--no-cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_file_is_ruff_formatted() -> None:
    proc = ruff("format", "--check", "--no-cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr
