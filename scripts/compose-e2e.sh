#!/usr/bin/env bash
# The docker compose end-to-end test (issue 5): the real docker-compose.yml,
# built from the real Dockerfile, driven with real clients (swaks, curl).
#
#   scripts/compose-e2e.sh          (make e2e-compose; needs root and Docker)
#
# 1. base images from Debian packages (scripts/offline-images.sh; no registry
#    here), certificates into a temporary ssl/ (scripts/gen-certs.sh)
# 2. docker compose up --build -d; every container healthy; from docker's
#    events, each service started only after what it depends on was healthy
#    (auth after db, mailbox after auth, mta after auth and mailbox)
# 3. a domain and a user made with mailctl inside the auth container
# 4. mail in, read over IMAPS (993) and POP3S (995) with curl, checking the
#    certificate. Mail in is swaks to the published 25 and 587 once the mta
#    service exists (services/mta/cmd/mta); until then swaks speaks LMTP to
#    mailbox:2424 from a throwaway container on the compose network, as the
#    mta would, and the mta-only steps are reported as skipped
# 5. mailbox stopped: mail sent to 25 is queued (250), and arrives after
#    `docker compose start mailbox` (mta only)
# 6. the database restarted while mail flows: every message accepted (250)
#    arrives
# 7. --scale mailbox=2 --scale auth=2: each replica healthy and serving
#    (mailctl against each auth, POP3/IMAP on each mailbox's own host port,
#    both seeing the shared Maildir volume); another delivery round, spread
#    over both mailbox replicas when the mta delivers
# 8. teardown, always (trap): docker compose down WITHOUT -v, then the named
#    volumes must still exist and hold the mail; then they are removed
#
# Ports are published on 127.0.0.1 only, on E2E_PORT_BASE+port (default
# 20000: 20025, 20587, 20465, 20143, 20993, 20110, 20995), each a range of two
# so the scaled mailbox replicas get one each. The project is
# postcove-e2e-<pid>, so runs never share containers, networks or volumes.
# E2E_KEEP=1 leaves the stack running for inspection (and prints how to
# remove it).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

project="postcove-e2e-$$"
port_base="${E2E_PORT_BASE:-20000}"
hostname=mail.e2e.test
domain=e2e.test
user="alice@$domain"
password="e2e-$RANDOM-$RANDOM-secret"
started=$(date +%s)
work="$(mktemp -d /tmp/postcove-e2e.XXXXXX)"

