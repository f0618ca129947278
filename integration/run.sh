#!/usr/bin/env bash
# The cluster-shaped integration run: `make integration`, and `make test` (what .ci/run runs) after the unit suite.
#
# Installs Debian's postgresql package if it is missing (as root), then runs integration/ with pytest:
# a private PostgreSQL, a Spark standalone master + worker and an MLflow tracking server, all on
# 127.0.0.1 on free ports, the tiny profile end to end on them, compared with the embedded run.
# Whatever happens, the trap stops every process the run started and the private PostgreSQL.
#   KEEP=1 integration/run.sh    # keep the run folder (logs, lakehouses, cluster.env) afterwards
set -euo pipefail
cd "$(dirname "$0")/.."

if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  if [[ $EUID -ne 0 ]]; then
    echo "PostgreSQL's server binaries are missing: apt-get install postgresql (as root)" >&2
    exit 1
  fi
  apt-get update -qq
  # Only the binaries: the run starts its own private cluster, never the package's service.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

run_dir="$(mktemp -d -t recdistill-integration.XXXXXX)"
export RECDISTILL_INTEGRATION_DIR="$run_dir"
# Every Spark process of the run, the embedded one's too, binds to loopback.
export SPARK_LOCAL_IP=127.0.0.1

cleanup() {
  local status=$?
  if [[ -f "$run_dir/pids" ]]; then
    # Each service was started as a session of its own; its tasks and drivers stay in that session.
    while read -r sid; do
      pkill -KILL --session "$sid" 2>/dev/null || true
    done <"$run_dir/pids"
  fi
  local pgdata="$run_dir/postgres/data"
  if [[ -f "$pgdata/postmaster.pid" ]]; then
    local pg_ctl
    pg_ctl="$(compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" | sort -V | tail -1)"
    if [[ $EUID -eq 0 ]]; then
      runuser -u postgres -- "$pg_ctl" --pgdata "$pgdata" --mode immediate stop >/dev/null || true
    else
      "$pg_ctl" --pgdata "$pgdata" --mode immediate stop >/dev/null || true
    fi
  fi
  if [[ $status -ne 0 ]]; then
    for log in "$run_dir"/logs/*.log; do
      [[ -f "$log" ]] && { echo "== tail of $log"; tail -n 30 "$log"; }
    done
  fi
  if [[ -n "${KEEP:-}" ]]; then
    echo "integration run folder kept: $run_dir"
  else
    rm -rf "$run_dir"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
.venv/bin/python -m pytest integration -x -p no:cacheprovider --durations=0 "$@"
echo "integration run: $(( $(date +%s) - start ))s"
