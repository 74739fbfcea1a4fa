"""The `devbox` command: parse flags, call the core (boxes, gpus, sshconfig), render results.

Heavy modules (docker, paramiko, textual) are imported inside commands so `devbox --help` stays fast.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from devbox import console
from devbox.errors import DevboxError, UsageError
from devbox.spec import DEFAULT_IMAGE, DEFAULT_SHM, READY_TIMEOUT_S

if TYPE_CHECKING:
    from devbox.boxes import Box
    from devbox.engine import Engine
    from devbox.jobs import Job
    from devbox.keys.keypair import Identity
    from devbox.project import Project, ProjectJob
    from devbox.record import Record


_console = console.console
escape = console.escape  # text from outside (build logs, names) must not be read as rich markup


def _engine(host: str | None, *, box: str | None = None, ssh_config: Path | None = None) -> Engine:
    """The engine a command acts on: --host, else the box's own host, else the default host."""
    from devbox import hosts
    from devbox.engine import Engine

    return Engine.connect(hosts.resolve(host, box=box), ssh_config=ssh_config)


def _settings():
    """The config module, for config.yaml's defaults (imported only by commands that use them)."""
    from devbox import config

    return config


def _identity(path: str | None) -> Identity:
    from devbox.keys.keypair import ensure_user_key, load_identity

    if path == "":
        raise UsageError("--identity is empty", "give the path of your private key, or leave --identity out")
    chosen = Path(path) if path else _settings().current().identity
    return load_identity(chosen) if chosen else ensure_user_key()


def _ssh_config_opt(f):
    return click.option(
        "--ssh-config",
        "ssh_config",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="DEVBOX_SSH_CONFIG",
        default=lambda: _settings().current().ssh_config,
        # Checked before any work: a bad one would otherwise surface only once a box is made.
        callback=lambda _ctx, _param, value: value and _user_ssh_config(value),
        help="OpenSSH config to add devbox's Include to [default: config.yaml's, or ~/.ssh/config].",
    )(f)


def _user_ssh_config(path: Path) -> Path:
    from devbox import sshconfig

    return sshconfig.user_config_path(path)


def _host_opt(f):
    return click.option(
        "--host",
        "host",
        envvar="DEVBOX_HOST",
        metavar="NAME",
        help="Host to act on (`devbox host ls`; `local` is this machine's engine) "
        "[default: the box's host, else the default host].",
    )(f)


def _positive_seconds(_ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value) or not 0 < value <= 3600:
        raise click.BadParameter(f"{value:g} s: give a number of seconds above 0, at most 3600", param=param)
    return value


def _timeout_opt(f):
    return click.option(
        "--timeout",
        type=float,
        default=READY_TIMEOUT_S,
        show_default=True,
        callback=_positive_seconds,
        help="Seconds to wait for sshd.",
    )(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="devbox")
def cli() -> None:
    """Private, SSH-reachable dev containers on shared GPU servers.

    \b
      devbox host add gpu1 gpu1.lab      # a server from your ~/.ssh/config
      devbox up mybox --host gpu1 --gpus 0,1 --mount ~/data:/workspace/data
      ssh devbox-mybox                   # or: devbox ssh mybox, devbox code mybox
      devbox run mybox --name train -- python train.py   # a tmux job; devbox logs mybox train -f
    """


