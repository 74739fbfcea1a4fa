# devbox run: start one job in a detached tmux session and print its record (job_record).
# Args: NAME (empty: job-N) META CMD CWD WRAPPER.
# Exit 73: a job of that name is running; 72: a tmux session of the user's own (no job) has the
# name; 71: no tmux; 74/75: could not set up or start it.
name=$1 meta=$2 cmd=$3 cwd=$4 wrapper=$5
command -v tmux >/dev/null 2>&1 || { echo "this box has no tmux" >&2; exit 71; }
mkdir -p "$root" "$archive" "$locks" || exit 74

# Starts of one name take turns: each holds a lock directory (mkdir is atomic everywhere; flock(1)
# is not in every base image) from its look at the name until its job runs, so the second sees
# the first's job running, never its half-made directory. A start that died holding it (SIGKILL, a
# box stopped mid-start) leaves it behind: it is broken once its holder is gone, or after 20 s (a
# start takes about 1 s) should the holder's PID have been reused.
lock=
take_lock() {
    tl_dir=$locks/start-$1 tl_i=0 tl_gone=0
    until mkdir "$tl_dir" 2>/dev/null; do
        # Let go of a moment ago, or mkdir cannot work here (a full or read-only home).
        if [ ! -d "$tl_dir" ]; then
            tl_gone=$((tl_gone + 1))
            [ $tl_gone -lt 3 ] || return 1
            continue
        fi
        read -r tl_pid 2>/dev/null <"$tl_dir/pid" || tl_pid=
        if { [ -n "$tl_pid" ] && ! kill -0 "$tl_pid" 2>/dev/null; } || [ $tl_i -ge 400 ]; then
            rm -rf "$tl_dir"
            tl_i=0
            continue
        fi
        tl_i=$((tl_i + 1))
        sleep 0.05
    done
    echo $$ >"$tl_dir/pid"
    lock=$tl_dir
}

# Let go of the lock, unless it was broken meanwhile (and so is another start's now).
drop_lock() {
    if [ -n "$lock" ]; then
        read -r dl_pid 2>/dev/null <"$lock/pid" && [ "$dl_pid" = $$ ] && rm -rf "$lock"
        lock=
    fi
}
trap drop_lock EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# An ended job's name is taken over; its log is kept under ~/.devbox/logs.
retire() {
    archive_log "$1" && rm -rf "$1"
}

# A tmux session of the name that runs no job: an ended job's kept by remain-on-exit (devbox jobs
# started before it was turned off for them) goes; any other is the user's own. Fails on that.
free_session() {
    tmux has-session -t "=$1" 2>/dev/null || return 0
    [ "$(tmux list-panes -s -t "=$1" -F '#{pane_dead}' 2>/dev/null | sort -u)" = 1 ] || return 1
    tmux kill-session -t "=$1" 2>/dev/null
    return 0
}

if [ -z "$name" ]; then
    # The lowest job-N with neither a directory nor a tmux session, from one look at each (a box
    # keeps its ended jobs until they are forgotten: two forks per taken number added up).
    nl='
'
    taken="$nl$(tmux list-sessions -F '#{session_name}' 2>/dev/null)$nl"
    for d in "$root"/job-*; do taken="$taken${d##*/}$nl"; done
    n=1
    while :; do
        case $taken in *"${nl}job-$n$nl"*) n=$((n + 1)) && continue ;; esac
        mkdir "$root/job-$n" 2>/dev/null && break
        # Made a moment ago by another run: move on; any other failure (a full or read-only
        # home) stops here.
        [ -e "$root/job-$n" ] || exit 74
        n=$((n + 1))
    done
    name=job-$n
else
    take_lock "$name" || exit 74
    if ! mkdir "$root/$name" 2>/dev/null; then
        if [ "$(job_state "$root/$name")" = running ]; then
            echo "$name" >&2
            exit 73
        fi
        free_session "$name" || { echo "$name" >&2; exit 72; }
        retire "$root/$name" && mkdir "$root/$name" || exit 74
    elif ! free_session "$name"; then
        rmdir "$root/$name"
        echo "$name" >&2
        exit 72
    fi
fi
dir=$root/$name
printf '%s\n' "$meta" >"$dir/meta.json.tmp" && mv "$dir/meta.json.tmp" "$dir/meta.json" &&
    printf '%s\n' "$cmd" >"$dir/cmd" && printf '%s\n' "$cwd" >"$dir/cwd" &&
    printf '%s\n' "$wrapper" >"$dir/run.sh" && incarnation >"$dir/incarnation" && : >"$dir/log" ||
    { rm -rf "$dir"; exit 74; }

# The wrapper waits on a tmux channel until the log pipe is open, so no output is ever lost.
quoted=$(printf '%s' "$dir/log" | sed "s/'/'\\\\''/g")
if ! tmux new-session -d -s "$name" -x 200 -y 50 -c "$dir" "exec sh ./run.sh"; then
    rm -rf "$dir"
    exit 75
fi
# An ended job's session must go, whatever the user's tmux.conf says: kept by remain-on-exit, it
# would hold the name for ever. Not every tmux has the option as a window option: tolerated.
tmux set-option -w -t "=$name:" remain-on-exit off 2>/dev/null ||
    tmux set-window-option -t "=$name:" remain-on-exit off 2>/dev/null
tmux pipe-pane -t "=$name:" -o "exec cat >>'$quoted'" || { tmux kill-session -t "=$name"; rm -rf "$dir"; exit 75; }
tmux wait-for -S "devbox-go-$name"
# Its record, once the wrapper wrote its start (a moment after the signal; at most 1 s): devbox
# reports the job from this, without asking the box again.
i=0
while [ ! -e "$dir/pid" ] && [ ! -e "$dir/status" ] && [ $i -lt 100 ]; do
    sleep 0.01
    i=$((i + 1))
done
# Past here the name reads as this job's: the next start of it may look. `run --wait` goes on in
# this shell to follow the job, without the lock or its traps.
drop_lock
trap - EXIT HUP INT TERM
job_record "$name"
