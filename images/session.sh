#!/bin/sh
# devbox session: sshd runs this, as the login user, for every ssh session (ForceCommand), in
# place of the command or shell the client asked for. It gives the session the box's environment
# (the image's ENV, CUDA paths, --env values) exactly as the entrypoint recorded it, starts it in
# the box's workdir, then does what sshd would have done. It must never stand in the way of a
# login: whatever is missing is skipped.
run=/run/devbox

if [ -r "$run/env.sh" ]; then
    . "$run/env.sh"
fi
workdir=$(cat "$run/workdir" 2>/dev/null) || workdir=""
if [ -n "$workdir" ]; then
    cd "$workdir" 2>/dev/null || true
fi

shell=${SHELL:-/bin/sh}
if [ -z "${SSH_ORIGINAL_COMMAND+set}" ]; then
    exec "$shell" -l
fi
command=$SSH_ORIGINAL_COMMAND
unset SSH_ORIGINAL_COMMAND
if [ "$command" = internal-sftp ]; then
    # sshd serves its built-in sftp only without a ForceCommand: use the image's sftp-server.
    for server in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server /usr/lib/ssh/sftp-server \
        /usr/libexec/sftp-server /usr/lib/sftp-server; do
        [ -x "$server" ] && exec "$server"
    done
    echo "devbox: this box has no sftp-server" >&2
    exit 1
fi
exec "$shell" -c "$command"
