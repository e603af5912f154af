#!/usr/bin/env bash
# make demo: the products example and the redstream worker, together.
# make demo DB=mysql: the same on MariaDB (MYSQL_URL, a mysql:// URL).
# make demo ENGINE=opensearch: the same into OpenSearch (OPENSEARCH_URL, or
# the project's OpenSearch node, started for the demo and stopped after).
#
#   1. ensures PostgreSQL, MariaDB and Redis answer (scripts/services.sh);
#   2. creates a schema (on MySQL, a database) for the demo and its
#      products table;
#   3. builds redstream and the example app;
#   4. runs the app (creates, updates, soft deletes, bulk price changes)
#      and the worker together for DEMO_SECONDS (default 20);
#   5. waits for the index to catch up, prints a few synced documents,
#      `redstream status` and `redstream verify`.
#
# Elasticsearch: ELASTICSEARCH_URL when set (the demo creates and then
# deletes its own index there); otherwise the project's in-memory test
# server (cmd/estest-server), and the output says so. OpenSearch
# (ENGINE=opensearch): OPENSEARCH_URL when set; otherwise the node of
# scripts/opensearch.sh (a running one is used and left running).
#
# Everything the demo creates is removed on exit: background processes, the
# schema, the Redis keys of its namespace, its index. Exits non-zero when a
# step fails or the index does not match the table in the end.
set -euo pipefail

cd "$(dirname "$0")/.."

DURATION=${DEMO_SECONDS:-20}
CATCH_UP_SECONDS=${DEMO_CATCH_UP_SECONDS:-60}
DB=${DB:-postgres}
case $DB in
postgres) BASE_DATABASE_URL=${DATABASE_URL:-postgres://redstream:redstream@127.0.0.1:5432/redstream_test?sslmode=disable} ;;
mysql) BASE_DATABASE_URL=${MYSQL_URL:-mysql://redstream:redstream@127.0.0.1:3306/redstream_test} ;;
*)
	echo "demo: DB=$DB: want postgres or mysql" >&2
	exit 2
	;;
esac
ENGINE=${ENGINE:-elasticsearch}
case $ENGINE in
elasticsearch | opensearch) ;;
*)
	echo "demo: ENGINE=$ENGINE: want elasticsearch or opensearch" >&2
	exit 2
	;;
esac
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
GO=${GO:-go}

say() { printf '\n==> %s\n' "$*"; }
die() {
	printf 'demo: error: %s\n' "$*" >&2
	exit 1
}

sql_client=psql
[[ $DB == mysql ]] && sql_client=mysql
for tool in $sql_client redis-cli curl; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (apt-get install postgresql-client mariadb-client redis-tools curl)"
done

