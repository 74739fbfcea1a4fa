#!/usr/bin/env bash
# devbox's speed and memory targets, each beside its floor or a peer tool measured in the same run,
# on the same private engine the tests use. Run as root on a bare Debian/Ubuntu machine:
#   bash benchmarks/run.sh [--runs N] [--only TEXT] [--json PATH] [--list]
# Prints one table (median, min, max per figure); exits 1 if a target is missed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../tests/env.sh"

# The peer of `up`: the Dev Containers CLI, pinned, in a folder of its own (never installed globally).
# 0.83.0: the newest release that still runs on Debian 12's Node.js 18 (later ones need 20).
DEVCONTAINER_CLI_VERSION=0.83.0
DEVCONTAINERS="$OPT/devcontainers"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    log "installing nodejs and npm"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 18)); then
    echo "the Dev Containers CLI $DEVCONTAINER_CLI_VERSION needs Node.js 18 or newer; this machine has $(node --version)" >&2
    exit 2
fi
export DEVBOX_BENCH_DEVCONTAINER="$DEVCONTAINERS/node_modules/.bin/devcontainer"
if [[ $("$DEVBOX_BENCH_DEVCONTAINER" --version 2>/dev/null || true) != "$DEVCONTAINER_CLI_VERSION" ]]; then
    log "installing @devcontainers/cli@$DEVCONTAINER_CLI_VERSION into $DEVCONTAINERS"
    mkdir -p "$DEVCONTAINERS"
    npm install --prefix "$DEVCONTAINERS" --no-audit --no-fund --save-exact --loglevel=error \
        "@devcontainers/cli@$DEVCONTAINER_CLI_VERSION"
fi
chmod -R a+rX "$DEVCONTAINERS"  # the test users run it

cd "$ROOT"
"$OPT/venv/bin/python" benchmarks/bench.py "$@"
