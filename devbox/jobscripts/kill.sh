# devbox kill: signal a job's process group, then KILL it after the grace period (in 0.2 s ticks).
# Args: NAME SIGNAL TICKS. Exit 66: no such job; 67: it is not running.
dir=$root/$1
[ -r "$dir/meta.json" ] || exit 66
[ "$(job_state "$dir")" = running ] || exit 67
i=0
while [ ! -r "$dir/pgid" ] && [ $i -lt 25 ]; do # just started: its process group is on the way
    sleep 0.2
    i=$((i + 1))
done
group=$(cat "$dir/pgid") || exit 67
printf '%s\n' "$2" >"$dir/killed"
kill -s "$2" -- "-$group" 2>/dev/null
i=0
while [ "$(job_state "$dir")" = running ] && [ $i -lt "$3" ]; do
    sleep 0.2
    i=$((i + 1))
done
if [ "$(job_state "$dir")" = running ] && kill -s 0 -- "-$group" 2>/dev/null; then
    printf 'KILL\n' >"$dir/killed"
    kill -s KILL -- "-$group" 2>/dev/null
fi
i=0
while [ "$(job_state "$dir")" = running ] && [ $i -lt 25 ]; do # the wrapper records the end
    sleep 0.2
    i=$((i + 1))
done
