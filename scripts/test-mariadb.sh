#!/usr/bin/env bash
# The MariaDB server the tests use: Debian's, started if it is not running,
# with a password user the Go driver can log in as over TCP on loopback.
#
#   scripts/test-mariadb.sh start   start it (idempotent) and create the user
#   scripts/test-mariadb.sh dsn     print the DSN for POSTCOVE_TEST_MYSQL_DSN
set -euo pipefail

USER_NAME=postcove_test
USER_PASS=postcove_test
PORT=3306

case "${1:-}" in
start)
	if ! mysqladmin --protocol=socket ping >/dev/null 2>&1; then
		if command -v service >/dev/null && service mariadb start >/dev/null 2>&1; then
			:
		else
			# No init system (a container): start it by hand.
			install -d -o mysql -g mysql /run/mysqld
			(mysqld_safe >/dev/null 2>&1 &)
		fi
		for _ in $(seq 60); do
			mysqladmin --protocol=socket ping >/dev/null 2>&1 && break
			sleep 0.5
		done
		mysqladmin --protocol=socket ping >/dev/null || { echo "MariaDB did not start" >&2; exit 1; }
	fi
	mysql --protocol=socket -uroot <<SQL
CREATE USER IF NOT EXISTS '${USER_NAME}'@'127.0.0.1' IDENTIFIED BY '${USER_PASS}';
CREATE USER IF NOT EXISTS '${USER_NAME}'@'localhost' IDENTIFIED BY '${USER_PASS}';
GRANT ALL PRIVILEGES ON *.* TO '${USER_NAME}'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO '${USER_NAME}'@'localhost';
SQL
	echo "MariaDB running: $(mysql --protocol=socket -uroot -N -e 'SELECT VERSION()')"
	;;
dsn)
	echo "${USER_NAME}:${USER_PASS}@tcp(127.0.0.1:${PORT})/"
	;;
*)
	echo "usage: $0 start|dsn" >&2
	exit 2
	;;
esac
