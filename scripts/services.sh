#!/usr/bin/env bash
# Ensures the PostgreSQL and Redis servers used by the tests and the demo are
# answering, and that the test role and database exist:
#
#   Redis          127.0.0.1:6379
#   Redis Cluster  127.0.0.1:30001-30003, three masters (REDIS_CLUSTER_PORTS;
#                  scripts/redis-cluster.sh)
#   Redis Sentinel 127.0.0.1:30126, a sentinel watching the master "redstream"
#                  and its replica on 127.0.0.1:30101-30102, either one the
#                  master (REDIS_SENTINEL_PORT, REDIS_SENTINEL_NODE_PORTS,
#                  REDIS_SENTINEL_MASTER; scripts/redis-sentinel.sh)
#   PostgreSQL     127.0.0.1:5432, role redstream (password redstream),
#                  database redstream_test owned by it
#   MariaDB        127.0.0.1:3306, user redstream (password redstream) with
#                  every privilege (the tests create a database each),
#                  database redstream_test
#
# Missing servers are installed from Debian's packages (when run as root) and
# started. Safe to run any number of times; prints nothing when all is well.
# Never deletes data.
set -euo pipefail

REDIS_HOST=127.0.0.1
REDIS_PORT=6379
PG_HOST=127.0.0.1
PG_PORT=5432
PG_ROLE=redstream
PG_PASSWORD=redstream
PG_DB=redstream_test
WAIT_SECONDS=${SERVICES_WAIT_SECONDS:-60}

