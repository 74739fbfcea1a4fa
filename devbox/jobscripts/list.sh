# devbox jobs: one record per job (or only the jobs named in the args), fields separated by US
# (\037), records by RS (\036): name, state, meta.json, started, status, killed, last log line.
if [ $# -eq 0 ]; then
    set -- $(ls "$root" 2>/dev/null)
fi
for name in "$@"; do
    dir=$root/$name
    [ -r "$dir/meta.json" ] || continue
    last=$(tail -c 4096 "$dir/log" 2>/dev/null | tr '\r\036\037' '\n  ' | grep -v '^[[:space:]]*$' | tail -n 1)
    printf '%s\037%s\037%s\037%s\037%s\037%s\037%s\036' "$name" "$(job_state "$dir")" \
        "$(cat "$dir/meta.json")" "$(cat "$dir/started" 2>/dev/null)" "$(cat "$dir/status" 2>/dev/null)" \
        "$(cat "$dir/killed" 2>/dev/null)" "$last"
done
