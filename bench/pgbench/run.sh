#!/usr/bin/env bash
# The append alone, without kasgate: pgbench calls append_push_events with a 16-event batch
# (append.sql) on 1, 2 and 4 clients, in a fresh schema migrated by kasgate, dropped at the end.
#   bench/pgbench/run.sh [seconds per client count, default 10]
# Needs pgbench (postgresql-contrib on Debian) and the built dist/ (npm run build).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
SECONDS_EACH="${1:-10}"
SCHEMA="pgbench_$(date +%s)_$$"
trap 'psql "$DATABASE_URL" -qAtc "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null' EXIT
DATABASE_URL="$DATABASE_URL" KASGATE_DB_SCHEMA="$SCHEMA" node dist/main.js migrate >/dev/null
for clients in 1 2 4; do
  tps=$(PGOPTIONS="-c search_path=$SCHEMA" pgbench -n -M simple -c "$clients" -j "$clients" -T "$SECONDS_EACH" \
    -f bench/pgbench/append.sql "$DATABASE_URL" 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
  echo "clients=$clients batches/s=$tps events/s=$(awk "BEGIN{printf \"%d\", $tps*16}")"
done
