#!/usr/bin/env bash
# postfix-bench.sh WORKDIR SMTP-PORT LMTP-PORT DOMAIN RECIPIENTS-FILE
#
# Writes a private, loopback-only postfix 3.7 (Debian 12's postfix) that
# `bench smtp` (services/bench, `make bench`) compares postcove's mta with:
# SMTP in on 127.0.0.1:SMTP-PORT, every recipient of DOMAIN delivered over
# LMTP to 127.0.0.1:LMTP-PORT (a dovecot configured by dovecot-bench.sh).
# Then run its master in the foreground, so the caller owns its pid:
#
#   /usr/lib/postfix/sbin/master -c WORKDIR/etc -d   (stop: SIGTERM to it)
#
# or in the background with `postfix -c WORKDIR/etc start|stop`.
#
#   WORKDIR          holds everything: the configuration etc/ (main.cf,
#                    master.cf, vmailbox), the queue spool/, data/ and the
#                    log maillog. Created if missing.
#   SMTP-PORT        postfix's smtpd on 127.0.0.1 (the port-25 role).
#   LMTP-PORT        where virtual_transport delivers, on 127.0.0.1.
#   DOMAIN           the one virtual mailbox domain.
#   RECIPIENTS-FILE  the mailboxes of DOMAIN, one address a line: the
#                    virtual_mailbox_maps, so an unknown user is refused at
#                    RCPT time (550), as postcove's mta does.
#
# Same shape as postcove: the SMTP client is a stranger (mynetworks empty,
# no AUTH), mail for DOMAIN is accepted, nothing is relayed. Postfix's own
# defaults otherwise (queue manager, 20 LMTP deliveries at once per
# destination, in_flow_delay); every message is fsynced into the queue
# before the 250, as postfix always does. No chroot, no DNS (peer names
# from /etc/hosts, numeric next hops; remote delivery and so bounces to
# remote senders go to the error transport: nothing leaves the machine).
#
# Must run as root: postfix's master starts as root and runs its daemons as
# mail_owner (postfix). Settings: postconf(5). Prints nothing; exit status 2
# on bad arguments, 1 when `postfix check` refuses the result.
set -euo pipefail

usage() {
	echo "usage: $0 WORKDIR SMTP-PORT LMTP-PORT DOMAIN RECIPIENTS-FILE" >&2
	exit 2
}
(($# == 5)) || usage
workdir=$1 smtp_port=$2 lmtp_port=$3 domain=$4 recipients=$5
[[ $workdir == /* && $recipients == /* ]] || { echo "$0: WORKDIR and RECIPIENTS-FILE must be absolute paths" >&2; exit 2; }
for port in "$smtp_port" "$lmtp_port"; do
	if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
		echo "$0: bad port $port" >&2
		exit 2
	fi
done
[[ $domain =~ ^[A-Za-z0-9.-]+$ ]] || { echo "$0: bad domain $domain" >&2; exit 2; }
(($(id -u) == 0)) || { echo "$0: postfix's master must be started as root" >&2; exit 2; }

etc=$workdir/etc
mkdir -p "$etc" "$workdir/spool" "$workdir/data"
chmod 0755 "$workdir" "$etc"
# data_directory belongs to mail_owner (postfix(1) check says so otherwise).
chown postfix "$workdir/data"
chmod 0700 "$workdir/data"

# texthash: read into memory by each daemon at start, no postmap needed
# (dovecot's passwd-file userdb is held in memory the same way).
awk 'NF { print $1 "\tOK" }' "$recipients" >"$etc/vmailbox"
chmod 0644 "$etc/vmailbox"

cat >"$etc/main.cf" <<EOF
# Written by scripts/postfix-bench.sh: a private postfix for postcove's benchmarks.
compatibility_level = 3.6
queue_directory = $workdir/spool
data_directory = $workdir/data
maillog_file = $workdir/maillog
maillog_file_prefixes = $workdir
myhostname = postfix.bench.localhost
mydomain = bench.localhost
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
biff = no
readme_directory = no

# Nothing is local; DOMAIN's users are virtual mailboxes behind LMTP.
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains =
virtual_mailbox_domains = $domain
virtual_mailbox_maps = texthash:$etc/vmailbox
virtual_transport = lmtp:inet:127.0.0.1:$lmtp_port
default_transport = error:remote delivery is off in the benchmark
relay_transport = error:remote delivery is off in the benchmark

# The load generator is a stranger on 127.0.0.1: no trusted networks.
mynetworks =
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions =

# No DNS: peer names are not looked up, next hops are numeric.
smtpd_peername_lookup = no
lmtp_host_lookup = native
smtp_host_lookup = native
smtpd_tls_security_level = none
lmtp_tls_security_level = none

# Limits for one client opening many connections (the benchmark runs up to
# 32 at once from 127.0.0.1); the rate limits stay off, as by default.
smtpd_client_connection_count_limit = 200
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_recipient_limit = 1000
message_size_limit = 52428800
EOF

# Only the services this setup uses; none chrooted (the chroot column is n).
cat >"$etc/master.cf" <<EOF
# Written by scripts/postfix-bench.sh.
# service        type  private unpriv chroot wakeup maxproc command
127.0.0.1:$smtp_port inet n    -      n      -      -       smtpd
cleanup          unix  n       -      n      -      0       cleanup
qmgr             unix  n       -      n      300    1       qmgr
rewrite          unix  -       -      n      -      -       trivial-rewrite
bounce           unix  -       -      n      -      0       bounce
defer            unix  -       -      n      -      0       bounce
trace            unix  -       -      n      -      0       bounce
verify           unix  -       -      n      -      1       verify
flush            unix  n       -      n      1000?  0       flush
proxymap         unix  -       -      n      -      -       proxymap
error            unix  -       -      n      -      -       error
retry            unix  -       -      n      -      -       error
discard          unix  -       -      n      -      -       discard
lmtp             unix  -       -      n      -      -       lmtp
anvil            unix  -       -      n      -      1       anvil
scache           unix  -       -      n      -      1       scache
postlog          unix-dgram n  -      n      -      1       postlogd
EOF

# Creates the queue directories with their owners and checks the result.
# Its complaints go to the maillog (to syslog if stderr is no terminal).
postfix -c "$etc" check || {
	echo "$0: postfix check failed:" >&2
	tail -n 20 "$workdir/maillog" >&2 2>/dev/null || true
	exit 1
}