@cli.command()
@click.argument("name", required=False)
@click.option(
    "--image",
    default=lambda: _settings().default_image(),
    show_default=DEFAULT_IMAGE,
    help="Base image; devbox adds sshd, tmux and sudo on top.",
)
@click.option("--gpus", "gpus_text", default=None, help="GPUs: 0,1 | 0-3 | GPU-uuid | all | none.")
@click.option("--gpu-count", type=int, default=None, help="Take N free GPUs (least used first).")
@click.option("--share-gpus", is_flag=True, help="Allow GPUs another running box holds.")
@click.option("--mount", "mounts", multiple=True, metavar="SRC:DST[:ro|rw]", help="Bind-mount a host path.")
@click.option("--env", "envs", multiple=True, metavar="K=V", help="Environment variable for the box.")
@click.option(
    "--port",
    "ports",
    multiple=True,
    metavar="PORT[:LOCAL]",
    help="Forward the box's PORT to this machine's 127.0.0.1:LOCAL while ssh/VS Code is connected.",
)
@click.option(
    "--build",
    "build_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Build this Dockerfile on the box's host and use it as the image.",
)
@click.option("--build-context", type=click.Path(file_okay=False), default=None, help="[default: its folder]")
@click.option("--build-arg", "build_args", multiple=True, metavar="K=V", help="A build argument.")
@click.option(
    "--shm-size", default=DEFAULT_SHM, show_default=True, help="/dev/shm size (DataLoader workers need it)."
)
@click.option("--memory", default=None, help="Memory limit, e.g. 64g.")
@click.option("--cpus", type=float, default=None, help="CPU limit, e.g. 8.")
@click.option("--workdir", default=None, help="Working directory in the box [default: home].")
@click.option(
    "--user",
    "user",
    default=None,
    metavar="NAME",
    help="The login's name in the box [default: your name on its host]; the UID/GID stay yours.",
)
@click.option("--no-sudo", is_flag=True, help="Do not give the login user passwordless sudo.")
@click.option(
    "--identity",
    type=click.Path(dir_okay=False),
    default=None,
    help="Your private key to log in with [default: devbox's own ed25519 key].",
)
@click.option("--keep-on-failure", is_flag=True, help="Leave a box that failed to start, for debugging.")
@click.option(
    "--from",
    "from_record",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Recreate a box from a `devbox record` file: its image digest and options (flags win).",
)
@click.option(
    "--host",
    "host",
    envvar="DEVBOX_HOST",
    metavar="NAME",
    help="Host to create the box on, or `auto` (with --gpu-count/--gpus all) for the one with free GPUs "
    "[default: the default host].",
)
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
    ports: tuple[str, ...],
    build_file: str | None,
    build_context: str | None,
    build_args: tuple[str, ...],
    shm_size: str,
    memory: str | None,
    cpus: float | None,
    workdir: str | None,
    user: str | None,
    no_sudo: bool,
    identity: str | None,
    keep_on_failure: bool,
    from_record: Path | None,
    host: str | None,
    timeout: float,
    ssh_config: Path | None,
) -> None:
    """Create (or start) a box and wait until you can log in.

    With no NAME (or NAME its box), the nearest devbox.yaml or devcontainer.json from here upwards
    describes the box (flags override it); without either, NAME is this directory's name.
    With --from FILE, `devbox record`'s FILE describes it (NAME: the recorded box's, unless given).
    """
    from devbox import (
        boxes,
        hosts,
        project,  # a project file may describe the box (with NAME, if it is its box)
        spec,
    )

    if from_record:
        from devbox import record
    rec = record.load(from_record) if from_record else None
    proj = _project_file(name) if rec is None else None
    values = {
        "name": name,
        "host": host,
        "image": image,
        "gpus_text": gpus_text,
        "gpu_count": gpu_count,
        "share_gpus": share_gpus,
        "mounts": mounts,
        "envs": envs,
        "ports": ports,
        "build": _typed_build(build_file, build_context, build_args, proj),
        "shm_size": shm_size,
        "memory": memory,
        "cpus": cpus,
        "workdir": workdir,
        "user": user,
        "sudo": not no_sudo,
    }
    described = record.spec_flags(rec) if rec else proj.options if proj else {}
    if proj is not None:
        described = {**described, "name": proj.box_name}
    from_file = _not_typed(ctx, described)
    values.update(from_file)
    host = values.pop("host")
    make_spec = partial(spec.from_flags, **values)
    # Every flag is checked before anything is created or any host is asked.
    box_name = make_spec(facts=spec.HostFacts.unchecked()).name
    target = None if host == hosts.AUTO else hosts.resolve(host, box=box_name if host is None else None)
    if target is not None and target.is_local:
        if proj:
            project.check_sources(proj, spec.HostFacts.local())
        make_spec(facts=spec.HostFacts.local())
    ident = _identity(identity)
    err = _console(stderr=True)
    # `devbox up` in a project compares all of the box with the file (a key taken out of the file
    # is a change too); `devbox up NAME` only what was typed, so it always means "start it".
    given = _given_options(ctx)
    if rec is not None:  # a record's options are as good as typed
        given |= {_FINGERPRINT_OF[k] for k in from_file if k in _FINGERPRINT_OF}
    options = {
        "given": None if proj is not None and name is None else given,
        "keep_on_failure": keep_on_failure,
        "ssh_config": ssh_config,
        "timeout": timeout,
    }
    with err.status(f"Bringing up {box_name}…") as status:

        def progress(line: str) -> None:
            if line.startswith(("Step ", "Building ", "devbox:", "Keeping", "Trying", "Waiting")):
                err.print(f"[dim]{escape(line)}[/dim]")
            status.update(f"{box_name}: {escape(line[:100])}")

        if target is None:
            from devbox import placement

            placed = placement.up_anywhere(
                hosts.listed(hosts.load()),
                lambda facts: make_spec(facts=facts),
                ident,
                progress=progress,
                **options,
            )
            result = placed.result
            err.print(f"Placed on [bold]{placed.host.name}[/bold]: {placed.why}")
            for line in placed.skipped:
                err.print(f"[dim]skipped {escape(line)}[/dim]")
        else:
            from devbox.engine import Engine

            engine = Engine.connect(target, ssh_config=ssh_config)
            facts = engine.facts()
            if rec is not None and "image" in from_file:
                record.require_image(rec, engine, from_record)  # type: ignore[arg-type]
            if proj and not engine.is_local:
                project.check_sources(proj, facts)
            result = boxes.up(
                engine,
                make_spec(facts=facts),
                ident,
                progress=progress,
                **options,  # type: ignore[arg-type]
            )
    _report_up(result)
    if rec is not None:
        _warn_record_differences(rec, result.box, ssh_config)
    _warn_busy_ports(result.box)
    if proj and proj.setup and result.created:
        _run_setup(result.box, proj, ssh_config)


def _not_typed(ctx: click.Context, options: dict[str, object]) -> dict[str, object]:
    """`options` (a devbox.yaml's, devcontainer.json's or a record's) less those typed on the command
    line: flags win; the file wins over environment variables and defaults (it is the more
    specific of the two)."""
    from click.core import ParameterSource

    typed = {p for p in ctx.params if ctx.get_parameter_source(p) == ParameterSource.COMMANDLINE}
    if typed & {"gpus_text", "gpu_count"}:
        typed |= {"gpus_text", "gpu_count"}  # --gpus replaces the file's gpu_count, and the other way round
    if typed & {"image", "build_file"}:
        typed |= {"image", "build"}  # --image or --build replaces the file's image and build
    if typed & {"build_args", "build_context"}:
        typed.add("build")  # applied to the file's build by _typed_build, which replaces it
    if "no_sudo" in typed:
        typed.add("sudo")
    return {k: v for k, v in options.items() if k not in typed}


def _warn_record_differences(rec: Record, box: Box, ssh_config: Path | None) -> None:
    """What differs where the box was recreated from where it was recorded (driver, GPU model)."""
    from devbox import record

    for line in record.diff(rec, _engine(box.host, ssh_config=ssh_config), box):
        _console(stderr=True).print(f"[yellow]warning: {escape(line)}[/yellow]")


