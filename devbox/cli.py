"""The `devbox` command: parse flags, call the core (boxes, gpus, sshconfig), render results.

Heavy modules (docker, paramiko, textual) are imported inside commands so `devbox --help` stays fast.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from devbox.errors import DevboxError
from devbox.spec import DEFAULT_SHM, READY_TIMEOUT_S

if TYPE_CHECKING:
    from devbox.engine import Engine
    from devbox.keys.keypair import Identity

DEFAULT_IMAGE = "ubuntu:24.04"


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def escape(text: str) -> str:
    """Text from outside (build logs, names) must not be read as rich markup."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _engine(ctx: click.Context) -> Engine:
    from devbox.engine import Engine

    return Engine.connect(ctx.obj.get("host"))


def _identity(path: str | None) -> Identity:
    from devbox.keys.keypair import ensure_user_key, load_identity

    return load_identity(Path(path)) if path else ensure_user_key()


def _ssh_config_opt(f):
    return click.option(
        "--ssh-config",
        "ssh_config",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="DEVBOX_SSH_CONFIG",
        help="OpenSSH config to add devbox's Include to [default: ~/.ssh/config].",
    )(f)


def _timeout_opt(f):
    return click.option(
        "--timeout", type=float, default=READY_TIMEOUT_S, show_default=True, help="Seconds to wait for sshd."
    )(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--host", envvar="DEVBOX_DOCKER_HOST", help="Docker engine URL [default: DOCKER_HOST or local]."
)
@click.version_option(package_name="devbox")
@click.pass_context
def cli(ctx: click.Context, host: str | None) -> None:
    """Private, SSH-reachable dev containers on shared GPU servers.

    \b
      devbox up mybox --gpus 0,1 --mount ~/data:/workspace/data
      ssh devbox-mybox            # or: devbox ssh mybox, devbox code mybox
    """
    ctx.obj = {"host": host}


@cli.command()
@click.argument("name", required=False)
@click.option(
    "--image",
    default=lambda: os.environ.get("DEVBOX_IMAGE", DEFAULT_IMAGE),
    show_default=DEFAULT_IMAGE,
    help="Base image; devbox adds sshd, tmux and sudo on top.",
)
@click.option("--gpus", "gpus_text", default=None, help="GPUs: 0,1 | 0-3 | GPU-uuid | all | none.")
@click.option("--gpu-count", type=int, default=None, help="Take N free GPUs (least used first).")
@click.option("--share-gpus", is_flag=True, help="Allow GPUs another running box holds.")
@click.option("--mount", "mounts", multiple=True, metavar="SRC:DST[:ro|rw]", help="Bind-mount a host path.")
@click.option("--env", "envs", multiple=True, metavar="K=V", help="Environment variable for the box.")
@click.option(
    "--shm-size", default=DEFAULT_SHM, show_default=True, help="/dev/shm size (DataLoader workers need it)."
)
@click.option("--memory", default=None, help="Memory limit, e.g. 64g.")
@click.option("--cpus", type=float, default=None, help="CPU limit, e.g. 8.")
@click.option("--workdir", default=None, help="Working directory in the box [default: home].")
@click.option("--no-sudo", is_flag=True, help="Do not give the login user passwordless sudo.")
@click.option(
    "--identity",
    type=click.Path(dir_okay=False),
    default=None,
    help="Your private key to log in with [default: devbox's own ed25519 key].",
)
@click.option("--keep-on-failure", is_flag=True, help="Leave a box that failed to start, for debugging.")
@_timeout_opt
@_ssh_config_opt
@click.pass_context
def up(
    ctx: click.Context,
    name: str | None,
    image: str,
    gpus_text: str | None,
    gpu_count: int | None,
    share_gpus: bool,
    mounts: tuple[str, ...],
    envs: tuple[str, ...],
    shm_size: str,
    memory: str | None,
    cpus: float | None,
    workdir: str | None,
    no_sudo: bool,
    identity: str | None,
    keep_on_failure: bool,
    timeout: float,
    ssh_config: Path | None,
) -> None:
    """Create (or start) a box and wait until you can log in. NAME defaults to this directory's name."""
    from devbox import boxes, spec

    box_spec = spec.from_flags(
        name=name,
        image=image,
        gpus_text=gpus_text,
        gpu_count=gpu_count,
        share_gpus=share_gpus,
        mounts=mounts,
        envs=envs,
        shm_size=shm_size,
        memory=memory,
        cpus=cpus,
        workdir=workdir,
        sudo=not no_sudo,
    )
    ident = _identity(identity)
    engine = _engine(ctx)
    err = _console(stderr=True)
    with err.status(f"Bringing up {box_spec.name}…") as status:

        def progress(line: str) -> None:
            if line.startswith(("Step ", "Building the devbox layer", "devbox:", "Keeping")):
                err.print(f"[dim]{escape(line)}[/dim]")
            status.update(f"{box_spec.name}: {escape(line[:100])}")

        result = boxes.up(
            engine,
            box_spec,
            ident,
            given=_given_options(ctx),
            keep_on_failure=keep_on_failure,
            ssh_config=ssh_config,
            progress=progress,
            timeout=timeout,
        )
    _report_up(result)


