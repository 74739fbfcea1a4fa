# devbox jobs: shared by every job script devbox runs in a box (as the box's user, through
# `docker exec`). Each job is a directory under ~/.devbox/jobs on the home volume, so records and
# logs outlive disconnects, box restarts and `rm` + `up`. Files in it:
#   meta.json    what `devbox run` asked for (written by devbox, before the job starts)
#   cmd, cwd     the command line (shell-quoted by devbox) and the directory to run it in
#   incarnation  the box's PID 1 start time when the job started: a job from an earlier run of
#                the box that never recorded its end is lost, not running
#   started, pid the wrapper's start time and PID; pgid the job's process group
#   status       exit=N and ended=EPOCH, written atomically by the wrapper once the job ended
#   killed       the last signal `devbox kill` sent
#   log          everything the job's terminal showed, from the first byte
root="$HOME/.devbox/jobs"
archive="$HOME/.devbox/logs"

incarnation() {
    cut -d' ' -f22 /proc/1/stat 2>/dev/null
}

# running | ended | lost
job_state() {
    if [ -e "$1/status" ]; then
        echo ended
    elif [ "$(cat "$1/incarnation" 2>/dev/null)" != "$(incarnation)" ]; then
        echo lost
    elif [ -r "$1/pid" ]; then
        if kill -0 "$(cat "$1/pid")" 2>/dev/null; then
            echo running
        elif [ -e "$1/status" ]; then
            echo ended # it recorded its end between the two looks
        else
            echo lost
        fi
    elif tmux has-session -t "=${1##*/}" 2>/dev/null; then
        echo running # started, its wrapper not yet past the starting line
    elif [ -e "$1/status" ] || [ -r "$1/pid" ]; then
        job_state "$1"
    else
        echo lost
    fi
}