def _warn_busy_ports(box: Box) -> None:
    from devbox import boxes, forward

    for local, why in forward.busy(boxes.forwards_of(box)):
        other = forward.free_port_near(local)
        _console(stderr=True).print(
            f"[yellow]warning: port {local} on this machine {why}: ssh cannot forward it; "
            f"free it, or `devbox up {escape(box.name)} --port PORT:{other}`[/yellow]"
        )


def _project_file(name: str | None) -> Project | None:
    """The project file `up` makes the box from: the nearest devbox.yaml or devcontainer.json from
    here upwards (in one folder, devbox.yaml first), if NAME is not given or is its box. What a
    devcontainer.json asks that devbox does not do is said in one warning line."""
    from devbox import devcontainer, project

    path = project.find(names=(*project.FILENAMES, *devcontainer.FILENAMES))
    if path is None:
        return None
    if path.name in project.FILENAMES:
        proj, warnings = project.load(path), ()
    else:
        proj, warnings = devcontainer.load(path)
    if name is not None and name != proj.box_name:
        return None  # `devbox up OTHER` in a project folder: a box of its own, from flags
    line = devcontainer.not_applied_line(warnings)
    if line:
        _console(stderr=True).print(f"[yellow]warning: {escape(line)}[/yellow]")
    return proj


def _typed_build(
    build_file: str | None, context: str | None, args: tuple[str, ...], proj: Project | None
) -> object:
    """--build's Build; --build-context and --build-arg alone apply to the project file's build
    (args by name over the file's), and without one they have nothing to apply to."""
    from devbox import spec

    if build_file:
        return spec.Build.checked(build_file, context, args)
    if not (context or args):
        return None
    made = proj.options.get("build") if proj is not None else None
    if made is None:
        raise UsageError(
            "--build-context and --build-arg apply to a build, and none is given",
            "add --build DOCKERFILE (or a build: in devbox.yaml)",
        )
    typed = {a.partition("=")[0] for a in args}
    kept = [a for a in made["args"] if a.partition("=")[0] not in typed]
    return spec.Build.checked(made["dockerfile"], context or made["context"], [*kept, *args])


def _run_setup(box: Box, proj: Project, ssh_config: Path | None) -> None:
    """devbox.yaml's setup commands, once, right after creation: a job named `setup`, its output
    streamed; on failure the box stays for debugging."""
    from devbox import jobs

    engine = _engine(box.host, ssh_config=ssh_config)
    script = "set -e\n" + "\n".join(proj.setup)
    _console(stderr=True).print(f"[dim]Running setup from {proj.path} (job setup)[/dim]")
    jobs.run(engine, box, jobs.JobRequest(argv=(script,), name="setup"))
    ended = jobs.follow(engine, box, "setup", _write_stderr)
    if ended.exit_status != 0:
        raise DevboxError(
            f"setup from {proj.path} failed in {box.name} ({ended.describe()}); the box is kept",
            f"see `devbox logs {box.name} setup`; rerun a step with `devbox run {box.name} --wait -- ...`",
        )


def _write_stderr(chunk: bytes) -> None:
    sys.stderr.buffer.write(chunk)
    sys.stderr.buffer.flush()