# Which `up` flags shape which part of BoxSpec.fingerprint(): a re-run of `up NAME` compares
# only what the user actually typed, so `devbox up NAME` alone always means "start it".
_FINGERPRINT_OF = {
    "image": "image",
    "gpus_text": "gpus",
    "gpu_count": "gpus",
    "mounts": "mounts",
    "envs": "env",
    "shm_size": "shm_size",
    "memory": "memory",
    "cpus": "cpus",
    "workdir": "workdir",
    "no_sudo": "sudo",
}


def _given_options(ctx: click.Context) -> frozenset[str]:
    from click.core import ParameterSource

    typed = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return frozenset(
        key for param, key in _FINGERPRINT_OF.items() if ctx.get_parameter_source(param) in typed
    )


def _report_up(result) -> None:
    box = result.box
    out = _console()
    verb = "Created" if result.created else "Ready"
    gpus = ",".join(box.gpus) or "none"
    out.print(
        f"{verb} [bold]{escape(box.name)}[/bold]: user {box.user} (uid {box.uid}), GPUs {gpus}, "
        f"ssh on 127.0.0.1:{box.port}"
    )
    _report_include(result.ssh)
    if result.vscode and result.vscode.manual_snippet:
        _console(stderr=True).print(
            f"[yellow]VS Code settings {result.vscode.path} has comments, so devbox left it alone; "
            f"add:[/yellow] {escape(result.vscode.manual_snippet)}"
        )
    out.print(
        f"Connect: [bold]ssh {box.alias}[/bold]   or   devbox ssh {box.name}   or   devbox code {box.name}"
    )


@cli.command("ls")
@click.option("--all", "all_owners", is_flag=True, help="Show every user's boxes on this engine.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def ls_cmd(ctx: click.Context, all_owners: bool, as_json: bool) -> None:
    """List boxes."""
    from devbox import boxes
    from devbox.users import owner_name

    found = boxes.list_boxes(_engine(ctx), None if all_owners else owner_name())
    if as_json:
        click.echo(json.dumps([b.to_json() for b in found], indent=2))
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("NAME", "OWNER", "STATUS", "USER", "GPUS", "SSH", "IMAGE"):
        table.add_column(col)
    for b in found:
        table.add_row(
            b.name, b.owner, b.status, b.user, ",".join(b.gpus) or "-", f"127.0.0.1:{b.port}", b.image
        )
    if found:
        _console().print(table)
    else:
        _console().print("No boxes. Create one with: devbox up NAME")


@cli.command(context_settings={"ignore_unknown_options": True}, short_help="Shell or command in a box.")
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@_ssh_config_opt
@click.pass_context
def ssh(ctx: click.Context, name: str, command: tuple[str, ...], ssh_config: Path | None) -> None:
    """Open a shell in a box, or run COMMAND there: `devbox ssh NAME -- CMD ARG...`.

    Several words run as that exact argv; a single word is a shell command line ('echo $HOME').
    """
    from devbox import boxes, sshconfig

    box = boxes.get_box(_engine(ctx), name)
    if not box.running:
        raise DevboxError(f"box {name!r} is {box.status}", f"start it with `devbox start {name}`")
    if shutil.which("ssh") is None:
        raise DevboxError("the OpenSSH client (ssh) is not installed", "install openssh-client")
    remote = [command[0]] if len(command) == 1 else ([shlex.join(command)] if command else [])
    argv = sshconfig.ssh_command(box.alias, user_config=ssh_config) + remote
    _exec(argv)


def _exec(argv: list[str]) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)


