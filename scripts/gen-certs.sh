#!/usr/bin/env bash
# One-shot certificate setup for docker compose (run it before the first
# `docker compose up`; run it again to add what is missing, --force to
# start over). Nothing it writes belongs in git: ssl/ is git-ignored.
#
#   scripts/gen-certs.sh [--force] [--dir ssl] [--hostname mail.example.org]
#
# It writes:
#   ssl/internal/ca.pem, ca.key      a private CA for the services' gRPC (mTLS)
#   ssl/internal/SERVICE.pem, .key   for auth, mailbox, mta and mailctl
#   ssl/cert.pem, ssl/key.pem        the certificate IMAP/POP3/SMTP clients
#                                    see: self-signed for $POSTCOVE_HOSTNAME,
#                                    only when ssl/ has none (real ones, e.g.
#                                    from certbot, are left alone)
#
# Every internal certificate carries both serverAuth and clientAuth: a
# service serves with it, dials the others with it, and its `healthcheck`
# subcommand dials its own listener on 127.0.0.1 with it, so the names are
# the compose service name, localhost, 127.0.0.1 and ::1.
#
# The containers run as uid/gid 10001 (deploy/docker/Dockerfile) and mount
# ssl/ read-only, so the keys are made group-readable by gid 10001 — not
# world-readable — when this runs as root; otherwise it says what to run.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=ssl
force=0
hostname="${POSTCOVE_HOSTNAME:-}"
days=825 # the longest validity Apple clients accept for a server cert
while (($#)); do
	case "$1" in
	--force) force=1 ;;
	--dir) dir="$2"; shift ;;
	--hostname) hostname="$2"; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "gen-certs: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
if [[ -z "$hostname" && -f .env ]]; then
	hostname="$(sed -n 's/^POSTCOVE_HOSTNAME=//p' .env | tail -1)"
fi
hostname="${hostname:-localhost}"
command -v openssl >/dev/null || { echo "gen-certs: openssl not found (apt-get install openssl)" >&2; exit 1; }

container_gid=10001
internal="$dir/internal"
mkdir -p "$internal"
chmod 755 "$dir" "$internal"

# give_to_containers makes a key readable by the containers' group only.
give_to_containers() {
	if chgrp "$container_gid" "$1" 2>/dev/null; then
		chmod 640 "$1"
	else
		chmod 600 "$1"
		echo "gen-certs: could not give $1 to gid $container_gid; the containers cannot read it until you run: sudo chgrp $container_gid $1 && sudo chmod 640 $1" >&2
	fi
}

if ((force)); then
	rm -f "$internal"/*.pem "$internal"/*.key "$internal"/*.srl
fi

if [[ ! -f "$internal/ca.pem" || ! -f "$internal/ca.key" ]]; then
	openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -sha256 \
		-subj "/CN=postcove internal CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-keyout "$internal/ca.key" -out "$internal/ca.pem" 2>/dev/null
	chmod 600 "$internal/ca.key" # signs certificates: no container needs it
	chmod 644 "$internal/ca.pem"
	echo "created the internal CA $internal/ca.pem"
fi

# issue NAME: a key and a certificate signed by the internal CA, for the
# compose service NAME (and loopback, for its own healthcheck).
issue() {
	local name=$1 ext
	if [[ -f "$internal/$name.pem" && -f "$internal/$name.key" ]] &&
		openssl verify -CAfile "$internal/ca.pem" "$internal/$name.pem" >/dev/null 2>&1; then
		return
	fi
	ext="$(mktemp)"
	printf '%s\n' \
		"basicConstraints=critical,CA:FALSE" \
		"keyUsage=critical,digitalSignature,keyEncipherment" \
		"extendedKeyUsage=serverAuth,clientAuth" \
		"subjectAltName=DNS:$name,DNS:localhost,IP:127.0.0.1,IP:::1" >"$ext"
	openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" \
		-keyout "$internal/$name.key" -out "$internal/$name.csr" 2>/dev/null
	openssl x509 -req -in "$internal/$name.csr" -CA "$internal/ca.pem" -CAkey "$internal/ca.key" \
		-CAcreateserial -days "$days" -sha256 -extfile "$ext" -out "$internal/$name.pem" 2>/dev/null
	rm -f "$internal/$name.csr" "$ext"
	chmod 644 "$internal/$name.pem"
	give_to_containers "$internal/$name.key"
	echo "created $internal/$name.pem"
}
for name in auth mailbox mta mailctl; do
	issue "$name"
done

if [[ ! -f "$dir/cert.pem" || ! -f "$dir/key.pem" ]]; then
	openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -sha256 -subj "/CN=$hostname" \
		-addext "subjectAltName=DNS:$hostname,DNS:localhost,IP:127.0.0.1" \
		-keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
	chmod 644 "$dir/cert.pem"
	give_to_containers "$dir/key.pem"
	echo "created a self-signed certificate for $hostname in $dir/cert.pem (replace it with a real one)"
elif [[ "$(stat -c '%g %A' "$dir/key.pem")" != "$container_gid -rw-r"* && "$(stat -c '%A' "$dir/key.pem")" != *r?? ]]; then
	# An existing key (make run's, certbot's) the containers could not read.
	echo "gen-certs: letting the containers (gid $container_gid) read $dir/key.pem"
	give_to_containers "$dir/key.pem"
fi