log() { printf 'services: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

is_root() { [[ $(id -u) -eq 0 ]]; }

apt_updated=
apt_install() {
	if ! is_root; then
		die "$* not installed; install it as root: apt-get update && apt-get install -y $*"
	fi
	log "installing $*"
	export DEBIAN_FRONTEND=noninteractive
	if [[ -z $apt_updated ]]; then
		apt-get update -qq >/dev/null || die "apt-get update failed"
		apt_updated=1
	fi
	apt-get install -y -qq --no-install-recommends "$@" >/dev/null </dev/null ||
		die "apt-get install $* failed"
}

# wait_for CHECK...: runs CHECK every half second until it succeeds or
# WAIT_SECONDS have passed.
wait_for() {
	local tries=$((WAIT_SECONDS * 2))
	while ((tries-- > 0)); do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.5
	done
	return 1
}

# ---------------------------------------------------------------- Redis

redis_ping() {
	if command -v redis-cli >/dev/null 2>&1; then
		[[ $(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
	else
		# Plain TCP, for machines without redis-cli.
		local reply
		exec 3<>"/dev/tcp/$REDIS_HOST/$REDIS_PORT" || return 1
		printf 'PING\r\n' >&3
		IFS= read -r -t 2 reply <&3 || reply=
		exec 3<&- 3>&-
		[[ $reply == +PONG* ]]
	fi
}

ensure_redis() {
	if redis_ping 2>/dev/null; then
		return 0
	fi
	if ! command -v redis-server >/dev/null 2>&1; then
		apt_install redis-server
	fi
	log "starting redis-server on $REDIS_HOST:$REDIS_PORT"
	mkdir -p /var/lib/redis /var/log/redis
	redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
		--save "" --appendonly no --dir /var/lib/redis \
		--logfile /var/log/redis/ci.log ||
		die "redis-server failed to start; see /var/log/redis/ci.log"
	if ! wait_for redis_ping; then
		tail -n 20 /var/log/redis/ci.log >&2 2>/dev/null || true
		die "Redis is not answering on $REDIS_HOST:$REDIS_PORT after ${WAIT_SECONDS}s"
	fi
}

# -------------------------------------------------------- Redis Cluster

# The local cluster of the Redis Cluster tests; redis-cluster.sh starts and
# forms it when needed and is quiet otherwise.
ensure_redis_cluster() {
	bash "$(dirname "${BASH_SOURCE[0]}")/redis-cluster.sh" start ||
		die "the Redis Cluster is not up; see the messages above"
}

# ------------------------------------------------------- Redis Sentinel

# The master, replica and sentinel of the Sentinel tests;
# redis-sentinel.sh starts them and restores a master with its replica
# when needed, and is quiet otherwise.
ensure_redis_sentinel() {
	bash "$(dirname "${BASH_SOURCE[0]}")/redis-sentinel.sh" start ||
		die "the Redis Sentinel deployment is not up; see the messages above"
}

# ----------------------------------------------------------- PostgreSQL

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }

pg_version() {
	# The newest installed major version.
	ls /etc/postgresql 2>/dev/null | sort -n | tail -n 1
}

ensure_postgres() {
	if command -v pg_isready >/dev/null 2>&1 && pg_ready; then
		return 0
	fi
	if ! command -v pg_ctlcluster >/dev/null 2>&1 ||
		{ [[ -z $(pg_version) ]] && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; }; then
		apt_install postgresql
	fi
	is_root || die "PostgreSQL is not answering on $PG_HOST:$PG_PORT; start it as root: $0"
	local version
	version=$(pg_version)
	if [[ -z $version || ! -d /etc/postgresql/$version/main ]]; then
		version=${version:-$(ls /usr/lib/postgresql | sort -n | tail -n 1)}
		log "creating PostgreSQL $version cluster main"
		pg_createcluster --port "$PG_PORT" "$version" main >/dev/null ||
			die "pg_createcluster $version main failed"
	fi
	if ! pg_ctlcluster "$version" main status >/dev/null 2>&1; then
		log "starting PostgreSQL $version cluster main"
		pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
			die "PostgreSQL $version main failed to start; see /var/log/postgresql/"
	fi
	if ! wait_for pg_ready; then
		die "PostgreSQL is not answering on $PG_HOST:$PG_PORT after ${WAIT_SECONDS}s"
	fi
}

# can_admin: whether this user can run psql as the postgres superuser.
can_admin() {
	is_root || [[ $(id -un) == postgres ]] || sudo -n -u postgres true >/dev/null 2>&1
}

# psql_admin ARGS...: psql as the postgres superuser over the unix socket.
psql_admin() {
	local cmd=(psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres "$@")
	if [[ $(id -un) == postgres ]]; then
		"${cmd[@]}"
	elif is_root; then
		if command -v runuser >/dev/null 2>&1; then
			(cd / && runuser -u postgres -- "${cmd[@]}")
		else
			(cd / && su postgres -c "$(printf '%q ' "${cmd[@]}")")
		fi
	else
		(cd / && sudo -n -u postgres "${cmd[@]}")
	fi
}

ensure_test_database() {
	if ! can_admin; then
		# Without superuser access, settle for the test login working.
		PGPASSWORD=$PG_PASSWORD psql -X -q -h "$PG_HOST" -p "$PG_PORT" -U "$PG_ROLE" -d "$PG_DB" \
			-c 'SELECT 1' >/dev/null 2>&1 ||
			die "cannot log in as $PG_ROLE to $PG_DB and cannot act as user postgres to create them; run $0 as root"
		return 0
	fi
	local out
	out=$(psql_admin -tA 2>&1 <<SQL
DO \$\$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
		CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
		RAISE NOTICE 'created role $PG_ROLE';
	ELSIF EXISTS (SELECT FROM pg_authid WHERE rolname = '$PG_ROLE'
			AND (NOT rolcanlogin OR NOT rolcreatedb OR rolpassword IS NULL)) THEN
		ALTER ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
		RAISE NOTICE 'updated role $PG_ROLE';
	END IF;
END
\$\$;
SELECT 'database-missing' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB');
SELECT 'owner-differs' FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba
	WHERE d.datname = '$PG_DB' AND r.rolname <> '$PG_ROLE';
SQL
	) || die "cannot set up role $PG_ROLE as user postgres: $out"
	case $out in *'created role'*) log "created role $PG_ROLE" ;; esac
	case $out in *'updated role'*) log "set LOGIN, CREATEDB and the password of role $PG_ROLE" ;; esac
	if [[ $out == *database-missing* ]]; then
		log "creating database $PG_DB"
		psql_admin -c "CREATE DATABASE $PG_DB OWNER $PG_ROLE" >/dev/null ||
			die "cannot create database $PG_DB"
	elif [[ $out == *owner-differs* ]]; then
		log "making $PG_ROLE the owner of database $PG_DB"
		psql_admin -c "ALTER DATABASE $PG_DB OWNER TO $PG_ROLE" >/dev/null ||
			die "cannot change the owner of database $PG_DB"
	fi
}

# -------------------------------------------------------------- MariaDB

MYSQL_HOST=127.0.0.1
MYSQL_PORT=${MYSQL_PORT:-3306}
MYSQL_USER=redstream
MYSQL_PASSWORD=redstream
MYSQL_DB=redstream_test

mysql_ping() {
	mysqladmin --no-defaults -h "$MYSQL_HOST" -P "$MYSQL_PORT" -u "$MYSQL_USER" -p"$MYSQL_PASSWORD" \
		--connect-timeout=2 ping
}

# mysql_root_ping: the server answers on its socket (root logs in there
# through unix_socket authentication).
mysql_root_ping() { mysqladmin --connect-timeout=2 ping; }

ensure_mysql() {
	if command -v mysqladmin >/dev/null 2>&1 && mysql_ping >/dev/null 2>&1; then
		return 0
	fi
	if ! command -v mariadbd >/dev/null 2>&1 && ! command -v mysqld >/dev/null 2>&1; then
		apt_install mariadb-server mariadb-client
	fi
	is_root || die "MariaDB is not answering on $MYSQL_HOST:$MYSQL_PORT as $MYSQL_USER; start it and create the user as root: $0"
	if ! mysql_root_ping >/dev/null 2>&1; then
		mkdir -p /run/mysqld /var/log/mysql
		chown mysql:mysql /run/mysqld /var/log/mysql
		if [[ ! -d /var/lib/mysql/mysql ]]; then
			log "initialising the MariaDB data directory"
			mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null ||
				die "mariadb-install-db failed"
		fi
		log "starting MariaDB on $MYSQL_HOST:$MYSQL_PORT"
		# mysqld_safe restarts the server if it dies; it detaches itself.
		(cd / && setsid mysqld_safe --bind-address="$MYSQL_HOST" --port="$MYSQL_PORT" \
			--log-error=/var/log/mysql/error.log </dev/null >/dev/null 2>&1 &)
		if ! wait_for mysql_root_ping; then
			tail -n 20 /var/log/mysql/error.log >&2 2>/dev/null || true
			die "MariaDB is not answering after ${WAIT_SECONDS}s; see /var/log/mysql/error.log"
		fi
	fi
	# The test user may connect from anywhere (127.0.0.1 resolves to
	# localhost, or not, depending on the server's name resolution).
	mysql -e "
		CREATE USER IF NOT EXISTS '$MYSQL_USER'@'localhost' IDENTIFIED BY '$MYSQL_PASSWORD';
		CREATE USER IF NOT EXISTS '$MYSQL_USER'@'%' IDENTIFIED BY '$MYSQL_PASSWORD';
		GRANT ALL PRIVILEGES ON *.* TO '$MYSQL_USER'@'localhost';
		GRANT ALL PRIVILEGES ON *.* TO '$MYSQL_USER'@'%';
		CREATE DATABASE IF NOT EXISTS $MYSQL_DB;" ||
		die "cannot create the MariaDB user $MYSQL_USER"
	mysql_ping >/dev/null 2>&1 || die "MariaDB answers, but not to $MYSQL_USER on $MYSQL_HOST:$MYSQL_PORT"
}

ensure_redis
ensure_redis_cluster
ensure_redis_sentinel
ensure_postgres
ensure_test_database
ensure_mysql