@cli.command(help="Stop a box (its GPUs become free; files in home stay).")
@click.argument("name")
@click.pass_context
def stop(ctx: click.Context, name: str) -> None:
    from devbox import boxes

    _console().print(f"{name}: {boxes.stop(_engine(ctx), name).status}")


@cli.command(help="Start a stopped box and wait until you can log in.")
@click.argument("name")
@click.option("--share-gpus", is_flag=True, help="Start even if another running box holds its GPUs.")
@_timeout_opt
@_ssh_config_opt
@click.pass_context
def start(ctx: click.Context, name: str, share_gpus: bool, timeout: float, ssh_config: Path | None) -> None:
    from devbox import boxes

    engine = _engine(ctx)
    with _console(stderr=True).status(f"Starting {name}…"):
        box = boxes.start(engine, name, share_gpus=share_gpus, ssh_config=ssh_config, timeout=timeout)
    _console().print(f"{name}: {box.status}")


@cli.command(help="Restart a box in place (it keeps its GPUs) and wait until you can log in.")
@click.argument("name")
@_timeout_opt
@_ssh_config_opt
@click.pass_context
def restart(ctx: click.Context, name: str, timeout: float, ssh_config: Path | None) -> None:
    from devbox import boxes

    engine = _engine(ctx)
    with _console(stderr=True).status(f"Restarting {name}…"):
        box = boxes.restart(engine, name, ssh_config=ssh_config, timeout=timeout)
    _console().print(f"{name}: {box.status}")


@cli.command(short_help="Remove a box (keeps its home unless --purge).")
@click.argument("name")
@click.option("--purge", is_flag=True, help="Also delete the box's home volume.")
@_ssh_config_opt
@click.pass_context
def rm(ctx: click.Context, name: str, purge: bool, ssh_config: Path | None) -> None:
    """Remove a box. Its home volume is kept (a later `up` gets it back) unless --purge."""
    from devbox import boxes

    box = boxes.rm(_engine(ctx), name, purge=purge, ssh_config=ssh_config)
    kept = "" if purge else f" (home volume {box.volume} kept; --purge deletes it)"
    _console().print(f"Removed {name}{kept}")


@cli.command("ssh-config", short_help="Print a box's ssh config block, or re-sync all.")
@click.argument("name", required=False)
@_ssh_config_opt
@click.pass_context
def ssh_config_cmd(ctx: click.Context, name: str | None, ssh_config: Path | None) -> None:
    """Print NAME's OpenSSH block, or (no NAME) re-sync every block from Docker's labels."""
    from devbox import boxes, sshconfig

    engine = _engine(ctx)
    if name:
        box = boxes.get_box(engine, name)
        click.echo(sshconfig.render_block(boxes.ssh_entry(box), sshconfig.control_dir()), nl=False)
        return
    result, synced = boxes.sync_ssh(engine, ssh_config)
    _console().print(f"{len(synced)} box(es) in {sshconfig.managed_config_path()}")
    _report_include(result)


