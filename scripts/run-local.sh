#!/usr/bin/env bash
# `make run`: postcove as local processes on the embedded default (SQLite),
# state under DATA (default ./data), ports from DESIGN.md. Ctrl-C stops
# everything cleanly (SIGTERM to each service, then wait for it).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA="${1:-$PWD/data}"
mkdir -p "$DATA"
BIN="$PWD/bin"

pids=()
stop() {
	trap - INT TERM EXIT
	((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null || true
	wait
	exit 0
}
trap stop INT TERM EXIT

POSTCOVE_AUTH_DATABASE_DSN="$DATA/auth.db" "$BIN/auth" &
pids+=($!)

cat <<MSG

postcove is running (state in $DATA). Try:
  bin/mailctl domain add example.org
  bin/mailctl user add alice@example.org
  bin/mailctl auth test alice@example.org
Ctrl-C stops it.

MSG
# Exit as soon as any service exits (the trap stops the others).
wait -n
