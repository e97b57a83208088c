#!/usr/bin/env bash
# Starts everything on a fresh machine: Kafka + FerretDB (deploy/local/stack.sh) and the service
# in the foreground (Ctrl-C / SIGTERM stops it cleanly; `deploy/local/stack.sh stop` stops the stack).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$("$HERE/venv.sh")"
"$HERE/stack.sh" start
eval "$("$HERE/stack.sh" env)"
exec "$VENV/bin/contact-service"
