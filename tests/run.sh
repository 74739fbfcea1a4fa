#!/usr/bin/env bash
# devbox's test command (README, .ci/run), run as root on a bare Debian/Ubuntu machine:
# sets up the test environment (tests/env.sh), runs pytest, stops the dockerd it started.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

cd "$ROOT"
set +e
# The pytest script, not `python -m pytest`: the latter puts the checkout first on sys.path, and the
# source tree (where devbox.keys lives in keys/) would shadow the installed package.
"$OPT/venv/bin/pytest" "$@"
rc=$?
set -e
exit $rc
