#!/usr/bin/env bash
# The compose stack started for real (opt-in, not part of CI): as root on a Debian host, ~20 GB of disk.
#
#   docker/check.sh        # or: make compose-check
#
# 1. a Docker engine (Debian's docker.io and docker-compose; dockerd started here if none answers);
# 2. base images: the official ones if they are here or can be pulled, else the Debian stand-ins of
#    docker/standin/build-bases.sh (STANDIN=1 forces them, STANDIN=0 forbids them);
# 3. the project image, built once (docker/Dockerfile);
# 4. `docker-compose up` with secrets generated for this run, waiting for every service's health check;
# 5. the tiny profile's landing files, the features DAG for its first day run in the Airflow scheduler
#    container (each task a spark-submit to the compose Spark master), the tables' row counts checked;
# 6. `docker-compose down -v`, also when a step fails.
# Every line it prints starts with the UTC time and the seconds since it started.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
say() { printf '[%s +%4ds] %s\n' "$(date -u +%H:%M:%S)" "$(( $(date +%s) - started ))" "$*"; }

python_image=python:3.11-slim-bookworm
postgres_image=postgres:16-bookworm
standin_image=recdistill-standin/bookworm:latest
project=recdistill-check
work="$(mktemp -d)"
compose_files=(-f docker/compose.yaml)
# The docker.io package's client: it builds with BuildKit without the buildx plugin a newer client needs.
docker() { if [[ -x /usr/bin/docker ]]; then /usr/bin/docker "$@"; else command docker "$@"; fi; }

# --- 1. engine -------------------------------------------------------------------------------------
if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose >/dev/null
fi
dockerd_pid=""
if ! docker info >/dev/null 2>&1; then
  # overlay2 where the kernel allows it; vfs (a full copy per layer and per container) otherwise.
  for driver in overlay2 vfs; do
    dockerd --storage-driver="$driver" >"$work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 && break
    kill "$dockerd_pid" 2>/dev/null || true; wait "$dockerd_pid" 2>/dev/null || true; dockerd_pid=""
  done
fi
docker info >/dev/null 2>&1 || { echo "no Docker engine answers (see $work/dockerd.log)" >&2; exit 1; }
say "docker engine $(docker version --format '{{.Server.Version}}'), storage $(docker info --format '{{.Driver}}')"