log() { printf '\n=== [%3ds] %s\n' "$(($(date +%s) - started))" "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }
skipped=()
skip() { skipped+=("$*"); printf 'SKIP: %s\n' "$*"; }

# --- preconditions ------------------------------------------------------------

command -v docker >/dev/null || fail "docker not found: the compose e2e test needs Docker (apt-get install docker.io docker-compose)"
dockerd_pid=""
if ! docker info >/dev/null 2>&1; then
	# CI may run on a machine where the engine is installed but not
	# started; start it then, and say so. Anywhere else: fail loudly.
	if [[ "${CI:-}" == true && $(id -u) == 0 ]] && command -v dockerd >/dev/null; then
		log "no Docker engine answers: starting dockerd (log: $work/dockerd.log)"
		dockerd >"$work/dockerd.log" 2>&1 &
		dockerd_pid=$!
		for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
		docker info >/dev/null 2>&1 || { tail -20 "$work/dockerd.log" >&2; fail "dockerd did not come up within 60s"; }
	else
		fail "no Docker engine answers (docker info failed): start it (systemctl start docker, or dockerd as root); the compose e2e test cannot run without one"
	fi
fi
# Compose v2 (the docker plugin) when there is one, else v1 (Debian 12
# ships docker-compose 1.29): the file works with both.
if docker compose version >/dev/null 2>&1; then
	compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null; then
	compose_cmd=(docker-compose)
else
	fail "neither 'docker compose' nor 'docker-compose' found (apt-get install docker-compose)"
fi
for tool in swaks curl openssl; do
	command -v "$tool" >/dev/null || fail "$tool not found (scripts/install-deps.sh installs it)"
done

have_mta=0
[[ -f services/mta/cmd/mta/main.go ]] && have_mta=1
have_imap=0
grep -q 'toml:"imaps"' services/mailbox/internal/mailboxd/config.go && have_imap=1

# --- the stack's environment ----------------------------------------------------

ssl="$work/ssl"
keys="$work/keys"
mkdir -p "$keys"
port() { echo "$((port_base + $1))-$((port_base + $1 + 1))"; }
cat >"$work/e2e.env" <<EOF
POSTCOVE_DB_PASSWORD=e2e-db-$RANDOM$RANDOM
POSTCOVE_HOSTNAME=$hostname
POSTCOVE_VERSION=$(git describe --always --dirty 2>/dev/null || echo dev)
POSTCOVE_LOG_LEVEL=info
POSTCOVE_SSL_DIR=$ssl
POSTCOVE_KEYS_DIR=$keys
POSTCOVE_BIND=127.0.0.1
POSTCOVE_PORT_SMTP=$(port 25)
POSTCOVE_PORT_SUBMISSION=$(port 587)
POSTCOVE_PORT_SUBMISSIONS=$(port 465)
POSTCOVE_PORT_IMAP=$(port 143)
POSTCOVE_PORT_IMAPS=$(port 993)
POSTCOVE_PORT_POP3=$(port 110)
POSTCOVE_PORT_POP3S=$(port 995)
POSTCOVE_QUEUE_RETRY_MIN=2s
POSTCOVE_QUEUE_RETRY_MAX=5s
# This machine has no DNS beyond itself, so SPF and DMARC of the test
# sender's domain could only be temperrors (answered 451 by design). The
# verifier has its own end-to-end test against a loopback DNS server
# (services/mta/cmd/mta); here the deployment is under test.
POSTCOVE_VERIFY=false
EOF
profile=()
((have_mta)) && profile=(--profile mta)
compose() { "${compose_cmd[@]}" -p "$project" -f "$repo/docker-compose.yml" --env-file "$work/e2e.env" "${profile[@]}" "$@"; }

# --- teardown: always ---------------------------------------------------------------

mail_delivered=0 # set once mail is in the store: then the volume must keep it
teardown() {
	local rc=$? vol
	trap - EXIT
	trap '' INT TERM # a second Ctrl-C must not leave the stack behind
	set +e
	if ((rc != 0)); then
		echo "--- docker compose ps"
		compose ps
		echo "--- docker compose logs (tail)"
		compose logs --no-color --tail=60
	fi
	if [[ "${E2E_KEEP:-}" == 1 ]]; then
		echo "E2E_KEEP=1: the stack is still up; remove it with:"
		echo "  ${compose_cmd[*]} -p $project -f docker-compose.yml --env-file $work/e2e.env ${profile[*]} down -v"
		exit "$rc"
	fi
	log "teardown: docker compose down (volumes kept)"
	compose down --remove-orphans >/dev/null 2>&1 || { echo "docker compose down failed" >&2; rc=1; }
	if ((mail_delivered)); then
		for vol in db mail; do
			docker volume inspect "${project}_$vol" >/dev/null 2>&1 ||
				{ echo "FAIL: volume ${project}_$vol is gone after docker compose down" >&2; rc=1; }
		done
		# The mail is in the volume, not in the removed containers.
		local n
		n="$(docker run --rm -v "${project}_mail:/mail:ro" debian:bookworm-slim \
			sh -c "find /mail/$domain -type f \\( -path '*/cur/*' -o -path '*/new/*' \\) -exec grep -l 'X-E2E-Token: ' {} + | wc -l")"
		if ((n >= mail_delivered)); then
			echo "the mail volume still holds the $n messages after down (want >= $mail_delivered)"
		else
			echo "FAIL: the mail volume holds $n messages after down, want >= $mail_delivered" >&2
			rc=1
		fi
	fi
	for vol in db mail queue; do
		docker volume rm "${project}_$vol" >/dev/null 2>&1
	done
	if [[ -n "$dockerd_pid" ]]; then
		kill -TERM "$dockerd_pid" 2>/dev/null
		wait "$dockerd_pid" 2>/dev/null
	fi
	rm -rf "$work"
	((${#skipped[@]})) && printf 'skipped (no mta yet): %s\n' "${skipped[@]}"
	if ((rc == 0)); then
		log "PASS (compose: ${compose_cmd[*]})"
	else
		log "FAILED"
	fi
	exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ----------------------------------------------------------------------------

# wait_healthy TIMEOUT: every container of the project up and healthy.
wait_healthy() {
	local deadline=$(($(date +%s) + $1)) ids id state bad
	while :; do
		bad=""
		ids="$(compose ps -q)"
		[[ -n "$ids" ]] || bad="no containers"
		for id in $ids; do
			state="$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}no-healthcheck{{end}}' "$id")"
			[[ "$state" == *" running healthy" ]] || bad+=" $state"
		done
		[[ -z "$bad" ]] && return 0
		(($(date +%s) < deadline)) || fail "not healthy after $1s:$bad"
		sleep 2
	done
}

# first_event CONTAINER_NAME EVENT: the first time (ns) docker reported the
# event ("start", "health_status: healthy") for the container since $since.
first_event() {
	awk -v n="$1" -v e="$2" '{ s = $0; sub(/^[^ ]+ [^ ]+ /, "", s) } $2 == n && s == e { print $1; exit }' "$work/events"
}

# check_order DEPENDENT DEPENDENCY: every container of DEPENDENT started
# after every container of DEPENDENCY first reported healthy.
check_order() {
	local dep_c dependency_c started healthy
	for dep_c in $(container_names "$1"); do
		started="$(first_event "$dep_c" start)"
		[[ -n "$started" ]] || fail "no start event for $dep_c"
		for dependency_c in $(container_names "$2"); do
			healthy="$(first_event "$dependency_c" "health_status: healthy")"
			[[ -n "$healthy" ]] || fail "$dependency_c never reported healthy before $dep_c started"
			((started > healthy)) || fail "$dep_c started at $started, before $dependency_c was healthy at $healthy"
			echo "ok: $dep_c started $(((started - healthy) / 1000000))ms after $dependency_c became healthy"
		done
	done
}

container_names() {
	local id
	for id in $(compose ps -q "$1"); do docker inspect -f '{{slice .Name 1}}' "$id"; done
}

# host_port SERVICE CONTAINER_PORT [INDEX]: the published host port.
host_port() {
	compose port --index="${3:-1}" "$1" "$2" | sed 's/.*://'
}

mailctl() { compose exec -T auth mailctl "$@"; }

# token NAME: a unique Subject/X-E2E-Token value for one message.
token() { echo "$1-$$-$RANDOM$RANDOM"; }

# lmtp_send TOKEN...: swaks speaks LMTP to mailbox:2424 over the compose
# network, from a throwaway container (the role the mta takes once it
# exists; the name resolves to every mailbox replica). Fails unless every
# message got its 250.
lmtp_send() {
	local script="" t
	for t in "$@"; do
		script+="swaks --silent 2 --protocol LMTP --server mailbox:2424 --from e2e@example.net --to $user --header 'Subject: $t' --header 'X-E2E-Token: $t' --body 'token $t' || exit 1;"
	done
	docker run --rm --network "${project}_default" -v "$(command -v swaks):/usr/local/bin/swaks:ro" \
		debian:bookworm-slim sh -c "$script"
}

# smtp_send PORT TOKEN [swaks options]: one message to alice through the
# published SMTP port; fails unless it got its 250.
smtp_send() {
	local port=$1 t=$2
	shift 2
	swaks --silent 2 --server "127.0.0.1:$port" --helo client.example.net --from e2e@example.net --to "$user" \
		--header "Subject: $t" --header "X-E2E-Token: $t" --body "token $t" "$@"
}

curl_tls() {
	curl --silent --show-error --max-time 20 --cacert "$ssl/cert.pem" --user "$user:$password" "$@"
}

# pop3_tokens PORT: every X-E2E-Token in alice's mailbox, read over POP3S
# (LIST, then RETR of each message), one a line. All the URLs go to one
# curl, which reuses its connection: one login, not one per message.
pop3_tokens() {
	local port=$1 n i url="pop3s://$hostname:$1" list urls=()
	list="$(curl_tls --resolve "$hostname:$port:127.0.0.1" "$url/")" || return 1
	n="$(printf '%s\n' "$list" | grep -c '^[0-9]' || true)"
	for ((i = 1; i <= n; i++)); do urls+=("$url/$i"); done
	((n)) || return 0
	curl_tls --resolve "$hostname:$port:127.0.0.1" "${urls[@]}" | tr -d '\r' | sed -n 's/^X-E2E-Token: //p'
}

# imap_tokens PORT: the same over IMAPS: UID SEARCH ALL, then a FETCH of
# each message by UID (curl prints a fetched message, not the literals of
# a custom FETCH command), all in one curl: one login.
imap_tokens() {
	local port=$1 uids uid url="imaps://$hostname:$1/INBOX"
	uids="$(curl_tls --resolve "$hostname:$port:127.0.0.1" "$url" -X 'UID SEARCH ALL' | tr -d '\r' | sed -n 's/^\* SEARCH//p')" || return 1
	local urls=()
	for uid in $uids; do urls+=("$url;UID=$uid"); done
	((${#urls[@]})) || return 0
	curl_tls --resolve "$hostname:$port:127.0.0.1" "${urls[@]}" | tr -d '\r' | sed -n 's/^X-E2E-Token: //p'
}

# await_tokens TIMEOUT TOKEN...: poll POP3S on the first mailbox replica
# until every token is in alice's mailbox.
await_tokens() {
	local deadline=$(($(date +%s) + $1)) have missing t
	shift
	while :; do
		have="$(pop3_tokens "$(host_port mailbox 2995)" 2>/dev/null || true)"
		missing=()
		for t in "$@"; do grep -qx "$t" <<<"$have" || missing+=("$t"); done
		((${#missing[@]} == 0)) && return 0
		(($(date +%s) < deadline)) || fail "after $1s these messages never arrived: ${missing[*]}"
		sleep 1
	done
}

# read_check TOKEN...: the tokens are readable over POP3S and (when the
# mailbox has IMAP) IMAPS, on every mailbox replica's published port.
read_check() {
	local i n have t
	n="$(compose ps -q mailbox | wc -l)"
	for ((i = 1; i <= n; i++)); do
		have="$(pop3_tokens "$(host_port mailbox 2995 "$i")")" || fail "POP3S on mailbox replica $i failed"
		for t in "$@"; do grep -qx "$t" <<<"$have" || fail "POP3S on mailbox replica $i: $t missing"; done
		echo "ok: POP3S (curl, verified certificate) on mailbox replica $i sees ${#@} messages"
		if ((have_imap)); then
			have="$(imap_tokens "$(host_port mailbox 2993 "$i")")" || fail "IMAPS on mailbox replica $i failed"
			for t in "$@"; do grep -qx "$t" <<<"$have" || fail "IMAPS on mailbox replica $i: $t missing"; done
			echo "ok: IMAPS (curl, verified certificate) on mailbox replica $i sees ${#@} messages"
		fi
	done
	mail_delivered=$(($(printf '%s\n' "$@" | sort -u | wc -l)))
}

# --- 1. images and certificates ---------------------------------------------------------

log "base images (scripts/offline-images.sh)"
scripts/offline-images.sh
log "certificates (scripts/gen-certs.sh --dir $ssl)"
scripts/gen-certs.sh --dir "$ssl" --hostname "$hostname"

# --- 2. up, healthy, in order --------------------------------------------------------

log "docker compose up --build -d (project $project, ${compose_cmd[*]}, mta: $( ((have_mta)) && echo yes || echo 'not yet'))"
since="$(date +%s)"
build_start=$(date +%s)
compose build >"$work/build.log" 2>&1 || { tail -40 "$work/build.log"; fail "docker compose build failed"; }
echo "built in $(($(date +%s) - build_start))s"
compose up -d
wait_healthy 240
docker events --since "$since" --until "$(date +%s)" --filter "label=com.docker.compose.project=$project" \
	--filter type=container --format '{{.TimeNano}} {{.Actor.Attributes.name}} {{.Status}}' >"$work/events"
log "start order from docker events"
check_order auth db
check_order mailbox auth
if ((have_mta)); then
	check_order mta auth
	check_order mta mailbox
else
	skip "mta starts after auth and mailbox are healthy"
fi
for s in auth mailbox; do
	v="$(compose exec -T "$s" service version | tr -d '\r')"
	[[ "$v" == "$(sed -n 's/^POSTCOVE_VERSION=//p' "$work/e2e.env")" ]] || fail "$s version is $v, want the stamped git describe"
done
echo "ok: binaries stamped with the version"

# --- 3. a user -------------------------------------------------------------------------

log "mailctl inside the auth container: domain and user"
mailctl domain add "$domain"
printf '%s\n' "$password" | mailctl user add "$user" --password-stdin
printf '%s\n' "$password" | mailctl auth test "$user" --password-stdin

# --- 4. mail in, mail out ---------------------------------------------------------------

log "deliver and read"
round1=()
if ((have_mta)); then
	t="$(token smtp25)"
	smtp_send "$(host_port mta 2525)" "$t"
	round1+=("$t")
	t="$(token sub587)"
	smtp_send "$(host_port mta 2587)" "$t" --tls --tls-verify --tls-ca-path "$ssl/cert.pem" \
		--auth PLAIN --auth-user "$user" --auth-password "$password" --from "$user"
	round1+=("$t")
	echo "ok: swaks to 25 and to 587 (STARTTLS + AUTH) accepted"
else
	skip "swaks to the published 25 and 587"
	t="$(token lmtp)"
	lmtp_send "$t"
	round1+=("$t")
fi
await_tokens 60 "${round1[@]}"
read_check "${round1[@]}"

# --- 5. mailbox down: queued, then delivered -------------------------------------------

if ((have_mta)); then
	log "docker compose stop mailbox; send; start mailbox"
	compose stop mailbox
	t="$(token queued)"
	smtp_send "$(host_port mta 2525)" "$t"
	round1+=("$t")
	compose start mailbox
	wait_healthy 120
	await_tokens 90 "${round1[@]}"
	echo "ok: the message queued while mailbox was stopped arrived"
else
	skip "mailbox stopped: mail queued by the mta, delivered after start"
fi

# --- 6. database restart under load ---------------------------------------------------

log "restart the database while mail flows"
accepted="$work/accepted"
load_messages=30
: >"$accepted"
(
	# Senders keep going through the restart; a refusal (4xx while auth
	# cannot reach the database) is retried, as a real client would; only
	# 250s are recorded, and every one must arrive.
	for i in $(seq 1 "$load_messages"); do
		t="$(token "dbload$i")"
		for _ in $(seq 1 30); do
			if ((have_mta)); then
				smtp_send "$(host_port mta 2525)" "$t" >/dev/null 2>&1 && { echo "$t" >>"$accepted"; break; }
			else
				lmtp_send "$t" >/dev/null 2>&1 && { echo "$t" >>"$accepted"; break; }
			fi
			sleep 1
		done
	done
) &
load_pid=$!
sleep 2
compose restart db
wait "$load_pid" || true
mapfile -t dbload <"$accepted"
((${#dbload[@]} == load_messages)) || fail "only ${#dbload[@]} of $load_messages messages were accepted around the database restart"
wait_healthy 120
await_tokens 90 "${round1[@]}" "${dbload[@]}"
echo "ok: all $load_messages messages accepted during the database restart arrived"
# Logins work again once the database is back.
printf '%s\n' "$password" | mailctl auth test "$user" --password-stdin

# --- 7. scale ----------------------------------------------------------------------

log "scale mailbox=2 auth=2"
scaled_at="$(date +%s)"
compose up -d --no-recreate --scale mailbox=2 --scale auth=2
wait_healthy 180
[[ "$(compose ps -q mailbox | wc -l)" == 2 && "$(compose ps -q auth | wc -l)" == 2 ]] || fail "want 2 mailbox and 2 auth replicas"
for i in 1 2; do
	# Each replica answers for the user: mailctl dials its own replica.
	printf '%s\n' "$password" | compose exec -T --index="$i" auth mailctl auth test "$user" --password-stdin
done
echo "ok: both auth replicas serve (same database)"
# The mta looks lmtp.addrs up again every 5 s (deliver/lmtp resolveTTL):
# give it that long to see the new mailbox replica.
sleep 6
round2=()
if ((have_mta)); then
	for i in $(seq 1 6); do
		t="$(token "scaled$i")"
		smtp_send "$(host_port mta 2525)" "$t"
		round2+=("$t")
	done
else
	for i in $(seq 1 6); do round2+=("$(token "scaled$i")"); done
	lmtp_send "${round2[@]}"
fi
await_tokens 90 "${round1[@]}" "${dbload[@]}" "${round2[@]}"
read_check "${round1[@]}" "${dbload[@]}" "${round2[@]}"
if ((have_mta)); then
	# The mta spreads LMTP over the replicas: each delivered some (the
	# mailbox logs "delivered" for each message it stored).
	spread=() idle=""
	for id in $(compose ps -q mailbox); do
		name="$(docker inspect -f '{{slice .Name 1}}' "$id")"
		n="$(docker logs --since "$scaled_at" "$id" 2>&1 | grep -c '"msg":"delivered"' || true)"
		spread+=("$name: $n")
		((n > 0)) || idle+=" $name"
	done
	[[ -z "$idle" ]] || fail "LMTP not spread over the mailbox replicas (${spread[*]} of ${#round2[@]} messages sent after scaling); idle:$idle"
	echo "ok: the mta spread LMTP over the mailbox replicas (${spread[*]})"
else
	skip "mta spreads LMTP over both mailbox replicas"
fi
log "all steps passed; total $(($(date +%s) - started))s"
