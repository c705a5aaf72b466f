#!/usr/bin/env bash
# `make run`: postcove as local processes on the embedded default (SQLite),
# state under DATA (default ./data), ports from DESIGN.md. Ctrl-C stops
# everything cleanly (SIGTERM to each service, then wait for it).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA="${1:-$PWD/data}"
mkdir -p "$DATA"
BIN="$PWD/bin"

# A self-signed certificate for IMAP/POP3/SMTP TLS when ./ssl has none; real
# certificates there are left alone.
if [[ ! -f ssl/cert.pem || ! -f ssl/key.pem ]] && ! command -v openssl >/dev/null; then
	echo "openssl not found (apt-get install openssl): IMAP, POP3 and submission run without TLS, so logins are refused until then" >&2
elif [[ ! -f ssl/cert.pem || ! -f ssl/key.pem ]]; then
	mkdir -p ssl
	openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=localhost" \
		-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		-keyout ssl/key.pem -out ssl/cert.pem 2>/dev/null
	chmod 600 ssl/key.pem
	echo "created a self-signed certificate in ssl/ (replace it with a real one)"
fi

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

# Implicit-TLS ports only with a certificate; STARTTLS is offered then too.
# (The MTA's port 2465 follows tls.cert_file by itself.)
mailbox_tls=() mta_tls=()
if [[ -f ssl/cert.pem && -f ssl/key.pem ]]; then
	mailbox_tls=(POSTCOVE_MAILBOX_TLS_CERT_FILE="$PWD/ssl/cert.pem" POSTCOVE_MAILBOX_TLS_KEY_FILE="$PWD/ssl/key.pem"
		POSTCOVE_MAILBOX_LISTEN_POP3S=127.0.0.1:2995 POSTCOVE_MAILBOX_LISTEN_IMAPS=127.0.0.1:2993)
	mta_tls=(POSTCOVE_MTA_TLS_CERT_FILE="$PWD/ssl/cert.pem" POSTCOVE_MTA_TLS_KEY_FILE="$PWD/ssl/key.pem")
fi
env POSTCOVE_MAILBOX_STORE_ROOT="$DATA/mail" "${mailbox_tls[@]}" "$BIN/mailbox" &
pids+=($!)
# The MTA starts last but need not: it retries auth and keeps mail queued
# while the mailbox is not up yet.
env POSTCOVE_MTA_QUEUE_DIR="$DATA/queue" POSTCOVE_MTA_DKIM_KEYS_DIR="$PWD/keys" "${mta_tls[@]}" "$BIN/mta" &
pids+=($!)

cat <<MSG

postcove is running (state in $DATA). Try:
  bin/mailctl domain add example.org
  bin/mailctl user add alice@example.org
  bin/mailctl auth test alice@example.org
  swaks --server 127.0.0.1:2525 --to alice@example.org
  swaks --server 127.0.0.1:2587 --tls --auth-user alice@example.org --from alice@example.org --to alice@example.org
  curl --insecure -u alice@example.org 'imaps://127.0.0.1:2993/INBOX;UID=1'
  curl --insecure -u alice@example.org pop3s://127.0.0.1:2995/1
Ctrl-C stops it.

MSG
# Exit as soon as any service exits (the trap stops the others).
wait -n
