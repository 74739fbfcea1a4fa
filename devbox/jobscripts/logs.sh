# devbox logs: print a job's log (the last N lines, or all), and with FOLLOW=1 go on printing
# what it writes until it ends. Args: NAME LINES(all|N) FOLLOW(0|1). Exit 66: no such job.
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
while :; do
    # Whether it ended is looked at before the size: what it wrote before ending is printed.
    state=$(job_state "$dir")
    now=$(size)
    if [ "$now" -gt "$offset" ]; then
        tail -c +$((offset + 1)) "$log" | head -c $((now - offset))
        offset=$now
    fi
    [ "$3" = 1 ] && [ "$state" = running ] || break
    sleep 0.1
done
