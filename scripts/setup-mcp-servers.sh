#!/usr/bin/env bash
# Install the reference MCP servers the integration tests drive (tests/integration/mcp), outside
# the project venv:
#   PyPI mcp-server-time, mcp-server-git, mcp-server-fetch -> $DEST/venv  (own virtualenv)
#   npm  @modelcontextprotocol/server-filesystem           -> $DEST/npm   (npm --prefix)
# DEST is .cache/mcp-servers in the repo (override with RINGFENCE_MCP_SERVERS_DIR).
# Idempotent: a stamp file records what was installed; when it matches the pins below and the
# entry points exist, the script only says so and exits.  Needs python3.11+, node >= 18, npm.
set -euo pipefail
cd "$(dirname "$0")/.."

# Exact versions installed and tested.  Bump together, then rerun this script.
PIP_PINS=(
  "mcp-server-time==2026.10.19"
  "mcp-server-git==2026.10.19"
  "mcp-server-fetch==2026.10.24"
  "mcp==2.3.0"
  "mcp-types==2.3.0"
)
NPM_PINS=(
  "@modelcontextprotocol/server-filesystem@2026.8.31"
)

DEST=${RINGFENCE_MCP_SERVERS_DIR:-.cache/mcp-servers}
VENV=$DEST/venv
NPM_DIR=$DEST/npm
STAMP=$DEST/installed.txt
FS_ENTRY=$NPM_DIR/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js

say() { echo "setup-mcp-servers: $*"; }
die() { echo "setup-mcp-servers: ERROR: $*" >&2; exit 1; }

# The interpreter: the one that created .venv (its pyvenv.cfg), else $PYTHON, else python3.11.
pick_python() {
  local py=""
  if [ -f .venv/pyvenv.cfg ]; then
    py=$(sed -n 's/^executable *= *//p' .venv/pyvenv.cfg | head -n1)
  fi
  if [ -z "$py" ] || [ ! -x "$py" ]; then
    py=${PYTHON:-}
    if [ -z "$py" ]; then
      for candidate in python3.11 python3.12 python3.13 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then py=$(command -v "$candidate"); break; fi
      done
    fi
  fi
  [ -n "$py" ] || die "no Python 3.11+ found (create .venv first with ./dev setup, or set PYTHON)"
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$py is older than Python 3.11"
  echo "$py"
}

command -v node >/dev/null 2>&1 || die "node is not on PATH (need Node.js >= 18)"
command -v npm >/dev/null 2>&1 || die "npm is not on PATH"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 18 ] || die "node $(node --version) is too old (need >= 18)"

PY=$(pick_python)
wanted="python=$("$PY" -c 'import sys; print(sys.version.split()[0])') ${PIP_PINS[*]} ${NPM_PINS[*]}"

venv_ok() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c '
import importlib.util, sys
sys.exit(any(importlib.util.find_spec(m) is None for m in ("mcp_server_time", "mcp_server_git", "mcp_server_fetch")))' 2>/dev/null
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ] && venv_ok && [ -f "$FS_ENTRY" ]; then
  say "already installed in $DEST (${PIP_PINS[*]} ${NPM_PINS[*]})"
  exit 0
fi

mkdir -p "$DEST"
rm -f "$STAMP"

# A venv made by another interpreter (or moved, or half-built) is rebuilt from scratch.
venv_python_version=""
if [ -x "$VENV/bin/python" ]; then
  venv_python_version=$("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || true)
fi
if [ "$venv_python_version" != "$("$PY" -c 'import sys; print(sys.version.split()[0])')" ]; then
  say "creating $VENV with $PY"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi

say "pip install ${PIP_PINS[*]}"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PIP_PINS[@]}"
venv_ok || die "the Python servers do not import from $VENV after installing"

say "npm install --prefix $NPM_DIR ${NPM_PINS[*]}"
mkdir -p "$NPM_DIR"
npm install --prefix "$NPM_DIR" --save-exact --no-audit --no-fund --loglevel=error "${NPM_PINS[@]}"
[ -f "$FS_ENTRY" ] || die "npm finished but $FS_ENTRY is missing"

echo "$wanted" >"$STAMP"
say "installed in $DEST: ${PIP_PINS[*]} ${NPM_PINS[*]}"