# Which `up` flags shape which part of BoxSpec.fingerprint(): a re-run of `up NAME` compares
# only what the user actually typed, so `devbox up NAME` alone always means "start it".
_FINGERPRINT_OF = {
    "image": "image",
    "build_file": "image",
    "build": "image",
    "gpus_text": "gpus",
    "gpu_count": "gpus",
    "mounts": "mounts",
    "envs": "env",
    "shm_size": "shm_size",
    "memory": "memory",
    "cpus": "cpus",
    "workdir": "workdir",
    "user": "user",
    "no_sudo": "sudo",
    "sudo": "sudo",  # a file's or record's key
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
    where = "127.0.0.1" if box.host == "local" else f"{box.host}'s 127.0.0.1"
    out.print(
        f"{verb} [bold]{escape(box.name)}[/bold]: user {box.user} (uid {box.uid}), GPUs {gpus}, "
        f"ssh on {where}:{box.port}"
    )
    if result.ssh is not None:
        _report_include(result.ssh)
    if result.warning:
        _console(stderr=True).print(f"[yellow]warning: {escape(result.warning)}[/yellow]")
    if result.vscode and result.vscode.manual_snippet:
        _console(stderr=True).print(
            f"[yellow]VS Code settings {result.vscode.path} has comments, so devbox left it alone; "
            f"add:[/yellow] {escape(result.vscode.manual_snippet)}"
        )
    out.print(
        f"Connect: [bold]ssh {box.alias}[/bold]   or   devbox ssh {box.name}   or   devbox code {box.name}"
    )


@cli.command("ls", short_help="Your boxes on every host (--all: everyone's).")
@click.option("--all", "all_owners", is_flag=True, help="Show every user's boxes, not just yours.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_host_opt
def ls_cmd(all_owners: bool, as_json: bool, host: str | None) -> None:
    """List boxes on every host (or on --host NAME); a host that does not answer is one row."""
    from devbox import boxes, hosts

    listing = boxes.list_hosts(hosts.targets(host), all_owners=all_owners)
    found = [b for r in listing for b in (r.value or [])]
    down = [r for r in listing if r.error is not None]
    if as_json:
        click.echo(json.dumps([b.to_json() for b in found], indent=2))
        for r in down:
            _console(stderr=True).print(
                f"[yellow]{r.host.name}: unreachable ({escape(r.error or '')})[/yellow]"
            )
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("NAME", "HOST", "OWNER", "STATUS", "USER", "GPUS", "SSH", "IMAGE"):
        table.add_column(col)
    for b in found:
        table.add_row(
            b.name, b.host, b.owner, b.status, b.user, ",".join(b.gpus) or "-", f"127.0.0.1:{b.port}", b.image
        )
    for r in down:
        table.add_row("-", r.host.name, "-", f"unreachable ({r.error})", "-", "-", "-", "-")
    if found or down:
        _console().print(table)
    else:
        _console().print("No boxes. Create one with: devbox up NAME")


@cli.command(context_settings={"ignore_unknown_options": True}, short_help="Shell or command in a box.")
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@_host_opt
@_ssh_config_opt
def ssh(name: str, command: tuple[str, ...], host: str | None, ssh_config: Path | None) -> None:
    """Open a shell in a box, or run COMMAND there: `devbox ssh NAME -- CMD ARG...`.

    Several words run as that exact argv; a single word is a shell command line ('echo $HOME').
    """
    from devbox import sshconfig

    if shutil.which("ssh") is None:
        raise DevboxError("the OpenSSH client (ssh) is not installed", "install openssh-client")
    base = sshconfig.ssh_command(sshconfig.host_alias(name), user_config=ssh_config)
    if not sshconfig.master_up(base):
        # No live connection to it: ask its engine, which says so if the box is not running. Only
        # here are the engine's modules imported: riding a live master, this command is ssh's exec.
        from devbox import boxes

        box = boxes.get_box(_engine(host, box=name, ssh_config=ssh_config), name)
        if not box.running:
            raise DevboxError(f"box {name!r} is {box.status}", f"start it with `devbox start {name}`")
        if boxes.unpinned([box]):  # ssh would only say "Host key verification failed"
            raise DevboxError(
                f"box {name!r} was not set up from this machine (no pinned host key here)",
                f"`devbox up {name}` pins it and authorizes your key",
            )
        base = sshconfig.ssh_command(box.alias, user_config=ssh_config)
    remote = [command[0]] if len(command) == 1 else ([shlex.join(command)] if command else [])
    _exec(base + remote)


def _exec(argv: list[str]) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)


@cli.command(short_help="Forward a box's port to this machine until Ctrl-C.")
@click.argument("name")
@click.argument("port", metavar="PORT[:LOCAL]")
@_host_opt
@_ssh_config_opt
def forward(name: str, port: str, host: str | None, ssh_config: Path | None) -> None:
    """Forward the box's PORT to 127.0.0.1:LOCAL here (LOCAL: the same number unless given), over
    the box's ssh connection, until Ctrl-C. Ports asked for at `up` (--port) need no command."""
    from devbox import boxes
    from devbox import forward as forwards

    box = boxes.get_box(_engine(host, box=name, ssh_config=ssh_config), name)
    if not box.running:
        raise DevboxError(f"box {name!r} is {box.status}", f"start it with `devbox start {name}`")
    fwd = forwards.plan(box.alias, name, port)

    def ready() -> None:
        _console(stderr=True).print(
            f"Forwarding http://127.0.0.1:{fwd.local} → {escape(name)}:{fwd.port} (Ctrl-C ends it)"
        )

    forwards.hold(fwd, ssh_config, ready)


@cli.command(help="Stop a box (its GPUs become free; files in home stay).")
@click.argument("name")
@_host_opt
def stop(name: str, host: str | None) -> None:
    from devbox import boxes

    _console().print(f"{name}: {boxes.stop(_engine(host, box=name), name).status}")


@cli.command(help="Start a stopped box and wait until you can log in.")
@click.argument("name")
@click.option("--share-gpus", is_flag=True, help="Start even if another running box holds its GPUs.")
@_host_opt
@_timeout_opt
@_ssh_config_opt
def start(name: str, share_gpus: bool, host: str | None, timeout: float, ssh_config: Path | None) -> None:
    from devbox import boxes

    engine = _engine(host, box=name, ssh_config=ssh_config)
    _until_ready(
        "Starting",
        name,
        partial(boxes.start, engine, name, share_gpus=share_gpus, ssh_config=ssh_config, timeout=timeout),
    )


def _until_ready(doing: str, name: str, act: Callable[..., Box]) -> None:
    """start/restart: a spinner, lock waits and ssh-entry warnings on stderr, the new state on stdout."""
    err = _console(stderr=True)
    with err.status(f"{doing} {name}…"):
        box = act(
            progress=lambda line: err.print(f"[dim]{escape(line)}[/dim]"),
            on_warning=lambda line: err.print(f"[yellow]warning: {escape(line)}[/yellow]"),
        )
    _console().print(f"{name}: {box.status}")


@cli.command(
    short_help="Restart a box in place, keeping its GPUs.",
    help="Restart a box in place (it keeps its GPUs) and wait until you can log in.",
)
@click.argument("name")
@_host_opt
@_timeout_opt
@_ssh_config_opt
def restart(name: str, host: str | None, timeout: float, ssh_config: Path | None) -> None:
    from devbox import boxes

    engine = _engine(host, box=name, ssh_config=ssh_config)
    _until_ready(
        "Restarting", name, partial(boxes.restart, engine, name, ssh_config=ssh_config, timeout=timeout)
    )


@cli.command(short_help="Remove a box (keeps its home unless --purge).")
@click.argument("name")
@click.option("--purge", is_flag=True, help="Also delete the box's home volume.")
@_host_opt
@_ssh_config_opt
def rm(name: str, purge: bool, host: str | None, ssh_config: Path | None) -> None:
    """Remove a box. Its home volume is kept (a later `up` gets it back) unless --purge."""
    from devbox import boxes

    volume = boxes.rm(
        _engine(host, box=name, ssh_config=ssh_config), name, purge=purge, ssh_config=ssh_config
    )
    kept = "" if purge else f" (home volume {volume} kept; --purge deletes it)"
    _console().print(f"Removed {name}{kept}")


@cli.command("ssh-config", short_help="Print a box's ssh config block, or re-sync all.")
@click.argument("name", required=False)
@_host_opt
@_ssh_config_opt
def ssh_config_cmd(name: str | None, host: str | None, ssh_config: Path | None) -> None:
    """Print NAME's OpenSSH block, or (no NAME) re-sync every block from Docker's labels on each host."""
    from devbox import boxes, hosts, sshconfig

    if name:
        box = boxes.get_box(_engine(host, box=name, ssh_config=ssh_config), name)
        click.echo(sshconfig.render_block(boxes.ssh_entry(box), sshconfig.control_dir()), nl=False)
        return
    synced = boxes.sync_hosts(hosts.targets(host), ssh_config)
    count = sum(len(r.value[1]) for r in synced if r.value)
    _console().print(f"{count} box(es) in {sshconfig.managed_config_path()}")
    strangers = boxes.unpinned([b for r in synced if r.value for b in r.value[1]])
    if strangers:
        _console(stderr=True).print(
            f"[yellow]not set up from this machine yet: {escape(', '.join(strangers))} — "
            f"`devbox up NAME` pins its host key and authorizes your key, then ssh works[/yellow]"
        )
    for r in synced:
        if r.value:
            _report_include(r.value[0])
        else:
            _console(stderr=True).print(
                f"[yellow]{r.host.name}: unreachable ({escape(r.error or '')}); its entries are kept[/yellow]"
            )


def _report_include(result) -> None:
    if result.manual_line:
        _console(stderr=True).print(
            f"[yellow]Could not edit {result.path}; add this line at its top:[/yellow] {result.manual_line}"
        )


@cli.command(short_help="Open VS Code Remote-SSH on a box.")
@click.argument("name")
@click.argument("path", required=False)
@_host_opt
def code(name: str, path: str | None, host: str | None) -> None:
    """Open VS Code (Remote-SSH) on a box, at PATH or the box's workdir."""
    from devbox import boxes, vscode

    box = boxes.get_box(_engine(host, box=name), name)
    target = path or box.workdir
    argv = vscode.code_command(box.alias, target)
    if shutil.which("code") is None:
        # Escaped: a path such as `/data/[old] run` must print as typed, not as rich markup.
        _console().print(
            f"VS Code's `code` command is not on PATH. Run: {escape(shlex.join(argv))}\n"
            f"or open: {escape(vscode.code_uri(box.alias, target))}"
        )
        return
    sys.exit(subprocess.run(argv).returncode)


# ---------------------------------------------------------------- jobs


def _running_box(name: str, host: str | None, ssh_config: Path | None = None) -> tuple[Engine, Box]:
    from devbox import boxes

    engine = _engine(host, box=name, ssh_config=ssh_config)
    return engine, boxes.get_box(engine, name)


@cli.command(short_help="Start a job in a box's tmux; it outlives your connection.")
@click.argument("box_name", metavar="BOX")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--name", "job_name", default=None, help="Job name [default: job-N].")
@click.option("--cwd", default=None, help="Directory to run in [default: the box's workdir].")
@click.option("--env", "envs", multiple=True, metavar="K=V", help="Environment variable for the job.")
@click.option("--gpus", "gpus_text", default=None, help="A subset of the box's GPUs, e.g. 0,1.")
@click.option("--wait", "wait_", is_flag=True, help="Show the output and exit with the job's code.")
@_host_opt
def run(
    box_name: str,
    command: tuple[str, ...],
    job_name: str | None,
    cwd: str | None,
    envs: tuple[str, ...],
    gpus_text: str | None,
    wait_: bool,
    host: str | None,
) -> None:
    """Start a job in a box's tmux: `devbox run BOX [--name J] -- CMD ARG...`.

    Several words run as that exact argv; a single word is a shell command line, or the name of a
    job declared in devbox.yaml (`devbox run BOX train`). The job survives
    disconnects; its output is logged from the first byte in ~/.devbox/jobs on the home volume.
    """
    from devbox import jobs

    engine, box = _running_box(box_name, host)
    declared = _declared_job(command)
    if declared is not None:  # `devbox run BOX train`: devbox.yaml's job; flags override its fields
        command = declared.argv
        job_name = job_name or declared.name
        cwd = cwd or declared.cwd
        envs = (*declared.env, *envs)
        gpus_text = gpus_text if gpus_text is not None else declared.gpus
    req = jobs.request(box, command, name=job_name, cwd=cwd, envs=envs, gpus_text=gpus_text)
    if wait_:

        def started(job: Job) -> None:
            _console(stderr=True).print(f"[dim]job {job.name} in {box.name}[/dim]")

        _exit_like(jobs.run_and_follow(engine, box, req, started, _write_stdout))
    job = jobs.run(engine, box, req)
    _console().print(
        f"Started job [bold]{job.name}[/bold] in {box.name}: "
        f"`devbox logs {box.name} {job.name} -f`, `devbox attach {box.name} {job.name}`"
    )


def _declared_job(command: tuple[str, ...]) -> ProjectJob | None:
    """The devbox.yaml job a single-word command names, if there is a project file declaring it."""
    from devbox import project

    if len(command) != 1:
        return None
    path = project.find()
    return project.load(path).jobs.get(command[0]) if path else None


@cli.command(short_help="Write a commented devbox.yaml here.")
def init() -> None:
    """Write a commented devbox.yaml for this directory (never overwrites one)."""
    from devbox import project

    path = project.write_starter(Path.cwd())
    _console().print(f"Wrote {path}: edit it, then `devbox up`")


def _write_stdout(chunk: bytes) -> None:
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


def _exit_like(job: Job) -> NoReturn:
    """Leave with the job's exit status, saying how it ended when that was not a plain exit 0."""
    if job.exit_status != 0:
        _console(stderr=True).print(f"[dim]job {job.name}: {job.describe()}[/dim]")
    sys.exit(job.exit_status)


@cli.command("record", short_help="Write what makes a box's runs reproducible to a file.")
@click.argument("box_name", metavar="BOX")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Where to write it [default: BOX.devbox-record.yaml here].",
)
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@_host_opt
def record_cmd(box_name: str, output: Path | None, force: bool, host: str | None) -> None:
    """Record a running box: base image digest and devbox layer, GPU models, driver and CUDA
    versions, its options, and its Python packages (pip freeze, conda). `devbox up --from FILE`
    recreates the box from it on any host."""
    from devbox import record

    path = output or record.default_path(box_name)
    record.check_writable(path, force)
    engine, box = _running_box(box_name, host)
    taken = record.take(engine, box)
    record.write(taken, path, overwrite=force)
    for note in record.notes(taken):
        _console(stderr=True).print(f"[yellow]note: {escape(note)}[/yellow]")
    pip = "no" if taken.packages.pip is None else str(len(taken.packages.pip))
    where = escape(str(path))
    _console().print(
        f"Wrote {where}: {box.name} on {escape(taken.machine)}, image {escape(taken.image.pinned)}, "
        f"{pip} pip packages; `devbox up --from {where}` recreates it"
    )


