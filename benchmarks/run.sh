#!/usr/bin/env bash
# Speed and memory targets for devbox, measured on the same private engine the tests use.
# Run as root: bash benchmarks/run.sh   (prints a table; exits 1 if a target is missed)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../tests/env.sh"
cd "$ROOT"
"$OPT/venv/bin/python" benchmarks/bench.py
