# devbox logs: print a job's log (the last N lines, or all), and with FOLLOW=1 go on printing
# what it writes until it ends, then its record on stderr. Args: NAME LINES(all|N) FOLLOW(0|1)
# [WATCH(1): stdin is devbox's connection]. Exit 66: no such job.
dir=$root/$1
[ -r "$dir/meta.json" ] || exit 66
log=$dir/log
size() { wc -c <"$log" 2>/dev/null || echo 0; }
if [ "$2" = all ]; then
    offset=0
else
    # tail seeks from the end: fast on a log of any size.
    offset=$(($(size) - $(tail -n "$2" "$log" | wc -c)))
fi
# Docker does not end an exec when its client goes away, and a quiet job's follower would never
# find out by writing: devbox attaches stdin and never writes to it, so a reader of it ends (EOF)
# just when devbox's connection does; the follower goes with it.
reader=
if [ "$3" = 1 ] && [ "$4" = 1 ]; then
    exec 3<&0 # through fd 3: a command put in the background without job control reads /dev/null
    cat <&3 >/dev/null 2>&1 3<&- &
    reader=$!
    exec 3<&-
fi
polls=0
while :; do
    # Whether it ended is looked at before the size: what it wrote before ending is printed.
    state=$(job_state "$dir")
    now=$(size)
    if [ "$now" -gt "$offset" ]; then
        tail -c +$((offset + 1)) "$log" | head -c $((now - offset))
        offset=$now
    fi
    [ "$3" = 1 ] && [ "$state" = running ] || break
    if [ -n "$reader" ] && ! kill -0 "$reader" 2>/dev/null; then
        exit 0 # nobody reads on
    fi
    # Often for the first second (short jobs, `run --wait` of a quick command), then calmly.
    polls=$((polls + 1))
    if [ "$polls" -le 50 ]; then sleep 0.02; else sleep 0.1; fi
done
[ -n "$reader" ] && kill "$reader" 2>/dev/null
# Following, the job has ended: its record goes to stderr after a GS (\035), so devbox reports how
# it ended without asking the box again.
if [ "$3" = 1 ]; then
    printf '\035' >&2
    job_record "$1" >&2
fi