@cli.command("jobs", short_help="A box's jobs: state, exit code, duration, last line.")
@click.argument("box_name", metavar="BOX")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--prune", is_flag=True, help="Forget ended jobs (their logs move to ~/.devbox/logs).")
@click.option("--logs", "drop_logs", is_flag=True, help="With --prune: delete their logs too.")
@_host_opt
def jobs_cmd(box_name: str, as_json: bool, prune: bool, drop_logs: bool, host: str | None) -> None:
    """List a box's jobs: state, exit code or signal, start, duration, GPUs, last log line."""
    from devbox import jobs

    if drop_logs and not prune:
        raise UsageError("--logs only goes with --prune", "devbox jobs BOX --prune --logs")
    engine, box = _running_box(box_name, host)
    if prune:
        gone = jobs.prune(engine, box, drop_logs=drop_logs)
        _console().print(f"Forgot {len(gone)} ended job(s)" + (f": {', '.join(gone)}" if gone else ""))
        return
    found = jobs.list_jobs(engine, box)
    if as_json:
        click.echo(json.dumps([j.to_json() for j in found], indent=2))
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("JOB", "STATE", "STARTED", "DURATION", "GPUS", "LAST LINE"):
        table.add_column(col, overflow="ellipsis", no_wrap=col != "LAST LINE")
    now = time.time()
    for j in found:
        style = {"running": "green", "exited": "" if j.exit_code == 0 else "red", "killed": "yellow"}.get(
            j.state, "dim"
        )
        table.add_row(
            j.name,
            f"[{style}]{escape(j.describe())}[/{style}]" if style else escape(j.describe()),
            _clock(j.started),
            _span(j.duration(now)),
            ",".join(j.gpus) or "-",
            escape(j.last_line[-120:]),
        )
    if not found:
        _console().print(f"No jobs in {box.name}: start one with `devbox run {box.name} -- CMD`")
        return
    _console().print(table)


