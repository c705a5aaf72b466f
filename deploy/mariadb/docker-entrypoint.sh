#!/bin/bash
# Entrypoint of the offline mariadb:10.11 image that scripts/offline-images.sh
# builds from Debian's mariadb-server, for machines that cannot pull the
# official image. It honours the part of the official image's environment
# contract that postcove's docker-compose.yml uses:
#
#   MARIADB_DATABASE                 created on first start
#   MARIADB_USER, MARIADB_PASSWORD   created on first start, ALL on that database
#   MARIADB_ROOT_PASSWORD            root's password, or
#   MARIADB_RANDOM_ROOT_PASSWORD     a random one, printed once in the log, or
#   MARIADB_ALLOW_EMPTY_ROOT_PASSWORD
#   (the MYSQL_* spellings are accepted too, as the official image does)
#   /docker-entrypoint-initdb.d/*.sql, *.sh   run once after the first start
#
# The first start initialises /var/lib/mysql; later starts find it and only
# run the server, as the mysql user, listening on 0.0.0.0:3306. A
# "healthcheck" account with a random password (in
# /var/lib/mysql/.my-healthcheck.cnf) serves healthcheck.sh, as in the
# official image.
set -euo pipefail

datadir=/var/lib/mysql
socket=/run/mysqld/mysqld.sock

log() { printf '%s [Entrypoint]: %s\n' "$(date --rfc-3339=seconds)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# setting NAME: MARIADB_NAME, else MYSQL_NAME, else empty.
setting() {
	local m="MARIADB_$1" y="MYSQL_$1"
	printf '%s' "${!m:-${!y:-}}"
}

# sql_string quotes a value for a single-quoted SQL string literal.
sql_string() {
	local s=${1//\\/\\\\}
	printf "'%s'" "${s//\'/\\\'}"
}

# sql_ident quotes a name for a backquoted SQL identifier.
# shellcheck disable=SC2016 # literal backquotes
sql_ident() { printf '`%s`' "${1//\`/\`\`}"; }

if [[ "${1:-}" == -* ]]; then
	set -- mariadbd "$@"
fi
if [[ "${1:-}" != mariadbd && "${1:-}" != mysqld ]]; then
	exec "$@"
fi

# Run as mysql: fix ownership as root first (a fresh named volume is root's).
if [[ $(id -u) == 0 ]]; then
	mkdir -p "$datadir" /run/mysqld
	chown -R mysql:mysql "$datadir" /run/mysqld
	exec setpriv --reuid=mysql --regid=mysql --init-groups "$0" "$@"
fi

# first_start initialises the data directory and applies the environment:
# a temporary server without networking, so nobody (and no healthcheck)
# sees a half-made database.
first_start() {
	local db user pass root_pass
	db="$(setting DATABASE)"
	user="$(setting USER)"
	pass="$(setting PASSWORD)"
	root_pass="$(setting ROOT_PASSWORD)"
	if [[ -z "$root_pass" && -z "$(setting RANDOM_ROOT_PASSWORD)" && -z "$(setting ALLOW_EMPTY_ROOT_PASSWORD)" ]]; then
		die "database is uninitialized and the root password is not set: set one of MARIADB_ROOT_PASSWORD, MARIADB_ALLOW_EMPTY_ROOT_PASSWORD or MARIADB_RANDOM_ROOT_PASSWORD"
	fi
	if [[ -n "$user" && -z "$pass" ]]; then
		die "MARIADB_USER is set but MARIADB_PASSWORD is not"
	fi
	if [[ -z "$root_pass" && -n "$(setting RANDOM_ROOT_PASSWORD)" ]]; then
		root_pass="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
		log "GENERATED ROOT PASSWORD: $root_pass"
	fi

	log "initializing $datadir"
	mariadb-install-db --datadir="$datadir" --auth-root-authentication-method=normal \
		--skip-test-db --skip-name-resolve >/dev/null

	log "starting a temporary server"
	"$@" --skip-networking --socket="$socket" &
	local pid=$!
	local i
	for ((i = 0; i < 60; i++)); do
		mariadb --protocol=socket --socket="$socket" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
		kill -0 "$pid" 2>/dev/null || die "the temporary server exited"
		sleep 1
	done
	((i < 60)) || die "the temporary server did not answer within 60s"

	local hc_pass sql
	hc_pass="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
	sql="SET @@SESSION.SQL_LOG_BIN=0;
DELETE FROM mysql.user WHERE user='' OR (user='root' AND host NOT IN ('localhost'));
CREATE USER 'root'@'%' IDENTIFIED BY $(sql_string "$root_pass");
GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;
ALTER USER 'root'@'localhost' IDENTIFIED BY $(sql_string "$root_pass");
CREATE USER 'healthcheck'@'127.0.0.1' IDENTIFIED BY $(sql_string "$hc_pass");
CREATE USER 'healthcheck'@'::1' IDENTIFIED BY $(sql_string "$hc_pass");
CREATE USER 'healthcheck'@'localhost' IDENTIFIED BY $(sql_string "$hc_pass");
GRANT USAGE ON *.* TO 'healthcheck'@'127.0.0.1', 'healthcheck'@'::1', 'healthcheck'@'localhost';"
	if [[ -n "$db" ]]; then
		sql+="
CREATE DATABASE IF NOT EXISTS $(sql_ident "$db");"
	fi
	if [[ -n "$user" ]]; then
		sql+="
CREATE USER $(sql_string "$user")@'%' IDENTIFIED BY $(sql_string "$pass");"
		[[ -n "$db" ]] && sql+="
GRANT ALL ON $(sql_ident "$db").* TO $(sql_string "$user")@'%';"
	fi
	mariadb --protocol=socket --socket="$socket" -uroot <<<"$sql"
	printf '[mariadb-client]\nport=3306\nsocket=%s\nuser=healthcheck\npassword=%s\n' "$socket" "$hc_pass" \
		>"$datadir/.my-healthcheck.cnf"
	chmod 600 "$datadir/.my-healthcheck.cnf"

	local f
	for f in /docker-entrypoint-initdb.d/*; do
		# shellcheck disable=SC1090 # the operator's init scripts
		case "$f" in
		*.sql) log "running $f"; mariadb --protocol=socket --socket="$socket" -uroot -p"$root_pass" ${db:+"$db"} <"$f" ;;
		*.sh) log "running $f"; . "$f" ;;
		*) ;;
		esac
	done

	log "stopping the temporary server"
	kill -TERM "$pid"
	wait "$pid" || die "the temporary server did not stop cleanly"
	log "initialization done"
}

# mariadb-install-db makes mysql/ first: its presence means a first start
# happened (finished, unless .my-healthcheck.cnf is missing).
if [[ ! -d "$datadir/mysql" ]]; then
	first_start "$@"
elif [[ ! -f "$datadir/.my-healthcheck.cnf" ]]; then
	log "warning: $datadir holds a database but no .my-healthcheck.cnf (an interrupted first start, or made by another image): healthcheck.sh will fail"
fi

log "starting $*"
exec "$@" --bind-address=0.0.0.0 --port=3306 --socket="$socket" --skip-name-resolve
