#!/usr/bin/env bash
# `make e2e`: the compose end-to-end flow against `make run` (no Docker), so
# a machine without Docker still tests the whole system as a newcomer runs
# it: scripts/run-local.sh on a fresh data directory, a domain and a user
# made with mailctl, mail sent with swaks from outside (25) and by the user
# (587 STARTTLS and 465 implicit TLS, with AUTH), read back with curl over
# IMAPS and POP3S, the
# queue empty, then a clean stop. It uses the local ports of DESIGN.md, so
# stop a running `make run` first. Stopping a single service and the
# database restart are covered by services/mta/cmd/mta's end-to-end test
# and the compose test.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in swaks curl openssl; do
	command -v "$tool" >/dev/null || { echo "e2e: $tool not found: run scripts/install-deps.sh" >&2; exit 1; }
done
make -s build

work=$(mktemp -d)
log="$work/run.log"
# This machine may have no DNS: SPF/DMARC of the test sender's domain could
# only be temperrors, which the MTA answers 451 by design.
export POSTCOVE_MTA_VERIFY_ENABLED=false
setsid scripts/run-local.sh "$work/data" >"$log" 2>&1 &
run_pid=$!

ok=0
teardown() {
	kill -TERM "$run_pid" 2>/dev/null || true
	wait "$run_pid" 2>/dev/null || true
	if ((!ok)); then
		echo "e2e: FAILED; the services' log:" >&2
		tail -n 60 "$log" >&2
	fi
	rm -rf "$work"
}
trap teardown EXIT
fail() { echo "e2e: $*" >&2; exit 1; }

# Every service healthy (their own healthcheck subcommands, default ports).
deadline=$((SECONDS + 60))
until bin/auth healthcheck >/dev/null 2>&1 && bin/mailbox healthcheck >/dev/null 2>&1 &&
	bin/mta healthcheck >/dev/null 2>&1; do
	kill -0 "$run_pid" 2>/dev/null || fail "make run exited during start"
	((SECONDS < deadline)) || fail "services not healthy after 60 s"
	sleep 0.5
done
echo "e2e: auth, mailbox and mta healthy"

bin/mailctl domain add example.org
echo 'e2e-secret' | bin/mailctl user add alice@example.org --password-stdin
echo 'e2e-secret' | bin/mailctl user add bob@example.org --password-stdin

token="e2e-$RANDOM$RANDOM"
swaks --silent 2 --server 127.0.0.1:2525 --helo client.example.net --from someone@example.net \
	--to alice@example.org --header "Subject: inbound $token" --body "from outside $token" ||
	fail "swaks to 2525 refused the message"
swaks --silent 2 --server 127.0.0.1:2587 --tls --auth PLAIN --auth-user bob@example.org --auth-password e2e-secret \
	--from bob@example.org --to alice@example.org --header "Subject: submitted $token" --body "from bob $token" ||
	fail "swaks to 2587 refused the message"
# Port 2465 is on by default because make run has a certificate.
swaks --silent 2 --server 127.0.0.1:2465 --tls-on-connect --auth PLAIN --auth-user bob@example.org --auth-password e2e-secret \
	--from bob@example.org --to alice@example.org --header "Subject: submitted on 465 $token" --body "over implicit TLS $token" ||
	fail "swaks to 2465 refused the message"
echo "e2e: sent on 25, 587 and 465"

# The three messages in alice's INBOX, over IMAPS; the first also over POP3S.
deadline=$((SECONDS + 30))
until [[ $(curl -s --insecure -u alice@example.org:e2e-secret 'imaps://127.0.0.1:2993/INBOX?TEXT%20'"$token" || true) == "* SEARCH 1 2 3"* ]]; do
	((SECONDS < deadline)) || fail "the three messages did not reach alice's INBOX"
	sleep 0.5
done
# The two submitted messages may arrive in either order.
submitted=$(for uid in 2 3; do curl -sS --insecure -u alice@example.org:e2e-secret "imaps://127.0.0.1:2993/INBOX;UID=$uid"; done)
grep -q "from bob $token" <<<"$submitted" || fail "IMAPS FETCH of the message submitted on 587"
grep -q "over implicit TLS $token" <<<"$submitted" || fail "IMAPS FETCH of the message submitted on 465"
curl -sS --insecure -u alice@example.org:e2e-secret pop3s://127.0.0.1:2995/1 | grep -q "from outside $token" ||
	fail "POP3S RETR of the inbound message"
echo "e2e: read over IMAPS and POP3S"

queue=$(bin/mailctl queue list --json) || fail "mailctl queue list failed"
[[ -z $(tr -d '[:space:][]' <<<"$queue" | sed 's/^null$//') ]] || fail "the queue is not empty: $queue"
ok=1
echo "e2e: make run flow passed"
