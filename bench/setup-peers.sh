#!/usr/bin/env bash
# Create the peers' virtual environment for the side-by-side benchmark.
#
#   bash bench/setup-peers.sh
#
# The peers live in their own venv (.venv-bench), never in Ringfence's, so that
# their dependencies cannot leak into Ringfence's tests or figures.
#
# Peers:
#   agent-governance-toolkit[full]  required (agent_os, agentmesh). [full] resolves to
#                                   ~45 wheels (core/cli/integrations/protocols, pydantic,
#                                   cryptography, opentelemetry, aiohttp ...): no torch or
#                                   other large ML dependency, so it is installed as is.
#   cedarpy                         optional (Rust wheel)
#   regopy                          optional (C++ wheel; may not exist for every platform)
#
# Idempotent: a package that already imports is not reinstalled.  Exits 0 even if an
# optional peer fails; bench/peers/run_peer.py reports such a peer as unavailable.
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RINGFENCE_BENCH_VENV:-$ROOT/.venv-bench}"
PY="$VENV/bin/python"
PYTHON="${PYTHON:-python3.11}"

log() { printf 'setup-peers: %s\n' "$*" >&2; }

if [ ! -x "$PY" ]; then
    log "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV" || { log "could not create the venv"; exit 1; }
fi

# pip_quiet ARGS...: pip install, quiet, without pip's noise about missing local indexes.
pip_quiet() {
    "$PY" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
        | grep -v "is ignored: it is neither a file nor a directory" >&2
    return "${PIPESTATUS[0]}"
}

# has MODULE...: true if every module imports in the venv.
has() {
    local m
    for m in "$@"; do
        "$PY" -c "import $m" >/dev/null 2>&1 || return 1
    done
}

status=0

if has agent_os.policies agentmesh.governance; then
    log "agent-governance-toolkit: already installed"
else
    log "installing agent-governance-toolkit[full]"
    if ! pip_quiet 'agent-governance-toolkit[full]'; then
        log "agent-governance-toolkit[full] FAILED to install"
        status=1
    fi
fi

if has cedarpy; then
    log "cedarpy: already installed"
else
    log "installing cedarpy"
    pip_quiet cedarpy || log "cedarpy failed to install (optional: reported as unavailable)"
fi

if has regopy; then
    log "regopy: already installed"
else
    log "installing regopy"
    pip_quiet regopy || log "regopy failed to install (optional: reported as unavailable)"
fi

if [ "$status" -ne 0 ]; then
    log "the AGT engines will be reported as unavailable"
fi
log "engines available: $("$PY" "$ROOT/bench/peers/run_peer.py" --engine list 2>/dev/null | tr '\n' ' ')"
exit 0
