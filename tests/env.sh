#!/usr/bin/env bash
# The test environment, sourced by tests/run.sh and benchmarks/run.sh (as root, on a bare
# Debian/Ubuntu machine): installs what is missing, creates a venv the unprivileged test users
# can run, starts a private dockerd (with a fake NVIDIA hook so --gpus works without GPUs),
# builds offline base images, and exports DOCKER_HOST and DEVBOX_TEST_*. The dockerd it started
# stops when the sourcing script exits.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=/var/lib/devbox-test          # docker data-root and cached base rootfs tarballs survive runs
RUN=/run/devbox-test                # sockets and pids of this run's dockerd
OPT=/opt/devbox-test                # venv and fakes, readable by the test users
SOCK="$RUN/docker.sock"
TEST_USER=devbox-tester
TEST_USER2=devbox-tester2
MIRROR=${DEVBOX_TEST_MIRROR:-http://deb.debian.org/debian}

log() { printf '\033[1m[tests]\033[0m %s\n' "$*" >&2; }

[[ $(id -u) == 0 ]] || { echo "devbox tests and benchmarks must run as root (it installs packages and starts a dockerd)" >&2; exit 2; }

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v tmux >/dev/null || need+=(tmux)
command -v ssh >/dev/null || need+=(openssh-client)
[[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3 python3-venv)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# A Python the unprivileged test user can execute (the image's own may live under /root).
mkdir -p "$OPT"
if [[ ! -x $OPT/venv/bin/python ]]; then
    log "creating $OPT/venv"
    /usr/bin/python3 -m venv "$OPT/venv"
fi
log "installing devbox into $OPT/venv"
pip_quiet() { "$OPT/venv/bin/pip" install -q --disable-pip-version-check "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; }
pip_quiet "$ROOT[test]"
pip_quiet --force-reinstall --no-deps "$ROOT"
mkdir -p "$OPT/hook" "$OPT/gpu"
install -m 0755 "$ROOT/tests/fakes/nvidia-container-runtime-hook" "$OPT/hook/"
install -m 0755 "$ROOT/tests/fakes/nvidia-smi" "$OPT/gpu/"
chmod -R a+rX "$OPT"

getent group docker >/dev/null || groupadd --system docker
# Two ordinary users in the docker group: devbox's users are never root, and GPU collisions
# between colleagues are the point.
make_user() {
    local name=$1 uid=$2
    if ! id "$name" >/dev/null 2>&1; then
        getent passwd "$uid" >/dev/null && uid=""
        useradd --create-home ${uid:+--uid $uid} --user-group --shell /bin/bash "$name"
    fi
    usermod -aG docker "$name"
}
make_user "$TEST_USER" 4242
make_user "$TEST_USER2" 4343

# Our own dockerd: own socket, data root and exec root, so a daemon we did not start is never touched.
mkdir -p "$RUN" "$STATE"
chmod 0755 "$RUN"
started_dockerd=""
stop_dockerd() {
    if [[ -n $started_dockerd ]] && kill -0 "$started_dockerd" 2>/dev/null; then
        log "stopping the test dockerd"
        kill "$started_dockerd"
        for _ in $(seq 50); do kill -0 "$started_dockerd" 2>/dev/null || break; sleep 0.2; done
    fi
}
trap stop_dockerd EXIT
if [[ -f $RUN/docker.pid ]] && kill -0 "$(cat "$RUN/docker.pid")" 2>/dev/null; then
    log "reusing the test dockerd already running on $SOCK"
else
    log "starting the test dockerd on $SOCK"
    PATH="$OPT/hook:$PATH" setsid dockerd --host "unix://$SOCK" --group docker \
        --data-root "$STATE/docker" --exec-root "$RUN/exec" --pidfile "$RUN/docker.pid" \
        >"$RUN/dockerd.log" 2>&1 &
    started_dockerd=$!
fi
export DOCKER_HOST="unix://$SOCK"
for _ in $(seq 100); do docker version >/dev/null 2>&1 && break; sleep 0.2; done
docker version >/dev/null || { tail -20 "$RUN/dockerd.log" >&2; exit 1; }

# Offline base images: one with openssh-server/tmux/sudo, one bare minbase (exercises the layer's install path).
make_base() {
    local tag=$1 include=$2 tar="$STATE/$3.tar"
    docker image inspect "$tag" >/dev/null 2>&1 && return 0
    if [[ ! -s $tar ]]; then
        local dir
        dir=$(mktemp -d /var/tmp/devbox-rootfs.XXXXXX)
        log "debootstrap $3 (once; cached in $tar)"
        debootstrap --variant=minbase ${include:+--include=$include} bookworm "$dir" "$MIRROR" >"$RUN/debootstrap-$3.log"
        tar -C "$dir" -c . >"$tar.tmp" && mv "$tar.tmp" "$tar"
        rm -rf "$dir"
    fi
    log "importing $tag"
    docker import "$tar" "$tag" >/dev/null
}
make_base devbox-test/bookworm-ssh:latest openssh-server,tmux,sudo bookworm-ssh
make_base devbox-test/bookworm-min:latest "" bookworm-min

export DEVBOX_TEST_USER=$TEST_USER DEVBOX_TEST_USER2=$TEST_USER2 DEVBOX_TEST_VENV="$OPT/venv" DEVBOX_TEST_GPU_PATH="$OPT/gpu"
export DEVBOX_TEST_IMAGE=devbox-test/bookworm-ssh:latest DEVBOX_TEST_MIN_IMAGE=devbox-test/bookworm-min:latest
