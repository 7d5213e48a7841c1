#!/usr/bin/env bash
# Runs `cargo xtask ensure-postgres` (CI's PostgreSQL step) as on a machine where PostgreSQL's
# packages are installed but no cluster exists and nothing answers at 127.0.0.1:5432, without
# touching this machine's own PostgreSQL: in new mount and network namespaces (root, Linux,
# `unshare`), with empty file systems over the clusters' configuration, data, socket and log
# directories. Checks that the step creates, trusts and starts a cluster with database `test`,
# that a second run leaves it as it is, then stops it. Not part of CI (it needs root and
# namespaces); run it after changing `ensure_postgres` in xtask/src/release.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p xtask --locked
xtask="$PWD/target/debug/xtask"
exec unshare --mount --net --fork bash -euo pipefail -c '
  xtask=$1
  ip link set lo up
  for d in /etc/postgresql /var/lib/postgresql /var/run/postgresql /var/log/postgresql; do
    mount -t tmpfs tmpfs "$d"
  done
  chown postgres:postgres /var/lib/postgresql /var/run/postgresql /var/log/postgresql
  chmod 2775 /var/run/postgresql
  if (echo > /dev/tcp/127.0.0.1/5432) 2>/dev/null; then echo "5432 answers before the step" >&2; exit 1; fi
  "$xtask" ensure-postgres
  trap "pg_ctlcluster --force \$(pg_lsclusters -h | cut -d\" \" -f1) main stop" EXIT
  test "$(psql -h 127.0.0.1 -U postgres -d test -Atc "SELECT current_database()")" = test
  "$xtask" ensure-postgres
  test "$(pg_lsclusters -h | wc -l)" = 1
  echo "ensure-postgres: created, trusted and started a cluster; a second run kept it"
' bash "$xtask"
