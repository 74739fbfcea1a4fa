#!/bin/sh
# Install only what the base image lacks among openssh-server, tmux and sudo, with its own package manager.
set -eu

missing=""
[ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
command -v tmux >/dev/null 2>&1 || missing="$missing tmux"
command -v sudo >/dev/null 2>&1 || missing="$missing sudo"
# Sessions run behind devbox's session script (ForceCommand), where sshd's built-in sftp cannot
# serve: sftp and scp need the sftp-server program, which Alpine packages apart from sshd.
if command -v apk >/dev/null 2>&1 && [ ! -x /usr/lib/ssh/sftp-server ]; then
    missing="$missing openssh-sftp-server"
fi

if [ -z "$missing" ]; then
    echo "devbox: openssh-server, tmux and sudo are already in the base image"
    exit 0
fi
echo "devbox: installing$missing"

if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    # shellcheck disable=SC2086
    apt-get install -y --no-install-recommends $missing
    rm -rf /var/lib/apt/lists/*
elif command -v dnf >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    dnf install -y $missing && dnf clean all
elif command -v yum >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    yum install -y $missing && yum clean all
elif command -v microdnf >/dev/null 2>&1; then
    # UBI-minimal images (e.g. cuda:*-ubi*); their repos may lack openssh-server.
    # shellcheck disable=SC2086
    microdnf install -y $missing && microdnf clean all
elif command -v apk >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    apk add --no-cache $missing
else
    echo "devbox: cannot install$missing: the base image has no apt-get, dnf, yum, microdnf or apk" >&2
    exit 3
fi
