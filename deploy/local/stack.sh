#!/usr/bin/env bash
# Local stack without Docker: one KRaft Kafka node + FerretDB (SQLite backend), both on 127.0.0.1.
# Kafka serves PLAINTEXT (the default for everything) and SASL_SSL (PLAIN, SCRAM-SHA-256/512; user
# contact-service; certificates made once under $STACK_RUN_DIR/tls; see docs/kafka-security.md).
#
#   deploy/local/stack.sh install   fetch Kafka jars (Maven Central) and build FerretDB (Go module proxy)
#   deploy/local/stack.sh start     install if needed, start both, wait until each really answers
#   deploy/local/stack.sh stop | status | restart
#   deploy/local/stack.sh env       print the exports the service and the tests read
#
# Settings (environment): STACK_CACHE (downloads/builds, default <repo>/.cache/stack),
# STACK_RUN_DIR (data, logs, pids, tls; default $STACK_CACHE/run), KAFKA_PORT (9092),
# KAFKA_CONTROLLER_PORT (9093), KAFKA_SASL_PORT (9094, the SASL_SSL listener),
# FERRETDB_PORT (27017), STACK_WAIT_SECONDS (120),
# KAFKA_HEAP (-Xms1g -Xmx1g), KAFKA_JVM_PERFORMANCE_OPTS (kafka-run-class.sh's defaults).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
STACK_CACHE="${STACK_CACHE:-$REPO/.cache/stack}"
STACK_RUN_DIR="${STACK_RUN_DIR:-$STACK_CACHE/run}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_SASL_PORT="${KAFKA_SASL_PORT:-9094}"
FERRETDB_PORT="${FERRETDB_PORT:-27017}"
STACK_WAIT_SECONDS="${STACK_WAIT_SECONDS:-120}"
KAFKA_HEAP="${KAFKA_HEAP:--Xms1g -Xmx1g}"
# The broker runs as Kafka's own start scripts run it (kafka-server-start.sh's heap and
# kafka-run-class.sh's flags): G1 aiming at 20 ms pauses rather than the JVM's default 200 ms.
KAFKA_JVM_PERFORMANCE_OPTS="${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
-XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}"

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/kafka/pom.xml")"
KAFKA_LIBS="$STACK_CACHE/kafka-$KAFKA_VERSION/libs"
FERRETDB_VERSION="$(awk '/FerretDB\/FerretDB v/ {print $3}' "$HERE/ferretdb/go.mod")"
FERRETDB_PATCH="$HERE/ferretdb/local.patch"
FERRETDB_BIN="$STACK_CACHE/ferretdb-$FERRETDB_VERSION-$(sha256sum "$FERRETDB_PATCH" | cut -c1-12)/ferretdb-local"
LOGS="$STACK_RUN_DIR/logs"
# The SASL_SSL listener's user (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512) and TLS material. Test-only
# secrets: they are printed by `env` and written to server.properties.
KAFKA_SASL_USERNAME=contact-service
KAFKA_SASL_PASSWORD=contact-service-secret
KAFKA_TLS_DIR="$STACK_RUN_DIR/tls"
KAFKA_TLS_STORE_PASSWORD=local-stack-store
# Written to the data dir once its SCRAM users exist; a data dir formatted before SASL has none.
SCRAM_MARKER="scram-users: $KAFKA_SASL_USERNAME SCRAM-SHA-256 SCRAM-SHA-512"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required ($2)"; }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() {
  local f="$STACK_RUN_DIR/$1.pid"
  [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

install_kafka() {
  if [[ -f "$KAFKA_LIBS/.complete" ]]; then return; fi
  need java "Java 17+"
  need mvn "Apache Maven"
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central"
  rm -rf "$KAFKA_LIBS"
  mkdir -p "$KAFKA_LIBS"
  mvn -B -q -f "$HERE/kafka/pom.xml" \
    -Dmaven.repo.local="$STACK_CACHE/m2" \
    dependency:copy-dependencies -DoutputDirectory="$KAFKA_LIBS" -DincludeScope=runtime
  touch "$KAFKA_LIBS/.complete"
}

# FerretDB v1.24 with deploy/local/ferretdb/local.patch, so the store behaves as MongoDB does where
# the service relies on it (docs/local-store.md says why, and tests/integration/test_local_store.py
# holds each point):
# - an exact `_id` is pushed down to the `_id` index even when the filter holds more (a
#   compare-and-set `{_id, version}`), and through the indexed expression (upstream pushes down
#   `->'$._id'` but indexes `->"_id"`, so every find by `_id` scanned);
# - an `_id` range of plain strings, sorted by `_id` and limited, is read from the index (a page);
# - update, delete and findAndModify run one at a time, so a filtered write is atomic.
install_ferretdb() {
  if [[ -x "$FERRETDB_BIN" ]]; then return; fi
  need go "Go 1.24+"
  need patch "patch (Debian package patch)"
  log "building FerretDB $FERRETDB_VERSION from the Go module proxy (with $FERRETDB_PATCH)"
  local gocache=(GOPATH="$STACK_CACHE/go" GOMODCACHE="$STACK_CACHE/go/mod" GOCACHE="$STACK_CACHE/go/build")
  local src="$STACK_CACHE/ferretdb-src-$FERRETDB_VERSION" build="$STACK_CACHE/ferretdb-build"
  local module
  module="$(cd "$HERE/ferretdb" && env "${gocache[@]}" go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
  rm -rf "$src" "$build"
  cp -r "$module" "$src"
  chmod -R u+w "$src"
  patch -s -p1 -d "$src" <"$FERRETDB_PATCH" || die "patching FerretDB failed"
  mkdir -p "$build" "$(dirname "$FERRETDB_BIN")"
  cp "$HERE/ferretdb/go.mod" "$HERE/ferretdb/go.sum" "$HERE/ferretdb/main.go" "$build/"
  (
    cd "$build"
    env "${gocache[@]}" go mod edit -replace "github.com/FerretDB/FerretDB=$src"
    env "${gocache[@]}" GOFLAGS=-mod=mod go build -trimpath -o "$FERRETDB_BIN.tmp" .
  )
  mv "$FERRETDB_BIN.tmp" "$FERRETDB_BIN"
}

install() {
  install_kafka
  install_ferretdb
}

kafka_java() {
  java $KAFKA_HEAP -Dlog4j2.configurationFile="$HERE/kafka/log4j2.properties" \
    -Dkafka.logs.dir="$LOGS" -cp "$KAFKA_LIBS/*" "$@"
}

# TLS material for the SASL_SSL listener, made once per run dir (in a temporary dir, moved into place
# when complete): a self-signed CA (ca.pem, ca.key), the broker's key + certificate for localhost /
# 127.0.0.1 with the CA chain (broker.p12), the CA as a Java truststore (truststore.p12, for client
# certificates), and a client key + certificate in PEM (client.key, client.pem, CN=contact-service).
tls_setup() {
  if [[ -f "$KAFKA_TLS_DIR/.complete" ]]; then return; fi
  need openssl "Debian package openssl"
  need keytool "Java 17+"
  local tmp="$KAFKA_TLS_DIR.tmp"
  rm -rf "$tmp" "$KAFKA_TLS_DIR"
  mkdir -p "$tmp" "$LOGS"
  log "generating the local CA and broker/client certificates in $KAFKA_TLS_DIR"
  # A child bash, so that -e holds inside (it would not in a subshell followed by ||).
  (cd "$tmp" && env CLIENT_CN="$KAFKA_SASL_USERNAME" STORE_PASSWORD="$KAFKA_TLS_STORE_PASSWORD" \
    bash -euo pipefail -x) >"$LOGS/tls.log" 2>&1 <<'SH' || die "generating TLS material failed, see $LOGS/tls.log"
days=3650
openssl req -x509 -newkey rsa:2048 -noenc -sha256 -days "$days" -subj "/CN=contact-service local stack CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout ca.key -out ca.pem
# sign NAME SUBJECT EXTENSIONS: NAME.key + NAME.pem, signed by the CA
sign() {
  openssl req -new -newkey rsa:2048 -noenc -subj "$2" -keyout "$1.key" -out "$1.csr"
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "$3" >"$1.ext"
  openssl x509 -req -sha256 -days "$days" -in "$1.csr" -CA ca.pem -CAkey ca.key \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$1.ext" -out "$1.pem"
  rm "$1.csr" "$1.ext"
}
sign broker /CN=localhost $'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth'
sign client "/CN=$CLIENT_CN" "extendedKeyUsage=clientAuth"
openssl pkcs12 -export -name broker -in broker.pem -inkey broker.key -certfile ca.pem \
  -passout "pass:$STORE_PASSWORD" -out broker.p12
rm broker.key broker.pem
keytool -importcert -noprompt -alias local-stack-ca -file ca.pem -storetype PKCS12 \
  -keystore truststore.p12 -storepass "$STORE_PASSWORD"
chmod 600 ./*.key
touch .complete
SH
  mv "$tmp" "$KAFKA_TLS_DIR"
}

start_kafka() {
  if pid_alive kafka; then log "kafka already running (pid $(cat "$STACK_RUN_DIR/kafka.pid"))"; return; fi
  if port_open "$KAFKA_PORT"; then die "port $KAFKA_PORT is taken by another process"; fi
  if port_open "$KAFKA_SASL_PORT"; then die "port $KAFKA_SASL_PORT (KAFKA_SASL_PORT) is taken by another process"; fi
  local data="$STACK_RUN_DIR/kafka-data" conf="$STACK_RUN_DIR/server.properties"
  mkdir -p "$data" "$LOGS"
  tls_setup
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|@KAFKA_SASL_PORT@|$KAFKA_SASL_PORT|g" -e "s|@KAFKA_TLS_DIR@|$KAFKA_TLS_DIR|g" \
      -e "s|@KAFKA_TLS_STORE_PASSWORD@|$KAFKA_TLS_STORE_PASSWORD|g" \
      -e "s|@KAFKA_SASL_USERNAME@|$KAFKA_SASL_USERNAME|g" -e "s|@KAFKA_SASL_PASSWORD@|$KAFKA_SASL_PASSWORD|g" \
      -e "s|@KAFKA_DATA_DIR@|$data|g" "$HERE/kafka/server.properties.in" >"$conf"
  if [[ ! -f "$data/meta.properties" ]]; then
    local cluster_id mechanism scram=()
    for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
      scram+=(--add-scram "$mechanism=[name=$KAFKA_SASL_USERNAME,password=$KAFKA_SASL_PASSWORD]")
    done
    cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
    kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$conf" "${scram[@]}" \
      >>"$LOGS/kafka-format.log" 2>&1 || die "kafka storage format failed, see $LOGS/kafka-format.log"
    echo "$SCRAM_MARKER" >"$data/.stack-scram-users"
  fi
  log "starting kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT"
  # shellcheck disable=SC2086  # KAFKA_HEAP and KAFKA_JVM_PERFORMANCE_OPTS hold several JVM flags
  nohup java $KAFKA_HEAP $KAFKA_JVM_PERFORMANCE_OPTS \
    -Xlog:gc:file="$LOGS/kafka-gc.log":time,uptime:filecount=10,filesize=100M \
    -Dlog4j2.configurationFile="$HERE/kafka/log4j2.properties" -Dkafka.logs.dir="$LOGS" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$conf" >>"$LOGS/kafka.log" 2>&1 </dev/null &
  echo $! >"$STACK_RUN_DIR/kafka.pid"
}

# A data dir formatted before the SASL_SSL listener existed has no SCRAM users: add them to the
# running broker through the Admin API (idempotent, keeps the data), once per data dir. A failure
# only warns (PLAINTEXT and SASL PLAIN work without them) and is retried at the next start.
ensure_scram_users() {
  local marker="$STACK_RUN_DIR/kafka-data/.stack-scram-users"
  if [[ "$(cat "$marker" 2>/dev/null)" == "$SCRAM_MARKER" ]]; then return; fi
  log "adding SCRAM user $KAFKA_SASL_USERNAME (data dir formatted before SASL)"
  if kafka_java "$HERE/kafka/ScramUsers.java" "127.0.0.1:$KAFKA_PORT" "$KAFKA_SASL_USERNAME" "$KAFKA_SASL_PASSWORD" \
    >>"$LOGS/kafka-scram.log" 2>&1; then
    echo "$SCRAM_MARKER" >"$marker"
  else
    log "warning: adding SCRAM users failed (SCRAM logins will fail), see $LOGS/kafka-scram.log"
  fi
}

start_ferretdb() {
  if pid_alive ferretdb; then log "ferretdb already running (pid $(cat "$STACK_RUN_DIR/ferretdb.pid"))"; return; fi
  if port_open "$FERRETDB_PORT"; then die "port $FERRETDB_PORT is taken by another process"; fi
  local data="$STACK_RUN_DIR/ferretdb-data"
  mkdir -p "$data" "$LOGS"
  log "starting ferretdb $FERRETDB_VERSION on 127.0.0.1:$FERRETDB_PORT"
  nohup "$FERRETDB_BIN" -listen-addr "127.0.0.1:$FERRETDB_PORT" -sqlite-url "file:$data/" \
    >>"$LOGS/ferretdb.log" 2>&1 </dev/null &
  echo $! >"$STACK_RUN_DIR/ferretdb.pid"
}

# Kafka answers when a Metadata request lists this broker; a TCP accept alone comes earlier than
# that. Hand-made request (Metadata v1, no topics) so the check costs no JVM start.
kafka_ready() {
  python3 - "$KAFKA_PORT" <<'PY' >/dev/null 2>&1
import socket, struct, sys
port = int(sys.argv[1])
client = b"stack-check"
body = struct.pack(">hhih", 3, 1, 7, len(client)) + client + struct.pack(">i", 0)
with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
    s.sendall(struct.pack(">i", len(body)) + body)
    size = struct.unpack(">i", s.recv(4))[0]
    data = b""
    while len(data) < size:
        chunk = s.recv(size - len(data))
        if not chunk:
            break
        data += chunk
correlation, brokers = struct.unpack(">ii", data[:8])
sys.exit(0 if correlation == 7 and brokers >= 1 else 1)
PY
}

# FerretDB answers when a `ping` over the wire protocol gets ok:1 back. The handshake is hand-made
# so the check needs nothing but bash + python3 (always present where the service runs).
ferretdb_ready() {
  python3 - "$FERRETDB_PORT" <<'PY' >/dev/null 2>&1
import socket, struct, sys
port = int(sys.argv[1])
# OP_MSG with one body section {ping: 1, $db: "admin"} as hand-encoded BSON.
def cstr(s): return s.encode() + b"\0"
body = b"\x10" + cstr("ping") + struct.pack("<i", 1) + b"\x02" + cstr("$db") + struct.pack("<i", 6) + cstr("admin")
doc = struct.pack("<i", len(body) + 5) + body + b"\0"
msg = struct.pack("<I", 0) + b"\0" + doc
header = struct.pack("<iiii", 16 + len(msg), 1, 0, 2013)
with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
    s.sendall(header + msg)
    reply = s.recv(65536)
sys.exit(0 if b"ok" in reply and len(reply) > 21 else 1)
PY
}

wait_ready() {
  local name="$1" check="$2" deadline=$((SECONDS + STACK_WAIT_SECONDS))
  until "$check"; do
    if ! pid_alive "$name"; then
      tail -n 30 "$LOGS/$name.log" >&2 || true
      die "$name exited during startup, see $LOGS/$name.log"
    fi
    if ((SECONDS >= deadline)); then die "$name not ready after ${STACK_WAIT_SECONDS}s, see $LOGS/$name.log"; fi
    sleep 0.5
  done
  log "$name ready"
}

stop_one() {
  local name="$1" f="$STACK_RUN_DIR/$1.pid"
  if ! pid_alive "$name"; then rm -f "$f"; log "$name not running"; return; fi
  local pid; pid="$(cat "$f")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then log "$name did not stop in 30s, killing"; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$f"
  log "$name stopped"
}

# The SASL_SSL listener comes up with the PLAINTEXT one; a broker started by an older stack.sh has none.
sasl_state() {
  if port_open "$KAFKA_SASL_PORT"; then echo "SASL_SSL on 127.0.0.1:$KAFKA_SASL_PORT"
  else echo "no SASL_SSL listener on 127.0.0.1:$KAFKA_SASL_PORT (broker started before it existed? restart)"; fi
}

status() {
  local rc=0
  if pid_alive kafka && kafka_ready; then log "kafka: up on 127.0.0.1:$KAFKA_PORT, $(sasl_state)"; else log "kafka: down"; rc=1; fi
  if pid_alive ferretdb && ferretdb_ready; then log "ferretdb: up on 127.0.0.1:$FERRETDB_PORT"; else log "ferretdb: down"; rc=1; fi
  return $rc
}

start() {
  install
  local t0=$SECONDS
  start_ferretdb
  start_kafka
  wait_ready ferretdb ferretdb_ready
  wait_ready kafka kafka_ready
  ensure_scram_users
  port_open "$KAFKA_SASL_PORT" || log "warning: $(sasl_state)"
  log "stack ready in $((SECONDS - t0))s (logs: $LOGS)"
}

print_env() {
  echo "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT"
  echo "export MONGODB_URL=mongodb://127.0.0.1:$FERRETDB_PORT/"
  echo "export KAFKA_SASL_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_SASL_PORT"
  echo "export KAFKA_SASL_CA_FILE=$KAFKA_TLS_DIR/ca.pem"
  echo "export KAFKA_SASL_CLIENT_CERT=$KAFKA_TLS_DIR/client.pem"
  echo "export KAFKA_SASL_CLIENT_KEY=$KAFKA_TLS_DIR/client.key"
  echo "export KAFKA_SASL_USERNAME=$KAFKA_SASL_USERNAME"
  echo "export KAFKA_SASL_PASSWORD=$KAFKA_SASL_PASSWORD"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_one kafka; stop_one ferretdb ;;
  restart) stop_one kafka; stop_one ferretdb; start ;;
  status) status ;;
  env) print_env ;;
  *) echo "usage: $0 install|start|stop|restart|status|env" >&2; exit 2 ;;
esac