# On MySQL, the parts of BASE_DATABASE_URL (mysql://user:password@host:port/db)
# for the mysql client.
if [[ $DB == mysql ]]; then
	[[ $BASE_DATABASE_URL == mysql://*@*/* ]] || die "MYSQL_URL must be mysql://user:password@host:port/database"
	my_rest=${BASE_DATABASE_URL#mysql://}
	my_cred=${my_rest%%@*}
	my_hostport=${my_rest#*@}
	my_hostport=${my_hostport%%/*}
	my_user=${my_cred%%:*}
	my_pass=
	[[ $my_cred == *:* ]] && my_pass=${my_cred#*:}
	my_host=${my_hostport%%:*}
	my_port=3306
	[[ $my_hostport == *:* ]] && my_port=${my_hostport##*:}
fi
mysql_cli() { MYSQL_PWD=$my_pass mysql --no-defaults -h "$my_host" -P "$my_port" -u "$my_user" "$@"; }

suffix=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
schema=demo_$suffix
namespace=demo-$suffix
index=redstream-demo-$suffix
work=$(mktemp -d)
es_pid=
worker_pid=
schema_created=
es_url=${ELASTICSEARCH_URL:-}
[[ $ENGINE == opensearch ]] && es_url=${OPENSEARCH_URL:-}
es_is_test_server=
node_started=

cleanup() {
	local code=$?
	set +e
	trap - EXIT INT TERM
	say "cleaning up"
	for pid in $worker_pid $es_pid; do
		kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	if [[ -n $schema_created && $DB == mysql ]]; then
		mysql_cli -e "DROP DATABASE IF EXISTS $schema" && echo "dropped database $schema"
	elif [[ -n $schema_created ]]; then
		psql -X -q "$BASE_DATABASE_URL" -c "SET client_min_messages = warning" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null &&
			echo "dropped schema $schema"
	fi
	local keys
	keys=$(redis-cli -u "$REDIS_URL" --scan --pattern "$namespace:*" 2>/dev/null | wc -l)
	redis-cli -u "$REDIS_URL" --scan --pattern "$namespace:*" 2>/dev/null |
		xargs -r -n 100 redis-cli -u "$REDIS_URL" del >/dev/null
	echo "deleted $keys Redis keys of namespace $namespace"
	if [[ -n $es_url && -z $es_is_test_server ]]; then
		curl -fsS -X DELETE "$es_url/$index" >/dev/null 2>&1 && echo "deleted index $index"
	fi
	if [[ -n $node_started ]]; then
		bash scripts/opensearch.sh stop >/dev/null && echo "stopped the OpenSearch node"
	fi
	rm -rf "$work"
	if ((code != 0)); then
		echo "demo: FAILED (exit $code)" >&2
	fi
	exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "services"
bash scripts/services.sh
echo "PostgreSQL, MariaDB and Redis answer; the demo uses $DB"

say "building"
"$GO" build -o "$work/redstream" ./cmd/redstream
"$GO" build -o "$work/products" ./examples/products
echo "built redstream and the products app"
if [[ -z $es_url && $ENGINE == elasticsearch ]]; then
	"$GO" build -o "$work/estest-server" ./cmd/estest-server
	echo "built estest-server"
fi

if [[ $ENGINE == opensearch ]]; then
	say "OpenSearch"
	if [[ -z $es_url ]]; then
		if es_url=$(bash scripts/opensearch.sh status 2>/dev/null | sed -n 's/^OPENSEARCH_URL=//p') && [[ -n $es_url ]]; then
			echo "using the running OpenSearch node at $es_url (left running)"
		else
			echo "OPENSEARCH_URL is not set: starting the project's OpenSearch node (scripts/opensearch.sh)"
			node_started=1
			es_url=$(bash scripts/opensearch.sh start | sed -n 's/^OPENSEARCH_URL=//p' | tail -n 1)
			[[ -n $es_url ]] || die "the OpenSearch node did not start"
		fi
	fi
	curl -fsS "$es_url/" >/dev/null || die "OpenSearch at $es_url does not answer"
	echo "using OpenSearch at $es_url, index $index"
elif [[ -z $es_url ]]; then
	say "Elasticsearch"
	"$work/estest-server" -listen 127.0.0.1:0 -url-file "$work/es-url" >"$work/estest.log" 2>&1 &
	es_pid=$!
	for _ in $(seq 100); do
		[[ -s $work/es-url ]] && break
		sleep 0.1
	done
	[[ -s $work/es-url ]] || die "the Elasticsearch test server did not start: $(cat "$work/estest.log")"
	es_url=$(cat "$work/es-url")
	es_is_test_server=1
	cat <<EOF
ELASTICSEARCH_URL is not set, so this demo uses the project's in-memory
Elasticsearch TEST SERVER (cmd/estest-server, package elastic/estest) at
$es_url. It is NOT a real Elasticsearch: it speaks the Elasticsearch 8 API
the worker uses, from memory. Run "ELASTICSEARCH_URL=http://host:9200 make demo"
to sync into a real cluster.
EOF
else
	say "Elasticsearch"
	curl -fsS "$es_url/" >/dev/null || die "Elasticsearch at $es_url does not answer"
	echo "using Elasticsearch at $es_url (ELASTICSEARCH_URL), index $index"
fi

say "schema"
if [[ $DB == mysql ]]; then
	mysql_cli -e "CREATE DATABASE $schema CHARACTER SET utf8mb4"
	schema_created=1
	database_url="mysql://$my_cred@$my_hostport/$schema"
else
	psql -X -q -v ON_ERROR_STOP=1 "$BASE_DATABASE_URL" -c "CREATE SCHEMA $schema" >/dev/null
	schema_created=1
	sep='?'
	[[ $BASE_DATABASE_URL == *'?'* ]] && sep='&'
	database_url="$BASE_DATABASE_URL${sep}search_path=$schema"
fi
"$work/products" -setup -database "$database_url"
echo "schema $schema, Redis namespace $namespace"

# The example's worker configuration, pointed at the demo's namespace and
# index (the environment supplies the addresses).
sed -e "s|^\(  namespace:\).*|\1 $namespace|" \
	-e "s|^\(    index:\).*|\1 $index|" \
	-e "s|^\(    mapping:\).*|\1 $PWD/examples/products/mapping.json|" \
	-e "s|^\(  listen:\).*|\1 127.0.0.1:0|" \
	examples/products/redstream.yaml >"$work/redstream.yaml"
if [[ $ENGINE == opensearch ]]; then
	# The one line that points the worker at OpenSearch.
	sed -i -e 's|^elasticsearch:$|elasticsearch:\n  engine: opensearch|' "$work/redstream.yaml"
fi
export DATABASE_URL=$database_url REDIS_URL ELASTICSEARCH_URL=$es_url

redstream() { "$work/redstream" "$@" --config "$work/redstream.yaml"; }

say "running the app and the worker for ${DURATION}s"
"$work/redstream" worker --config "$work/redstream.yaml" >"$work/worker.log" 2>&1 &
worker_pid=$!
"$work/products" -duration "${DURATION}s" -database "$database_url" -redis "$REDIS_URL" -namespace "$namespace"
kill -0 "$worker_pid" 2>/dev/null || die "the worker stopped: $(tail -n 20 "$work/worker.log")"

say "waiting for the worker to catch up"
deadline=$((SECONDS + CATCH_UP_SECONDS))
until redstream verify --stream products >/dev/null 2>&1; do
	if ((SECONDS > deadline)); then
		echo "not in sync after ${CATCH_UP_SECONDS}s; worker log:" >&2
		redstream verify --stream products >&2 || true
		tail -n 20 "$work/worker.log" >&2
		break
	fi
	sleep 1
done

say "a few synced documents (the most recent ids)"
# Make the latest writes searchable (GET and _mget see them at once; _search
# and _count after a refresh).
curl -fsS -X POST "$es_url/$index/_refresh" >/dev/null
curl -fsS -H 'Content-Type: application/json' "$es_url/$index/_search" \
	-d '{"size":3,"sort":[{"id":"desc"}],"query":{"match_all":{}}}' >"$work/docs.json"
if command -v jq >/dev/null 2>&1; then
	jq -c '.hits.hits[]._source' "$work/docs.json"
else
	cat "$work/docs.json"
	echo
fi
if [[ $DB == mysql ]]; then
	rows=$(mysql_cli -N -e "SELECT CONCAT(count(*), ' rows, ', count(deleted_at), ' soft-deleted') FROM $schema.products")
else
	rows=$(psql -X -qtA "$BASE_DATABASE_URL" -c "SELECT count(*) || ' rows, ' || count(deleted_at) || ' soft-deleted' FROM $schema.products")
fi
echo "$DB: $rows; $ENGINE: $(curl -fsS "$es_url/$index/_count" | sed 's/.*"count":\([0-9]*\).*/\1/') documents"

say "redstream status"
redstream status

say "redstream verify"
set +e
redstream verify --stream products
verify_code=$?
set -e

say "stopping the worker"
kill -TERM "$worker_pid"
worker_code=0
wait "$worker_pid" || worker_code=$?
worker_pid=
((worker_code == 0)) || die "worker exit code $worker_code after SIGTERM: $(tail -n 20 "$work/worker.log")"
echo "the worker exited cleanly"

if ((verify_code != 0)); then
	die "verify: the index differs from the table (exit $verify_code)"
fi
say "demo OK: the index matches the table"
