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
locks="$HOME/.devbox/locks" # start.sh's, one per name being started

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

# One job's record for devbox (jobs.py's _parse): fields separated by US (\037), ended by RS
# (\036): name, state, meta.json, started, status, killed, last log line (GS, RS and US in it
# blanked: logs.sh marks a record with GS). Nothing for no such job.
job_record() {
    jr_dir=$root/$1
    [ -r "$jr_dir/meta.json" ] || return 0
    jr_last=$(tail -c 4096 "$jr_dir/log" 2>/dev/null | tr '\r\035\036\037' '\n   ' | grep -v '^[[:space:]]*$' | tail -n 1)
    printf '%s\037%s\037%s\037%s\037%s\037%s\037%s\036' "$1" "$(job_state "$jr_dir")" \
        "$(cat "$jr_dir/meta.json")" "$(cat "$jr_dir/started" 2>/dev/null)" "$(cat "$jr_dir/status" 2>/dev/null)" \
        "$(cat "$jr_dir/killed" 2>/dev/null)" "$jr_last"
}

# Keep job dir $1's log as ~/.devbox/logs/NAME-STARTED.log, never over another's: two runs of one
# name may start in the same second (then -2, -3, ...). A hard link is made, or refused, at once.
archive_log() {
    [ -e "$1/log" ] || return 0
    al_stamp=$(cat "$1/started" 2>/dev/null) || al_stamp=$(date +%s)
    al_base=$archive/${1##*/}-$al_stamp al_n=1
    al_to=$al_base.log
    until ln "$1/log" "$al_to" 2>/dev/null; do
        if [ ! -e "$al_to" ]; then # no name taken: a filesystem without hard links
            mv "$1/log" "$al_to"
            return
        fi
        al_n=$((al_n + 1))
        al_to=$al_base-$al_n.log
    done
    rm -f "$1/log"
}
