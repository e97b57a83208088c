#!/usr/bin/env bash
# Makes sure <repo>/.cache/venv holds the project and its test/dev extras; prints the venv path.
# The wire contract is its own distribution (contracts/pyproject.toml, contact-service-contracts),
# installed first and editable, then the service, which depends on it.
# Reinstalls only when pyproject.toml or contracts/pyproject.toml changed, so a warm call takes
# well under a second.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$REPO/.cache/venv}"
PYTHON="${PYTHON:-python3}"
stamp="$VENV/.installed-$(cat "$REPO/pyproject.toml" "$REPO/contracts/pyproject.toml" | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  echo "[venv] installing contracts/ and the project into $VENV" >&2
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
  "${pip[@]}" -U pip >&2
  "${pip[@]}" -e "$REPO/contracts" >&2
  "${pip[@]}" -e "$REPO[test,dev]" >&2
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
echo "$VENV"
