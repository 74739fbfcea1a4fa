# devbox run: start one job in a detached tmux session and print its record (job_record).
# Args: NAME (empty: job-N) META CMD CWD WRAPPER.
# Exit 73: a job of that name is running; 71: no tmux; 74/75: could not set up or start it.
name=$1 meta=$2 cmd=$3 cwd=$4 wrapper=$5
command -v tmux >/dev/null 2>&1 || { echo "this box has no tmux" >&2; exit 71; }
mkdir -p "$root" "$archive" || exit 74

# An ended job's name is taken over; its log is kept under ~/.devbox/logs.
retire() {
    if [ -e "$1/log" ]; then
        stamp=$(cat "$1/started" 2>/dev/null) || stamp=$(date +%s)
        mv "$1/log" "$archive/${1##*/}-$stamp.log" || return 1
    fi
    rm -rf "$1"
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
elif ! mkdir "$root/$name" 2>/dev/null; then
    if [ "$(job_state "$root/$name")" = running ] || tmux has-session -t "=$name" 2>/dev/null; then
        echo "$name" >&2
        exit 73
    fi
    retire "$root/$name" && mkdir "$root/$name" || exit 74
elif tmux has-session -t "=$name" 2>/dev/null; then
    rmdir "$root/$name"
    echo "$name" >&2
    exit 73 # a tmux session of the user's own has the name
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
tmux pipe-pane -t "=$name:" -o "exec cat >>'$quoted'" || { tmux kill-session -t "=$name"; rm -rf "$dir"; exit 75; }
tmux wait-for -S "devbox-go-$name"
# Its record, once the wrapper wrote its start (a moment after the signal; at most 1 s): devbox
# reports the job from this, without asking the box again.
i=0
while [ ! -e "$dir/pid" ] && [ ! -e "$dir/status" ] && [ $i -lt 100 ]; do
    sleep 0.01
    i=$((i + 1))
done
job_record "$name"
