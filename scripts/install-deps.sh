#!/usr/bin/env bash
# Installs the Debian packages the build and the tests use. Idempotent:
# apt-get runs only when something is missing. Needs root (or sudo).
set -euo pipefail

packages=(
	make git ca-certificates
	gcc libc6-dev libsodium-dev  # auth's argon2 through libsodium (cgo; the Makefile's GOTAGS)
	protobuf-compiler        # make gen / check-gen (protoc 3.21.12 on Debian 12)
	mariadb-server mariadb-client  # the auth store suite runs against real MariaDB
	dovecot-core             # doveadm pw: password-hash test vectors
	dovecot-lmtpd            # bench lmtp: dovecot's LMTP server to compare with
	dovecot-imapd            # bench imap: dovecot's IMAP server to compare with
	isync                    # mbsync: a real IMAP client for the imapd tests
	fail2ban                 # fail2ban-regex checks the shipped filter
	fetchmail curl python3   # real POP3 clients for the pop3d tests (curl pop3://, poplib)
	openssl                  # make run: a self-signed certificate in ssl/
	swaks                    # a real SMTP/LMTP client for the lmtpd, smtpd and e2e tests
	libio-socket-ssl-perl libnet-ssleay-perl  # swaks's STARTTLS and --tls-on-connect (only Recommends, so not pulled in above)
	docker.io docker-compose # make e2e-compose: the real compose stack (CI runs it)
	debootstrap              # scripts/offline-images.sh: base images without a registry
	postfix                  # bench smtp: postfix 3.7 (+ dovecot LMTP) to compare the mta with; never run as a system MTA (see below)
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
	echo "all packages present"
	exit 0
fi
echo "installing: ${missing[*]}"
sudo=""
[[ $(id -u) == 0 ]] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
# postfix asks debconf what kind of mail server this is. "No configuration"
# writes no /etc/postfix/main.cf, so the system postfix has nothing to
# serve; bench smtp runs its own instance from a private config directory
# (scripts/postfix-bench.sh).
echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
# A system postfix listening on port 25 would conflict with whatever runs
# here: while postfix is installed, policy-rc.d (Debian's policy layer,
# consulted by invoke-rc.d and deb-systemd-invoke) refuses to start
# services, unless the machine already has its own (Docker images do).
policy=/usr/sbin/policy-rc.d
if [[ " ${missing[*]} " == *" postfix "* && ! -e $policy ]]; then
	printf '#!/bin/sh\n# Written by postcove scripts/install-deps.sh while it installs postfix.\nexit 101\n' | $sudo tee "$policy" >/dev/null
	$sudo chmod 0755 "$policy"
	trap '$sudo rm -f "$policy"' EXIT
fi
$sudo apt-get update -qq
# Debian's maintainer scripts try to start services; that is harmless here
# (the test scripts start what they need themselves), postfix aside (above).
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
