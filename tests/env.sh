#!/usr/bin/env bash
# The test environment, sourced by tests/run.sh and benchmarks/run.sh (as root, on a bare
# Debian/Ubuntu machine): installs what is missing, creates a venv the unprivileged test users
# can run, starts a private dockerd (with a fake NVIDIA hook so --gpus works without GPUs),
# builds offline base images, and exports DOCKER_HOST and DEVBOX_TEST_*. A second private dockerd
# (DEVBOX_TEST_DOCKER_HOST2) stands in for another host in multi-host tests, and sshd is installed
# (never run as a system service) for the tests' own unprivileged sshds. The dockerds it started
# stop when the sourcing script exits.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=/var/lib/devbox-test          # docker data-root and cached base rootfs tarballs survive runs
RUN=/run/devbox-test                # sockets and pids of this run's dockerd
OPT=/opt/devbox-test                # venv and fakes, readable by the test users
SOCK="$RUN/docker.sock"
SOCK2="$RUN/docker2.sock"
# The second dockerd's own bridge, on a subnet apart from the first one's docker0 (172.17.0.0/16).
BRIDGE2=dbxtest-br2
BRIDGE2_ADDR=10.213.0.1/24
SSHD=/usr/sbin/sshd
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
command -v ip >/dev/null || need+=(iproute2)
[[ -x $SSHD ]] || need+=(openssh-server)
[[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3 python3-venv)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    # Installing a package must not start its system service (sshd, or a dockerd that is not ours):
    # invoke-rc.d and deb-systemd-invoke skip starting when policy-rc.d exits 101.
    made_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    if [[ " ${need[*]} " == *" openssh-server "* ]]; then
        # Debian's ssh.service, ssh.socket and init script never start while this file exists, so
        # the system sshd we install only for its binary stays off after a reboot too.
        mkdir -p /etc/ssh
        touch /etc/ssh/sshd_not_to_be_run
    fi
    rc=0
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; } || rc=$?
    if [[ -n $made_policy ]]; then rm -f /usr/sbin/policy-rc.d; fi
    ((rc == 0)) || exit $rc
    if [[ " ${need[*]} " == *" openssh-server "* ]] && command -v systemctl >/dev/null; then
        systemctl disable --quiet ssh.service ssh.socket 2>/dev/null || true
    fi
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
started_dockerd2=""
stop_dockerd() {
    local pid
    # Both at once: each may take seconds to stop its containers.
    for pid in $started_dockerd $started_dockerd2; do
        if kill -0 "$pid" 2>/dev/null; then
            log "stopping the test dockerd $pid"
            kill "$pid"
        fi
    done
    for pid in $started_dockerd $started_dockerd2; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    done
    # The bridge is only ours to remove once the daemon using it is gone; the name is ours, so a
    # bridge a crashed run left behind (and this run adopted) goes too.
    if [[ -n $started_dockerd2 ]] && ip link show "$BRIDGE2" >/dev/null 2>&1; then
        ip link delete "$BRIDGE2"
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

# The second dockerd, a stand-in for another host: same fake NVIDIA hook, its own socket, roots,
# containerd namespace and bridge. No iptables: it must not rewrite the first daemon's (or the
# machine's) rules, and its published ports still reach 127.0.0.1 through docker-proxy.
if [[ -f $RUN/docker2.pid ]] && kill -0 "$(cat "$RUN/docker2.pid")" 2>/dev/null; then
    log "reusing the second test dockerd already running on $SOCK2"
else
    taken=$(ip -4 -o addr show to "$BRIDGE2_ADDR" | grep -v " $BRIDGE2 " || true)
    [[ -z $taken ]] || { echo "$BRIDGE2_ADDR is already in use: $taken" >&2; exit 1; }
    ip link show "$BRIDGE2" >/dev/null 2>&1 || ip link add "$BRIDGE2" type bridge
    ip addr replace "$BRIDGE2_ADDR" dev "$BRIDGE2"
    ip link set "$BRIDGE2" up
    no_ip6tables=()
    dockerd --help 2>&1 | grep -q -- '--ip6tables' && no_ip6tables=(--ip6tables=false)
    # Its own config file, so a system /etc/docker/daemon.json does not apply. Before 23.0 the engine
    # ID (docker info's ID) comes from /etc/docker/key.json unless this key says otherwise, and both
    # test engines would claim one ID; 23.0 keeps the ID in the data root and ignores the key.
    printf '{"deprecated-key-path": "%s"}\n' "$STATE/docker2-key.json" >"$STATE/docker2.json"
    log "starting the second test dockerd on $SOCK2"
    PATH="$OPT/hook:$PATH" setsid dockerd --host "unix://$SOCK2" --group docker \
        --config-file "$STATE/docker2.json" \
        --data-root "$STATE/docker2" --exec-root "$RUN/exec2" --pidfile "$RUN/docker2.pid" \
        --containerd-namespace devbox-test2 --containerd-plugins-namespace devbox-test2-plugins \
        --bridge "$BRIDGE2" --iptables=false "${no_ip6tables[@]}" \
        >"$RUN/dockerd2.log" 2>&1 &
    started_dockerd2=$!
fi

wait_for_dockerd() {
    local sock=$1 log_file=$2
    for _ in $(seq 100); do DOCKER_HOST="unix://$sock" docker version >/dev/null 2>&1 && return 0; sleep 0.2; done
    DOCKER_HOST="unix://$sock" docker version >/dev/null || { tail -20 "$log_file" >&2; exit 1; }
}
wait_for_dockerd "$SOCK" "$RUN/dockerd.log"
wait_for_dockerd "$SOCK2" "$RUN/dockerd2.log"
export DOCKER_HOST="unix://$SOCK"

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
    log "importing $tag into $DOCKER_HOST"
    docker import "$tar" "$tag" >/dev/null
}
make_base devbox-test/bookworm-ssh:latest openssh-server,tmux,sudo bookworm-ssh
make_base devbox-test/bookworm-min:latest "" bookworm-min
# The second engine gets the same image from the same cached rootfs (no second debootstrap).
DOCKER_HOST="unix://$SOCK2" make_base devbox-test/bookworm-ssh:latest openssh-server,tmux,sudo bookworm-ssh

export DEVBOX_TEST_USER=$TEST_USER DEVBOX_TEST_USER2=$TEST_USER2 DEVBOX_TEST_VENV="$OPT/venv" DEVBOX_TEST_GPU_PATH="$OPT/gpu"
export DEVBOX_TEST_IMAGE=devbox-test/bookworm-ssh:latest DEVBOX_TEST_MIN_IMAGE=devbox-test/bookworm-min:latest
export DEVBOX_TEST_DOCKER_HOST2="unix://$SOCK2" DEVBOX_TEST_SSHD=$SSHD
