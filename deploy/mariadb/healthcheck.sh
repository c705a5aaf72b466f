#!/bin/bash
# healthcheck.sh of the offline mariadb:10.11 image (scripts/offline-images.sh),
# answering the same tests as the official image's script, so that
# docker-compose.yml's `healthcheck.sh --connect --innodb_initialized` works
# with either image. Each test given must pass; exit 0 when all do.
#
#   --connect                    a TCP connection works (the initialising
#                                temporary server has no networking, so this
#                                fails until the real server is up)
#   --innodb_initialized         InnoDB is available
#   --innodb_buffer_pool_loaded  the buffer pool dump has been loaded
#   --su-mysql, --datadir=DIR    accepted as in the official script
set -euo pipefail

datadir=/var/lib/mysql
tests=()
for arg in "$@"; do
	case "$arg" in
	--connect | --innodb_initialized | --innodb_buffer_pool_loaded) tests+=("${arg#--}") ;;
	--su-mysql) ;; # already running with the rights we need
	--datadir=*) datadir="${arg#--datadir=}" ;;
	*) echo "healthcheck.sh: unsupported argument $arg" >&2; exit 2 ;;
	esac
done
((${#tests[@]})) || { echo "healthcheck.sh: no test given (--connect, --innodb_initialized, --innodb_buffer_pool_loaded)" >&2; exit 2; }

query() {
	mariadb --defaults-extra-file="$datadir/.my-healthcheck.cnf" --protocol=tcp -h127.0.0.1 \
		--skip-column-names --batch -e "$1"
}

for t in "${tests[@]}"; do
	case "$t" in
	connect)
		query 'SELECT 1' >/dev/null || { echo "healthcheck.sh: cannot connect over TCP" >&2; exit 1; }
		;;
	innodb_initialized)
		[[ "$(query "SELECT 1 FROM information_schema.ENGINES WHERE engine='InnoDB' AND support IN ('YES','DEFAULT','ENABLED')")" == 1 ]] ||
			{ echo "healthcheck.sh: InnoDB is not initialized" >&2; exit 1; }
		;;
	innodb_buffer_pool_loaded)
		[[ "$(query "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='Innodb_buffer_pool_load_status'")" == *"completed at"* ]] ||
			{ echo "healthcheck.sh: the buffer pool is not loaded" >&2; exit 1; }
		;;
	esac
done
