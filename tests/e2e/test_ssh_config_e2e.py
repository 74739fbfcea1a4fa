"""OpenSSH and VS Code integration, with the real ssh client: pinned host keys, one Include line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .conftest import User, box_container

TRICKY = (
    "# my config — ünïcödé comments\r\n"
    "Include ~/.ssh/work/*.conf\r\n"
    "Host *\r\n"
    "    ServerAliveInterval 15\r\n"
    "    User someone-else\r\n"
    "\r\n"
    "Match host github.com\r\n"
    "    IdentityFile ~/.ssh/gh\r\n"
)


def _ssh_g(user: User, alias: str) -> dict[str, str]:
    proc = user.run("ssh", "-G", "-F", str(user.ssh_config), alias)
    assert proc.returncode == 0, proc.stderr
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)


def _write_as_user(user: User, path, data: bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_bytes(data)
    path.chmod(mode)
    for p in (path.parent, path):
        os.chown(p, user.uid, user.gid)


def test_existing_config_is_preserved_byte_for_byte_except_one_include_line(
    fresh_user: User, name: str
) -> None:
    user = fresh_user
    _write_as_user(user, user.ssh_config, TRICKY.encode())
    user.ok("up", name)
    include = f"Include {user.home}/.ssh/devbox/config\r\n".encode()
    assert user.ssh_config.read_bytes() == include + TRICKY.encode()
    assert (user.home / ".ssh" / "config.devbox-backup").read_bytes() == TRICKY.encode()
    # Our block wins over the user's `Host *` User, because the Include comes first.
    opts = _ssh_g(user, f"devbox-{name}")
    assert opts["user"] == user.name
    proc = user.ssh(f"devbox-{name}", "id", "-u")
    assert proc.returncode == 0 and proc.stdout.strip() == str(user.uid), proc.stderr
    user.ok("rm", name, "--purge")
    assert user.ssh_config.read_bytes() == include + TRICKY.encode()


def test_ssh_G_shows_pinned_options_and_plain_ssh_logs_in_without_prompt(fresh_user: User, name: str) -> None:
    user = fresh_user
    user.ok("up", name)
    assert not (user.ssh_config.stat().st_mode & 0o077)
    assert (user.home / ".ssh").stat().st_mode & 0o777 == 0o700
    opts = _ssh_g(user, f"devbox-{name}")
    assert opts["hostname"] == "127.0.0.1"
    assert opts["hostkeyalias"] == f"devbox-{name}"
    assert opts["stricthostkeychecking"] == "true"
    assert opts["userknownhostsfile"] == f"{user.home}/.config/devbox/known_hosts"
    assert opts["identitiesonly"] == "yes"
    assert opts["identityfile"] == f"{user.home}/.config/devbox/id_ed25519"
    assert opts["controlmaster"] == "auto" and opts["controlpath"].startswith(str(user.home))
    proc = user.ssh(f"devbox-{name}", "id", "-u")
    assert proc.returncode == 0 and proc.stdout.strip() == str(user.uid), proc.stderr
    # Connection sharing: the first ssh left a master that the next one reuses.
    check = user.run("ssh", "-F", str(user.ssh_config), "-O", "check", f"devbox-{name}")
    assert check.returncode == 0, check.stderr
    user.run("ssh", "-F", str(user.ssh_config), "-O", "exit", f"devbox-{name}")
    user.ok("rm", name, "--purge")


def test_changed_host_key_is_refused_by_ssh_and_by_devbox(fresh_user: User, client, name: str) -> None:
    user = fresh_user
    user.ok("up", name)
    c = box_container(client, name)
    key = "/etc/devbox/ssh_host_ed25519_key"
    regen = c.exec_run(["sh", "-c", f"rm -f {key}* && ssh-keygen -q -t ed25519 -N '' -f {key}"])
    assert regen.exit_code == 0, regen.output
    proc = user.ssh(f"devbox-{name}", "true", options=("-o", "ControlPath=none"))
    assert proc.returncode == 255
    assert (
        "REMOTE HOST IDENTIFICATION HAS CHANGED" in proc.stderr
        or "Host key verification failed" in proc.stderr
    )
    # devbox re-pins from the box itself, through the Docker API (the root of trust for a box).
    user.ok("start", name)
    assert user.ssh(f"devbox-{name}", "true", options=("-o", "ControlPath=none")).returncode == 0
    # A box whose sshd presents a key other than its own public key file is refused by paramiko.
    swap = c.exec_run(
        ["sh", "-c", f"rm -f {key} && ssh-keygen -q -t ed25519 -N '' -f /tmp/k && mv /tmp/k {key}"]
    )
    assert swap.exit_code == 0, swap.output
    refused = user.devbox("start", name, "--timeout", "20")
    assert refused.returncode == 1 and "not the one devbox pinned" in refused.stderr
    user.ok("rm", name, "--purge")


def test_lost_config_dir_gets_back_in_through_docker(fresh_user: User, name: str) -> None:
    user = fresh_user
    user.ok("up", name)
    assert user.ssh(f"devbox-{name}", "echo hi > ~/kept").returncode == 0
    user.run("ssh", "-F", str(user.ssh_config), "-O", "exit", f"devbox-{name}")
    shutil.rmtree(user.home / ".config" / "devbox")
    proc = user.ok("up", name)  # a new key is made, authorized and the host key re-pinned
    assert "Ready" in proc.stdout
    assert user.ssh(f"devbox-{name}", "cat ~/kept").stdout == "hi\n"
    user.ok("rm", name, "--purge")


def test_ten_parallel_ups_leave_a_config_ssh_accepts_for_every_box(
    fresh_user: User, client, name: str
) -> None:
    user = fresh_user
    names = [f"{name}-{i}" for i in range(10)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        procs = list(pool.map(lambda n: user.devbox("up", n), names))
    assert all(p.returncode == 0 for p in procs), [p.stderr for p in procs if p.returncode]
    text = user.ssh_config.read_text()
    assert text.count("Include ") == 1
    ports = set()
    for n in names:
        opts = _ssh_g(user, f"devbox-{n}")
        ports.add(opts["port"])
        assert opts["hostkeyalias"] == f"devbox-{n}"
    assert len(ports) == 10
    assert user.ssh(f"devbox-{names[7]}", "hostname").stdout.strip() == names[7]
    # rm removes exactly its block.
    managed = user.home / ".ssh" / "devbox" / "config"
    user.ok("rm", names[3], "--purge")
    after = managed.read_text()
    assert f"Host devbox-{names[3]}\n" not in after
    assert all(f"Host devbox-{n}\n" in after for n in names if n != names[3])
    for n in names:
        user.devbox("rm", n, "--purge")


def test_read_only_config_does_not_fail_up_and_prints_the_line_to_add(fresh_user: User, name: str) -> None:
    user = fresh_user
    _write_as_user(user, user.ssh_config, b"Host *\n    ForwardAgent no\n", mode=0o444)
    proc = user.ok("up", name)
    line = f"Include {user.home}/.ssh/devbox/config"
    assert line in proc.stderr
    assert user.ssh_config.read_bytes() == b"Host *\n    ForwardAgent no\n"
    # devbox ssh still reaches the box, through devbox's own file.
    proc = user.devbox("ssh", name, "--", "id", "-un")
    assert proc.returncode == 0 and proc.stdout.strip() == user.name, proc.stderr
    user.ok("rm", name, "--purge")


def test_devbox_ssh_runs_a_command_and_passes_its_exit_code(user: User, name: str) -> None:
    user.ok("up", name)
    assert user.devbox("ssh", name, "--", "sh", "-c", "exit 7").returncode == 7
    assert user.devbox("ssh", name, "--", "echo", "hi").stdout == "hi\n"
    user.ok("rm", name, "--purge")


EXEC_SPY = """
import os, sys
sys.argv = ["devbox", *sys.argv[1:]]
real = os.execvp

