#!/usr/bin/env bash
# EXPLAIN (ANALYZE, BUFFERS) of one append_push_events call with append.sql's batch, in the
# given (already migrated) schema, after 200 warm-up batches in the same session (so that the
# function's plans are cached, as in a pooled connection):  bench/pgbench/explain.sh <schema>
set -euo pipefail
cd "$(dirname "$0")/../.."
DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
batch() { grep '^SELECT' bench/pgbench/append.sql | sed "s/:p\([0-9]*\)/1\1$RANDOM/g; s/:client_id/explain/g; s/:k/$RANDOM$RANDOM$1/g"; }
{ for i in $(seq 1 200); do batch "w$i"; done; echo "\\o /dev/stdout"; echo "EXPLAIN (ANALYZE, BUFFERS) $(batch e)"; } |
  PGOPTIONS="-c search_path=$1" psql -qAt -o /dev/null "$DATABASE_URL"
