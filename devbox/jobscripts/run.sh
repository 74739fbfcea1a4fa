#!/bin/sh
# devbox job wrapper: runs in the job's tmux session, in the job's directory. It gives the job the
# box's environment (as every ssh session gets it), runs the command in its own process group in
# the foreground of the pane (so it can read the terminal when attached), and records how it ended.
dir=$(pwd)
name=${dir##*/}
trap : HUP INT TERM # the wrapper outlives signals meant for the job, to record them
# The tmux server hands on the environment of whoever started it; a devbox script's exec has
# LC_ALL=C and the container's own variables, which no ssh session sees. env.sh gives back the
# image's (its LC_ALL too).
unset LC_ALL HOSTNAME DEVBOX_USER DEVBOX_UID DEVBOX_GID DEVBOX_SUDO DEVBOX_WORKDIR
if [ -r /run/devbox/env.sh ]; then
    . /run/devbox/env.sh
fi
export DEVBOX_JOB="$name"
tmux wait-for "devbox-go-$name"
date +%s >"$dir/started.tmp" && mv "$dir/started.tmp" "$dir/started"
echo $$ >"$dir/pid.tmp" && mv "$dir/pid.tmp" "$dir/pid"
shell=$(getent passwd "$(id -un)" 2>/dev/null | cut -d: -f7)
[ -x "$shell" ] || shell=/bin/sh
export DEVBOX_JOB_SHELL="$shell"
cwd=$(cat "$dir/cwd")
[ -n "$cwd" ] || cwd=$(cat /run/devbox/workdir 2>/dev/null)
[ -n "$cwd" ] || cwd=$HOME
if cd "$cwd"; then
    set -m
    /bin/sh -c 'echo $$ >"$1.tmp" && mv "$1.tmp" "$1"; eval "$2"' sh "$dir/pgid" "$(cat "$dir/cmd")"
    rc=$?
    set +m
else
    echo "devbox: cannot enter $cwd"
    rc=127
fi
# The pane's last output reaches the log through tmux a moment after the job ends: wait until the
# log stops growing for 0.1 s (at most 3 s) before the end is recorded, so whoever reads the log
# after that sees it all.
last=$(wc -c <"$dir/log") i=0
while [ $i -lt 30 ]; do
    sleep 0.1
    size=$(wc -c <"$dir/log")
    [ "$size" = "$last" ] && break
    last=$size i=$((i + 1))
done
printf 'exit=%s\nended=%s\n' "$rc" "$(date +%s)" >"$dir/status.tmp" && mv "$dir/status.tmp" "$dir/status"