def spy(file, args):
    heavy = sorted(m for m in ("docker", "paramiko", "devbox.boxes", "devbox.engine") if m in sys.modules)
    print("IMPORTED", ",".join(heavy) or "-", file=sys.stderr, flush=True)
    real(file, args)

os.execvp = spy
from devbox.cli import main
main()
"""


def test_devbox_ssh_riding_a_live_master_imports_no_engine_code(user: User, name: str) -> None:
    # With the box's master up, `devbox ssh` is a prelude to ssh's exec: the docker SDK and the
    # engine's modules were 25 ms of its 0.1 s. Without a master it still asks the engine.
    python = str(Path(user.env["DEVBOX_VENV"]) / "bin" / "python")
    user.ok("up", name)
    assert user.ssh(f"devbox-{name}", "true").returncode == 0  # its master is up now
    proc = user.run(python, "-c", EXEC_SPY, "ssh", name, "--", "echo", "hi")
    assert (proc.returncode, proc.stdout) == (0, "hi\n"), proc.stderr
    assert "IMPORTED -\n" in proc.stderr, proc.stderr
    user.run("ssh", "-F", str(user.ssh_config), "-O", "exit", f"devbox-{name}")
    proc = user.run(python, "-c", EXEC_SPY, "ssh", name, "--", "echo", "hi")
    assert (proc.returncode, proc.stdout) == (0, "hi\n"), proc.stderr
    assert "devbox.engine" in proc.stderr and "docker" in proc.stderr, proc.stderr
    user.ok("rm", name, "--purge")


def test_ssh_config_prints_a_block_and_resyncs_from_labels(user: User, name: str) -> None:
    user.ok("up", name)
    block = user.ok("ssh-config", name).stdout
    assert block.startswith(f"Host devbox-{name}\n") and "StrictHostKeyChecking yes" in block
    managed = user.home / ".ssh" / "devbox" / "config"
    managed.write_text("")
    user.ok("ssh-config")
    assert f"Host devbox-{name}\n" in managed.read_text()
    assert user.ssh(f"devbox-{name}", "true").returncode == 0
    user.ok("rm", name, "--purge")


def test_code_prints_the_command_without_vscode_and_sets_the_remote_platform(
    fresh_user: User, name: str
) -> None:
    user = fresh_user
    settings = user.home / ".config" / "Code" / "User" / "settings.json"
    _write_as_user(user, settings, b'{"editor.fontSize": 13}')
    for p in (settings.parent.parent, settings.parent.parent.parent):
        os.chown(p, user.uid, user.gid)
    user.ok("up", name, "--workdir", "/srv")
    data = json.loads(settings.read_text())
    assert data == {"editor.fontSize": 13, "remote.SSH.remotePlatform": {f"devbox-{name}": "linux"}}
    proc = user.ok("code", name)
    assert f"code --remote ssh-remote+devbox-{name} /srv" in proc.stdout
    assert f"vscode-remote://ssh-remote+devbox-{name}/srv" in proc.stdout
    # A path with a space and brackets prints quoted and whole (not eaten as rich markup).
    odd = user.ok("code", name, "/data/my dir/[old]")
    assert f"code --remote ssh-remote+devbox-{name} '/data/my dir/[old]'" in " ".join(odd.stdout.split())
    user.ok("rm", name, "--purge")
    assert json.loads(settings.read_text()) == {"editor.fontSize": 13}


def test_devbox_never_writes_the_real_ssh_dir(fresh_user: User) -> None:
    real = subprocess.run(["getent", "passwd", fresh_user.name], capture_output=True, text=True).stdout
    real_home = real.split(":")[5]
    assert real_home != str(fresh_user.home)
    assert not os.path.exists(os.path.join(real_home, ".ssh", "devbox"))


def test_interactive_devbox_ssh_gives_a_shell_in_a_real_terminal(user: User, name: str) -> None:
    user.ok("up", name)
    session = f"dbx-{name}"
    devbox = f"{user.env['DEVBOX_VENV']}/bin/devbox"
    started = user.run(
        "tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40", f"{devbox} ssh {name}"
    )
    assert started.returncode == 0, started.stderr
    try:
        screen = ""
        for _ in range(100):
            screen = user.run("tmux", "capture-pane", "-p", "-t", session).stdout
            if "$" in screen:
                break
            time.sleep(0.1)
        user.run("tmux", "send-keys", "-t", session, "echo who=$(id -un) tty=$(tty) answer=$((6*7))", "Enter")
        for _ in range(100):
            screen = user.run("tmux", "capture-pane", "-p", "-t", session).stdout
            if "answer=42" in screen:
                break
            time.sleep(0.1)
        assert f"who={user.name} tty=/dev/pts/" in screen and "answer=42" in screen, screen
    finally:
        user.run("tmux", "kill-session", "-t", session)
        user.ok("rm", name, "--purge")
