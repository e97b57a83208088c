#!/usr/bin/env bash
# Checks the wire contract offline (no broker, no store); exits non-zero if either check fails:
#   1. docs/asyncapi.json parses with the official AsyncAPI parser (@asyncapi/parser, pinned in
#      deploy/contracts/package-lock.json): any error-severity diagnostic fails, warnings are shown.
#   2. the compatibility gate (deploy/contracts/gate.py): docs/schemas/ against the released
#      baseline docs/schemas/released/; a breaking change fails unless its topic's version is bumped.
#
#   deploy/contracts/check.sh [ROOT]   ROOT: a tree laid out like the repo (default: this repo)
# The parser is installed once per lock file under .cache/contracts/ (git-ignored): a warm run
# takes about a second.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROOT="$(cd "${1:-$REPO}" && pwd)"
HERE="$REPO/deploy/contracts"
CACHE="${CONTRACTS_CACHE:-$REPO/.cache/contracts}"
t0=$SECONDS
log() { printf '[contracts] %s\n' "$*"; }
failed=0

# --- parser --------------------------------------------------------------------------------------
command -v node >/dev/null || { log "error: Node.js 20+ is required for @asyncapi/parser"; exit 1; }
stamp="$CACHE/.installed-$(cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  log "installing @asyncapi/parser into $CACHE (npm ci)" >&2
  rm -rf "$CACHE"
  mkdir -p "$CACHE"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$CACHE/"
  # --ignore-scripts: the parser needs no install scripts (one dependency's only reports usage).
  npm ci --prefix "$CACHE" --ignore-scripts --no-audit --no-fund --loglevel=error >&2
  touch "$stamp"
fi

if (cd "$ROOT" && NODE_PATH="$CACHE/node_modules" node "$HERE/asyncapi-check.cjs" docs/asyncapi.json); then :
else log "docs/asyncapi.json: FAILED"; failed=1; fi

# --- compatibility gate --------------------------------------------------------------------------
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x "$REPO/.cache/venv/bin/python" ]]; then PY="$REPO/.cache/venv/bin/python"; else PY=python3; fi
fi
if "$PY" "$HERE/gate.py" --root "$ROOT"; then :
else log "compatibility gate: FAILED"; failed=1; fi

log "$([[ $failed == 0 ]] && echo passed || echo FAILED) in $((SECONDS - t0))s"
exit "$failed"