def _report_include(result) -> None:
    if result.manual_line:
        _console(stderr=True).print(
            f"[yellow]Could not edit {result.path}; add this line at its top:[/yellow] {result.manual_line}"
        )


@cli.command(short_help="Open VS Code Remote-SSH on a box.")
@click.argument("name")
@click.argument("path", required=False)
@click.pass_context
def code(ctx: click.Context, name: str, path: str | None) -> None:
    """Open VS Code (Remote-SSH) on a box, at PATH or the box's workdir."""
    from devbox import boxes, vscode

    box = boxes.get_box(_engine(ctx), name)
    target = path or box.workdir
    argv = vscode.code_command(box.alias, target)
    if shutil.which("code") is None:
        _console().print(
            f"VS Code's `code` command is not on PATH. Run: {' '.join(argv)}\n"
            f"or open: {vscode.code_uri(box.alias, target)}"
        )
        return
    sys.exit(subprocess.run(argv).returncode)


@cli.command("gpus", short_help="The host's GPUs and which box holds each.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def gpus_cmd(ctx: click.Context, as_json: bool) -> None:
    """The engine host's GPUs: memory, utilization, and which box (owner/name) holds each."""
    from devbox import allocation, gpus

    report = allocation.report(_engine(ctx))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("GPU", "NAME", "MEMORY", "UTIL", "HELD BY", "PROCESSES", "UUID"):
        table.add_column(col)
    for row in gpus.gpu_rows(report.inventory, report.holders):
        table.add_row(row.index, row.name, row.memory, row.util, row.holder or "-", row.pids or "-", row.uuid)
    out = _console()
    out.print(table)
    index_of = {g.uuid.lower(): g.index for g in report.inventory.gpus}
    for proc in report.foreign_processes():
        where = (
            f"GPU {index_of[proc.gpu_uuid.lower()]}" if proc.gpu_uuid.lower() in index_of else proc.gpu_uuid
        )
        out.print(
            f"[yellow]pid {proc.pid} ({escape(proc.process_name)}) runs on {where} outside devbox[/yellow]"
        )
    if report.docker_gpus is False:
        out.print(
            "[red]Docker on this host cannot pass GPUs to containers[/red] — "
            "install the NVIDIA Container Toolkit"
        )
    elif report.docker_gpus is None:
        out.print("[dim]Could not tell whether Docker can pass GPUs to containers.[/dim]")


def _exit_on_signal(signum: int, _frame: object) -> None:
    # A dropped ssh session (SIGHUP) or a kill (SIGTERM) must still release the engine lock and
    # undo a half-made box: unwinding through `finally` does both.
    raise SystemExit(128 + signum)


def main() -> None:
    """Entry point: run the CLI; DevboxError and its kin become one line and an exit code."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    try:
        cli.main(standalone_mode=False)
    except DevboxError as exc:
        _fail(exc.message, exc.hint, exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        # click's own three-line usage block, folded into devbox's one-line form.
        command = exc.ctx.command_path if exc.ctx else "devbox"
        _fail(exc.format_message(), f"see `{command} --help`", exc.exit_code)
    except click.ClickException as exc:
        _fail(exc.format_message(), None, exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        _fail("interrupted", None, 130)
    except Exception as exc:
        # Last resort: an error nobody anticipated still gets one line, not a traceback.
        if os.environ.get("DEVBOX_DEBUG"):
            raise
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        _fail(f"{text} ({type(exc).__name__})", "run again with DEVBOX_DEBUG=1 for details, and report it", 1)


def _fail(message: str, hint: str | None, code: int) -> NoReturn:
    from rich.markup import escape

    line = f"[red]error:[/red] {escape(message)}" + (f" [dim]— {escape(hint)}[/dim]" if hint else "")
    _console(stderr=True).print(line)
    sys.exit(code)


if __name__ == "__main__":
    main()
