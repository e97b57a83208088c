#!/usr/bin/env bash
# Makes sure <repo>/.cache/venv holds the project and its test/dev extras; prints the venv path.
# Reinstalls only when pyproject.toml changed, so a warm call takes well under a second.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$REPO/.cache/venv}"
PYTHON="${PYTHON:-python3}"
stamp="$VENV/.installed-$(sha256sum "$REPO/pyproject.toml" | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  echo "[venv] installing the project into $VENV" >&2
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -U pip >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$REPO[test,dev]" >&2
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
echo "$VENV"
