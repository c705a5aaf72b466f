#!/usr/bin/env bash
# dovecot-bench.sh WORKDIR PASSWD-FILE [lmtp=PORT] [imap=PORT]
#
# Writes WORKDIR/dovecot.conf: a private, loopback-only dovecot 2.3 (Debian
# 12's dovecot-core, -lmtpd, -imapd) that postcove's benchmarks (`make
# bench`, services/bench) compare postcove with. Then start it in the
# foreground with `dovecot -F -c WORKDIR/dovecot.conf` and stop it by its
# pid.
#
#   WORKDIR      holds everything: base_dir run/, state_dir state/, the log
#                dovecot.log, the mail under mail/<domain>/<user>/Maildir
#                (mail_location, the layout postcove's mailbox uses too).
#                Created if missing; it and its ancestors must be
#                traversable by dovecot's unprivileged processes.
#   PASSWD-FILE  passdb and userdb, dovecot's passwd-file format
#                (user:{SCHEME}password:uid:gid::home::), written by the
#                caller.
#   lmtp=PORT    LMTP on 127.0.0.1:PORT      (needs dovecot-lmtpd)
#   imap=PORT    IMAP on 127.0.0.1:PORT      (needs dovecot-imapd), plaintext
#                LOGIN allowed (there is no TLS: ssl = no)
#
# Without a listener, "protocols = none": only the auth sockets in run/.
# Every message is fsynced before it is acknowledged (mail_fsync = always,
# Debian's default "optimized" would not), as postcove does. Run as root,
# dovecot's processes switch to the userdb's uid (at least 500) and to
# Debian's dovecot/dovenull users; run as anyone else, every process stays
# that user (dovecot's rootless setup,
# https://doc.dovecot.org/2.3/installation_guide/rootless/).
#
# Settings: https://doc.dovecot.org/2.3/settings/core/. Prints nothing;
# exit status 2 on bad arguments.
set -euo pipefail

usage() {
	echo "usage: $0 WORKDIR PASSWD-FILE [lmtp=PORT] [imap=PORT]" >&2
	exit 2
}
(($# >= 2)) || usage
workdir=$1 passwd=$2
shift 2
[[ $workdir == /* && $passwd == /* ]] || { echo "$0: WORKDIR and PASSWD-FILE must be absolute paths" >&2; exit 2; }

# Only root can chroot: the login processes normally chroot into base_dir.
login_chroot=""
(($(id -u) == 0)) || login_chroot="
  chroot ="
protocols=() listeners=""
for arg in "$@"; do
	proto=${arg%%=*} port=${arg#*=}
	[[ $port =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || { echo "$0: bad port in $arg" >&2; exit 2; }
	case $proto in
	lmtp)
		listeners+="
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $port
  }
}"
		;;
	imap)
		# Benchmarks log the same user in from one address many times at
		# once: the per user+IP limit (default 10) would refuse them.
		listeners+="
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    port = 0
  }$login_chroot
}
protocol imap {
  mail_max_userip_connections = 10000
}"
		;;
	*) echo "$0: unknown listener $arg (want lmtp=PORT or imap=PORT)" >&2; exit 2 ;;
	esac
	protocols+=("$proto")
done

mkdir -p "$workdir/run" "$workdir/state" "$workdir/mail"
chmod 0755 "$workdir" "$workdir/mail"

rootless=""
if (($(id -u) != 0)); then
	user=$(id -un) group=$(id -gn) uid=$(id -u)
	# anvil normally chroots into its own directory: only root can.
	rootless="
# Not started as root: every process runs as $user.
default_internal_user = $user
default_internal_group = $group
default_login_user = $user
first_valid_uid = $uid
service anvil {
  chroot =
}"
fi

cat >"$workdir/dovecot.conf" <<EOF
# Written by scripts/dovecot-bench.sh: a private dovecot for postcove's benchmarks.
base_dir = $workdir/run
state_dir = $workdir/state
log_path = $workdir/dovecot.log
protocols = ${protocols[*]:-none}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:$workdir/mail/%d/%n/Maildir
mail_fsync = always
passdb {
  driver = passwd-file
  args = $passwd
}
userdb {
  driver = passwd-file
  args = $passwd
}
$rootless
$listeners
EOF