def _clock(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return (
        f"{s // 86400}d{s // 3600 % 24:02d}h"
        if s >= 86400
        else f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    )


@cli.command(short_help="A job's log; -f follows it to the end.")
@click.argument("box_name", metavar="BOX")
@click.argument("job_name", metavar="JOB")
@click.option("-f", "--follow", is_flag=True, help="Go on until the job ends; exit with its code.")
@click.option("-n", "--lines", type=int, default=None, help="Only the last N lines.")
@_host_opt
def logs(box_name: str, job_name: str, follow: bool, lines: int | None, host: str | None) -> None:
    """Print a job's log (kept on the home volume after the job ends or the box restarts)."""
    from devbox import jobs

    jobs.check_name(job_name)
    jobs.check_lines(lines)
    engine, box = _running_box(box_name, host)
    if follow:
        _exit_like(jobs.follow(engine, box, job_name, _write_stdout, lines))
    _write_stdout(jobs.logs(engine, box, job_name, lines))


@cli.command(short_help="Wait for jobs to end; exit with the first failure's code.")
@click.argument("box_name", metavar="BOX")
@click.argument("job_names", metavar="JOB...", nargs=-1, required=True)
@_host_opt
def wait(box_name: str, job_names: tuple[str, ...], host: str | None) -> None:
    """Wait until the jobs end; exit with the code of the first one that failed (else 0)."""
    from devbox import jobs

    engine, box = _running_box(box_name, host)
    err = _console(stderr=True)
    ended = jobs.wait(engine, box, job_names, on_end=lambda j: err.print(f"{j.name}: {escape(j.describe())}"))
    failed = [j for j in ended if j.exit_status != 0]
    sys.exit(failed[0].exit_status if failed else 0)


@cli.command(short_help="Attach your terminal to a running job (C-b d detaches).")
@click.argument("box_name", metavar="BOX")
@click.argument("job_name", metavar="JOB")
@_host_opt
@_ssh_config_opt
def attach(box_name: str, job_name: str, host: str | None, ssh_config: Path | None) -> None:
    """Attach your terminal to a running job's tmux (detach with C-b d; the job goes on)."""
    from devbox import jobs

    engine, box = _running_box(box_name, host, ssh_config)
    job = jobs.get(engine, box, job_name)
    if not job.running:
        raise UsageError(
            f"job {job.name} is not running ({job.describe()})", f"`devbox logs {box.name} {job.name}`"
        )
    if shutil.which("ssh") is None:
        raise DevboxError("the OpenSSH client (ssh) is not installed", "install openssh-client")
    _exec(jobs.attach_command(box, job.name, ssh_config))


@cli.command("kill", short_help="Stop a job: a signal, then KILL after --grace.")
@click.argument("box_name", metavar="BOX")
@click.argument("job_name", metavar="JOB")
@click.option("--signal", "sig", default="TERM", show_default=True, help="Signal to send first.")
@click.option("--grace", type=float, default=10.0, show_default=True, help="Seconds before KILL.")
@_host_opt
def kill_cmd(box_name: str, job_name: str, sig: str, grace: float, host: str | None) -> None:
    """Signal a job's process group, then KILL it if it has not ended after --grace seconds."""
    from devbox import jobs

    jobs.check_kill(job_name, sig, grace)
    engine, box = _running_box(box_name, host)
    job = jobs.kill(engine, box, job_name, sig, grace)
    _console().print(f"{job.name}: {escape(job.describe())}")


@cli.command("gpus", short_help="A host's GPUs and which box holds each.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--all-hosts", is_flag=True, help="Every configured host, not just one.")
@_host_opt
def gpus_cmd(as_json: bool, all_hosts: bool, host: str | None) -> None:
    """A host's GPUs: memory, utilization, and which box (owner/name) holds each."""
    from devbox import allocation, hosts

    if not all_hosts:
        report = allocation.report(_engine(host))
        if as_json:
            click.echo(json.dumps(report.to_json(), indent=2))
        else:
            _print_gpus(report)
        return
    results = hosts.across(hosts.listed(hosts.load()), allocation.report, timeout=hosts.FLEET_TIMEOUT_S)
    if as_json:
        data = {r.host.name: r.value.to_json() if r.value else {"error": r.error} for r in results}
        click.echo(json.dumps(data, indent=2))
        return
    for r in results:
        _console().print(f"[bold]{r.host.name}[/bold]")
        if r.value:
            _print_gpus(r.value)
        else:
            _console().print(f"  unreachable ({escape(r.error or '')})")


def _print_gpus(report) -> None:
    from rich.table import Table

    from devbox import gpus

    table = Table(box=None, header_style="bold")
    for col in ("GPU", "NAME", "MEMORY", "UTIL", "TEMP", "POWER", "HELD BY", "PROCESSES", "UUID"):
        table.add_column(col)
    for row in gpus.gpu_rows(report.inventory, report.holders):
        table.add_row(
            *(row.index, row.name, row.memory, row.util, row.temperature, row.power),
            *(row.holder or "-", row.pids or "-", row.uuid),
        )
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


# ---------------------------------------------------------------- tui


@cli.command(short_help="A live screen of boxes, GPUs and jobs on every host.")
@click.option("--readonly", is_flag=True, help="Show everything, change nothing (no action keys).")
@click.option(
    "--interval",
    type=float,
    default=2.0,
    show_default=True,
    callback=_positive_seconds,
    help="Seconds between refreshes.",
)
@_host_opt
@_ssh_config_opt
def tui(readonly: bool, interval: float, host: str | None, ssh_config: Path | None) -> None:
    """Boxes, GPUs (and who holds them), owners and jobs on every host; act on yours with one key.

    Press ? in the app for its keys.
    """
    from devbox import hosts

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "devbox tui needs a terminal", "run it in a terminal, or use `devbox ls`/`devbox gpus`"
        )
    from devbox.tui.app import DevboxApp

    DevboxApp(hosts.targets(host), readonly=readonly, interval=interval, ssh_config=ssh_config).run()


