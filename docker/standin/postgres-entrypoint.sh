#!/usr/bin/env bash
# The official postgres image's start-up contract, for the Debian stand-in base (compose.standin.yaml):
# on an empty data volume, initdb with POSTGRES_USER / POSTGRES_PASSWORD and run every
# /docker-entrypoint-initdb.d/*.sh against a socket-only server; then PostgreSQL on the container's
# network, a password required from every TCP client.
set -euo pipefail

bin="$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -1)"
export PATH="$bin:$PATH" PGDATA="${PGDATA:-/var/lib/postgresql/data}"

if [[ $EUID -eq 0 ]]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec runuser -u postgres -- bash "$0" "$@"
fi

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  pwfile="$(mktemp)"
  printf '%s' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" >"$pwfile"
  initdb --username="${POSTGRES_USER:-postgres}" --pwfile="$pwfile" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --no-instructions
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  pg_ctl --wait --options "-c listen_addresses=''" start
  for script in /docker-entrypoint-initdb.d/*.sh; do
    [[ -f "$script" ]] && bash "$script"
  done
  pg_ctl --wait --mode fast stop
fi
exec postgres -c listen_addresses='*'
