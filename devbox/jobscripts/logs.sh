# devbox logs: print a job's log (the last N lines, or all), and with FOLLOW=1 go on printing
# what it writes until it ends, then its record on stderr. Args: NAME LINES(all|N) FOLLOW(0|1).
# Exit 66: no such job.
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
    # Often for the first second (short jobs, `run --wait` of a quick command), then calmly.
    polls=$((polls + 1))
    if [ "$polls" -le 50 ]; then sleep 0.02; else sleep 0.1; fi
done
# Following, the job has ended: its record goes to stderr after a GS (\035), so devbox reports how
# it ended without asking the box again.
if [ "$3" = 1 ]; then
    printf '\035' >&2
    job_record "$1" >&2
fi