compose() { docker-compose -p "$project" --env-file "$work/check.env" "${compose_files[@]}" "$@"; }
cleanup() {
  local status=$?
  if [[ -f "$work/check.env" ]]; then
    [[ $status -ne 0 ]] && compose logs --tail 40 2>&1 | tail -n 200
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    say "docker-compose down -v: done"
  fi
  [[ -n "$dockerd_pid" ]] && { kill "$dockerd_pid" 2>/dev/null || true; wait "$dockerd_pid" 2>/dev/null || true; }
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 2. base images --------------------------------------------------------------------------------
have_official() {
  local image
  for image in "$python_image" "$postgres_image"; do
    docker image inspect "$image" >/dev/null 2>&1 || timeout 120 docker pull -q "$image" >/dev/null 2>&1 || return 1
  done
}
if [[ "${STANDIN:-auto}" == 1 ]] || { [[ "${STANDIN:-auto}" == auto ]] && ! have_official; }; then
  [[ "${STANDIN:-auto}" == 0 ]] && { echo "the official images cannot be had and STANDIN=0" >&2; exit 1; }
  docker/standin/build-bases.sh >"$work/bases.log" 2>&1 || { cat "$work/bases.log" >&2; exit 1; }
  python_image="$standin_image"
  compose_files+=(-f docker/compose.standin.yaml)
  say "base images: stand-in $standin_image ($(docker image inspect --format '{{.Size}}' "$standin_image" | numfmt --to=iec))"
else
  say "base images: official $python_image, $postgres_image"
fi

# --- 3. project image ------------------------------------------------------------------------------
DOCKER_BUILDKIT=1 docker build --network host --progress plain -f docker/Dockerfile \
  --build-arg PYTHON_IMAGE="$python_image" -t recdistill:local . >"$work/build.log" 2>&1 \
  || { tail -n 60 "$work/build.log" >&2; exit 1; }
say "project image recdistill:local built ($(docker image inspect --format '{{.Size}}' recdistill:local | numfmt --to=iec))"

# --- 4. up, healthy --------------------------------------------------------------------------------
# Every secret .env.example leaves empty gets a fresh value; the tiny profile keeps the check short.
while IFS='=' read -r key value; do
  [[ -z "$key" || "$key" == \#* ]] && continue
  if [[ -z "$value" ]]; then
    if [[ "$key" == AIRFLOW_FERNET_KEY ]]; then
      value="$(python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')"
    else
      value="$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
    fi
  fi
  [[ "$key" == RECDISTILL_PROFILE ]] && value=tiny
  printf '%s=%s\n' "$key" "$value"
done <docker/.env.example >"$work/check.env"
chmod 600 "$work/check.env"

compose up -d --no-build >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; exit 1; }
say "docker-compose up -d: $(compose ps --services | wc -l) services"

# A service is ready when its health check passes, or, without one, when it runs (airflow-init: exited 0).
declare -A ready_at=()
deadline=$(( $(date +%s) + ${HEALTH_TIMEOUT_S:-1200} ))
while :; do
  pending=0
  for service in $(compose ps --services); do
    [[ -n "${ready_at[$service]:-}" ]] && continue
    id="$(compose ps -q "$service")"
    state="$(docker inspect --format '{{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")"
    read -r status code health <<<"$state"
    if [[ "$service" == airflow-init ]]; then
      [[ "$status" == exited && "$code" == 0 ]] && ready_at[$service]=$(( $(date +%s) - started ))
      [[ "$status" == exited && "$code" != 0 ]] && { compose logs "$service" | tail -n 40 >&2; exit 1; }
    elif [[ "$health" == healthy || ( "$health" == none && "$status" == running ) ]]; then
      ready_at[$service]=$(( $(date +%s) - started ))
    fi
    if [[ -n "${ready_at[$service]:-}" ]]; then
      say "ready: $service ($status, health check: $health)"
    else
      pending=$(( pending + 1 ))
    fi
  done
  (( pending == 0 )) && break
  (( $(date +%s) > deadline )) && { compose ps >&2; echo "services not ready in time" >&2; exit 1; }
  sleep 5
done
say "every service ready"

# --- 5. the features DAG for one day, in the scheduler container ---------------------------------
in_airflow() { compose exec -T airflow-scheduler "$@"; }
in_airflow recdistill data generate | tail -n 1
day="$(in_airflow python -c 'from pipeline.config import load_settings; print(load_settings().generator.start_date)' | tail -n 1)"
say "landing files generated; running recdistill_features for $day"
in_airflow airflow dags test recdistill_features "$day" >"$work/dag.log" 2>&1 \
  || { tail -n 80 "$work/dag.log" >&2; exit 1; }
say "recdistill_features $day: every task succeeded (airflow dags test exited 0)"
counts="$(in_airflow python -c '
import json
from datetime import date
from pipeline.config import load_settings
from pipeline.tables import TABLES, read_arrow, table_exists
settings = load_settings()
day = settings.generator.start_date
print(json.dumps({name: read_arrow(settings, spec, [day]).num_rows for name, spec in TABLES.items() if table_exists(settings, spec)}))
' | tail -n 1)"
say "rows on $day: $counts"
python3 - "$counts" <<'PY'
import json, sys
counts = json.loads(sys.argv[1])
# The first day has no earlier day, so its point-in-time features are empty by design.
for table in ("events", "sequences", "training_samples"):
    assert counts.get(table, 0) > 0, f"{table} has no rows: {counts}"
assert counts["events"] == counts["training_samples"] == counts["sequences"], counts
PY
applications="$(compose exec -T spark-master python -c '
import json, urllib.request
state = json.load(urllib.request.urlopen("http://localhost:8081/json/"))
print(" ".join(sorted(app["name"] for app in state["completedapps"])))
' | tail -n 1)"
say "applications the Spark master ran: $applications"
say "check passed"