# ---------------------------------------------------------------- hosts


@cli.group("host", short_help="GPU servers: add, ls, check, trust, default, rm.")
def host_group() -> None:
    """The GPU servers devbox manages boxes on, reached with your own ssh config."""


@host_group.command("add")
@click.argument("name")
@click.argument("destination")
@click.option("--docker-socket", default="", help="Docker's socket on the server [default: its DOCKER_HOST].")
@click.option("--default", "make_default", is_flag=True, help="Make it the default host.")
@_ssh_config_opt
def host_add(
    name: str, destination: str, docker_socket: str, make_default: bool, ssh_config: Path | None
) -> None:
    """Add server NAME, reached as DESTINATION: an alias from ~/.ssh/config, or user@host[:port]."""
    from devbox import hostcheck, hosts, tunnel

    tunnel.connect_timeout()  # a bad DEVBOX_CONNECT_TIMEOUT is refused before anything is saved
    host = hosts.add(name, destination, docker_socket, make_default)
    _console().print(
        f"Added host [bold]{name}[/bold] ({escape(destination)})" + (", the default" if make_default else "")
    )
    if _print_checks(hostcheck.check(host, ssh_config)):
        # Kept (it may be down for now), but a script must not go on as if it could be used.
        raise DevboxError(
            f"{name} is added but failed a check above",
            f"fix that, then `devbox host check {name}`; `devbox host rm {name}` forgets it",
        )


@host_group.command("ls")
def host_ls() -> None:
    """The configured hosts (no connection is made)."""
    from devbox import hosts

    config = hosts.load()
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("NAME", "SSH", "DOCKER SOCKET", "DEFAULT"):
        table.add_column(col)
    for h in [hosts.LOCAL_HOST, *config.hosts]:
        dest = h.destination or "(this machine: DOCKER_HOST)"
        table.add_row(h.name, dest, h.docker_socket or "-", "yes" if h.name == config.default else "")
    _console().print(table)


