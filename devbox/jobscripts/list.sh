# devbox jobs: one record per job (or only the jobs named in the args), see job_record.
if [ $# -eq 0 ]; then
    set -- $(ls "$root" 2>/dev/null)
fi
for name in "$@"; do
    job_record "$name"
done
