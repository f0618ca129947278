#!/usr/bin/env bash
# The MLflow tracking server for recdistill (UI, REST API, registry, artifact proxy).
#
# Default: SQLite and artifacts under the lakehouse, the same store recdistill writes without a server.
# PostgreSQL + an artifact root:
#   MLFLOW_BACKEND_STORE_URI=postgresql://mlflow:secret@db:5432/mlflow \
#   MLFLOW_ARTIFACTS_DESTINATION=s3://bucket/recdistill/mlartifacts MLFLOW_HOST=0.0.0.0 mlflow/server.sh
# Clients then use RECDISTILL_MLFLOW_URI=http://<host>:<port>. See mlflow/README.md.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lakehouse="${RECDISTILL_LAKEHOUSE_ROOT:-$repo/lakehouse}"
backend="${MLFLOW_BACKEND_STORE_URI:-sqlite:///$(realpath -m "$lakehouse")/mlflow.db}"
artifacts="${MLFLOW_ARTIFACTS_DESTINATION:-$(realpath -m "$lakehouse")/mlartifacts}"
host="${MLFLOW_HOST:-127.0.0.1}"
port="${MLFLOW_PORT:-5000}"
# Exact Host headers the server answers (host:port too); add the names clients use to reach it.
allowed_hosts="${MLFLOW_ALLOWED_HOSTS:-localhost,localhost:$port,127.0.0.1,127.0.0.1:$port}"
bin="${MLFLOW_BIN:-$repo/.venv/bin}"

if [[ "$backend" == sqlite:///* ]]; then
  mkdir -p "$(dirname "${backend#sqlite:///}")"
fi
# Migrate once, before any client connects: concurrent first migrations race ("database is locked").
"$bin/mlflow" db upgrade "$backend"
# MLflow 3.17's UI opens experiments in its GenAI view unless the link asks for Model training.
RECDISTILL_MLFLOW__TRACKING_URI="$backend" "$bin/recdistill" registry ui "http://$host:$port" \
  || echo "(no links: recdistill could not open $backend)" >&2
export PATH="$bin:$PATH"
# recdistill runs no server-side jobs (GenAI evaluation); off spares seven worker processes that
# would also write to a SQLite store.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
exec "$bin/mlflow" server \
  --backend-store-uri "$backend" \
  --artifacts-destination "$artifacts" --serve-artifacts \
  --host "$host" --port "$port" --workers "${MLFLOW_WORKERS:-2}" \
  --allowed-hosts "$allowed_hosts"