@host_group.command("rm")
@click.argument("name")
@click.option("--force", is_flag=True, help="Forget it even though you have boxes there.")
def host_rm(name: str, force: bool) -> None:
    """Forget host NAME. Boxes there keep running, and their ssh entries keep working."""
    from devbox import hosts

    host = hosts.load().get(name)
    mine = hosts.boxes_recorded_on(host)
    if mine and not force:
        raise DevboxError(
            f"you have boxes on {name}: {', '.join(mine)}",
            f"`devbox rm` them first, or `devbox host rm {name} --force` to forget the host anyway",
        )
    hosts.remove(name)
    from devbox.tunnel import Tunnel

    Tunnel.for_host(host.name, host.ssh_target).close()
    _console().print(f"Removed host {name}")


@host_group.command("default")
@click.argument("name")
def host_default(name: str) -> None:
    """Make NAME (or `local`) the host commands use when --host is not given."""
    from devbox import hosts

    hosts.set_default(name)
    _console().print(f"Default host: {name}")


@host_group.command("check")
@click.argument("name", required=False)
@_ssh_config_opt
def host_check(name: str | None, ssh_config: Path | None) -> None:
    """Host health: ssh, Docker, NVIDIA runtime, GPUs, free disk; one line each, exit 1 on a failure."""
    from devbox import hostcheck, hosts

    config = hosts.load()
    targets = [config.get(name)] if name else hosts.listed(config)
    failed = False
    for host in targets:
        if len(targets) > 1:
            _console().print(f"[bold]{host.name}[/bold]")
        failed |= _print_checks(hostcheck.check(host, ssh_config))
    if failed:
        sys.exit(1)


@cli.command(short_help="Check the engine, GPUs, ssh setup and boxes; one line per check.")
@click.argument("box", required=False)
@_host_opt
@_ssh_config_opt
def doctor(box: str | None, host: str | None, ssh_config: Path | None) -> None:
    """Check everything between here and your boxes: engine, GPU passthrough, ssh Include, key file
    modes, and each box's sshd answering with its pinned key. One line per check with its fix;
    exit 1 when one fails."""
    from devbox import hostcheck, hosts

    target = hosts.resolve(host, box=box)
    if _print_checks(hostcheck.doctor(target, box, ssh_config)):
        sys.exit(1)


def _print_checks(checks) -> bool:
    """One line per check; True when one failed."""
    marks = {"ok": "[green]ok  [/green]", "warn": "[yellow]warn[/yellow]", "fail": "[red]FAIL[/red]"}
    out = _console()
    for c in checks:
        fix = f" [dim]— {escape(c.fix)}[/dim]" if c.fix else ""
        out.print(f"{marks[c.status]} {c.what:15} {escape(c.detail)}{fix}")
    return any(c.status == "fail" for c in checks)


@host_group.command("trust")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Record the key without asking.")
@_ssh_config_opt
def host_trust(name: str, yes: bool, ssh_config: Path | None) -> None:
    """Show NAME's ssh host key and record it in your known_hosts once you confirm it."""
    from devbox import hostcheck, hosts

    def confirm(fingerprints: list[str]) -> bool:
        _console().print(f"{name}'s host key: " + ", ".join(fingerprints))
        if yes:
            return True
        if not sys.stdin.isatty():
            raise DevboxError(
                "not recording an unconfirmed host key", f"check it, then `devbox host trust {name} --yes`"
            )
        return click.confirm("Is this the server's key (ask its admin if unsure)?", default=False)

    result = hostcheck.trust(hosts.load().get(name), confirm, ssh_config)
    if result.recorded_in is None:
        _console().print(f"{name}'s host key is already in your known_hosts")
    else:
        _console().print(f"Recorded in {result.recorded_in}")


# A dropped ssh session and a kill: main() unwinds on them, _end() lets them act as usual again.
_EXIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _exit_on_signal(signum: int, _frame: object) -> None:
    # A dropped ssh session (SIGHUP) or a kill (SIGTERM) must still release the engine lock and
    # undo a half-made box: unwinding through `finally` does both.
    raise SystemExit(128 + signum)


def main() -> None:
    """Entry point: run the CLI; DevboxError and its kin become one line and an exit code."""
    for sig in _EXIT_SIGNALS:
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
    line = f"[red]error:[/red] {escape(message)}" + (f" [dim]— {escape(hint)}[/dim]" if hint else "")
    _console(stderr=True).print(line)
    sys.exit(code)


def entry() -> NoReturn:
    """The `devbox` command itself: main(), then the process ends without Python's teardown.

    Tearing down the interpreter (freeing every module and object one by one) took 25-45 ms after
    each command had done its work, as long as a quick command's work; the system frees all of
    it at once. What teardown is for still happens: output is flushed and exit handlers run. A
    command that leaves a thread that is not a daemon running, or whose output cannot be flushed
    (a closed pipe), exits the usual way, so Python reports and waits as it always does.
    """
    try:
        main()
        code: int = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            raise  # a message for Python to print: its usual exit
    _end(code)


def _end(code: int) -> NoReturn:
    import atexit
    import threading

    # The work is done: a kill from here on ends the process as it would any other, rather than
    # raising SystemExit inside an exit handler (which Python reports with a traceback).
    for sig in _EXIT_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    if not _flushed():
        sys.exit(code)
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()  # noqa: SLF001 - the handlers teardown would run (paramiko's, tempfile's)
    _flushed()
    os._exit(code)


def _flushed() -> bool:
    """Flush stdout and stderr (None where Python started without them); False if one failed."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            try:
                stream.flush()
            except (OSError, ValueError):
                return False
    return True


if __name__ == "__main__":
    entry()
