# devbox run --wait: follow the job start.sh (just above, in the same exec) started. Its record,
# which ends with an RS (\036), is followed on stdout by the log (logs.sh, just below), until the
# job ends or devbox goes away (stdin is its connection).
set -- "$name" all 1 1
