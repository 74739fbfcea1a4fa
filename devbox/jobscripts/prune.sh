# devbox jobs --prune: forget ended and lost jobs, keeping their logs under ~/.devbox/logs unless
# DROP_LOGS=1. Prints the names forgotten.
for name in $(ls "$root" 2>/dev/null); do
    dir=$root/$name
    [ -d "$locks/start-$name" ] && continue # being started (start.sh): its directory is half made
    [ "$(job_state "$dir")" = running ] && continue
    if [ "$1" = 1 ]; then
        rm -rf "$dir"
    else
        mkdir -p "$archive"
        archive_log "$dir" && rm -rf "$dir" || continue
    fi
    printf '%s\n' "$name"
done
