#!/usr/bin/env bash
# The test command: unit, integration and end-to-end tests against a real Kafka broker and a real
# MongoDB-wire store. Endpoints come from KAFKA_BOOTSTRAP_SERVERS/MONGODB_URL, else testcontainers
# when a Docker engine answers, else deploy/local/stack.sh (started here, stopped by the tests'
# fixture only if it was not already running). Extra arguments go to pytest.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$("$HERE/venv.sh")"
cd "$HERE/../.."
exec "$VENV/bin/python" -m pytest "$@"
