#!/usr/bin/env bash
# Install what the sandbox (src/ringfence/runtime/sandbox, docs/sandbox.md) needs, then say
# which sandbox tiers this machine can run:
#   bubblewrap (Debian package `bubblewrap`) for the bwrap tier: apt-get update once, then
#   apt-get install -y bubblewrap, as root (or through password-less sudo).
# The process tier needs nothing installed (Landlock and seccomp are in the kernel).
# Idempotent: with bwrap on PATH it installs nothing.  Without root it warns and goes on;
# under CI (CI=true) it fails instead, because the sandbox escape tests must run there.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup-sandbox: $*"; }

install_bwrap() {
  local run=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      run=(sudo -n)
    else
      return 1
    fi
  fi
  command -v apt-get >/dev/null 2>&1 || return 1
  say "installing bubblewrap (apt-get update, apt-get install -y bubblewrap)"
  "${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
}

if ! command -v bwrap >/dev/null 2>&1; then
  if ! install_bwrap || ! command -v bwrap >/dev/null 2>&1; then
    message="bwrap is not installed and cannot be installed here (needs root or sudo and apt-get); install the 'bubblewrap' package"
    if [ "${CI:-}" = "true" ]; then
      say "ERROR: $message" >&2
      exit 1
    fi
    say "WARNING: $message; the bwrap tier is unavailable and its tests will be skipped"
  fi
fi

# What this machine can run, probed with the same code the runtime uses.
if [ -x .venv/bin/python ]; then
  .venv/bin/python - <<'PY'
from ringfence.runtime.sandbox import LocalSandbox, Tier

box = LocalSandbox()
for tier in Tier:
    found = box.availability(tier)
    state = "available" if found.available else "NOT available"
    print(f"setup-sandbox: {tier.value} tier {state}: {found.detail}")
PY
fi
