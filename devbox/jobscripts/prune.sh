# devbox jobs --prune: forget ended and lost jobs, keeping their logs under ~/.devbox/logs unless
# DROP_LOGS=1. Prints the names forgotten.
for name in $(ls "$root" 2>/dev/null); do
    dir=$root/$name
    [ "$(job_state "$dir")" = running ] && continue
    if [ "$1" = 1 ]; then
        rm -rf "$dir"
    else
        mkdir -p "$archive"
        stamp=$(cat "$dir/started" 2>/dev/null) || stamp=$(date +%s)
        [ -e "$dir/log" ] && mv "$dir/log" "$archive/$name-$stamp.log"
        rm -rf "$dir"
    fi
    printf '%s\n' "$name"
done
