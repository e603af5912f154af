#!/usr/bin/env bash
# The OpenSearch node of the tests: one OpenSearch 2.19.6 node on 127.0.0.1,
# run by the launcher in opensearch/ (single-node discovery, no security
# plugin, plain HTTP, -Xmx1g, a fresh home directory each start).
#
#   scripts/opensearch.sh start   builds the launcher with Maven if needed,
#                                 starts the node unless it is up, waits
#                                 until it answers, and prints
#                                 OPENSEARCH_URL=http://127.0.0.1:PORT last
#   scripts/opensearch.sh stop    stops the node and removes its home
#   scripts/opensearch.sh status  prints the URL of a running node, or fails
#   scripts/opensearch.sh run CMD...
#                                 runs CMD with OPENSEARCH_URL set, starting
#                                 the node first if it is not up and stopping
#                                 it afterwards if this run started it; exits
#                                 with CMD's status (make test uses this)
#
# Environment: OPENSEARCH_DIR (state: pid, url, node.log, home; default
# ${TMPDIR:-/tmp}/redstream-opensearch-N, N a checksum of the checkout's
# path), OPENSEARCH_PORT (HTTP port; default
# a free one, read from the node's ports file), OPENSEARCH_HEAP (default 1g),
# OPENSEARCH_JAVA_OPTS (more JVM options), OPENSEARCH_WAIT_SECONDS (default
# 300).
#
# A missing java or mvn is installed from Debian's packages
# (default-jdk-headless, maven) when run as root; otherwise the script fails
# and says what to install.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROJECT=$ROOT/opensearch
# One node per checkout: make test in one checkout never stops the node
# that a run in another one is using.
STATE=${OPENSEARCH_DIR:-${TMPDIR:-/tmp}/redstream-opensearch-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)}
PORT=${OPENSEARCH_PORT:-0}
HEAP=${OPENSEARCH_HEAP:-1g}
# C1 only and the serial collector: the node starts sooner and a test run
# is short. Set OPENSEARCH_JAVA_OPTS= (empty) for the JVM's defaults.
JAVA_OPTS=${OPENSEARCH_JAVA_OPTS--XX:+UseSerialGC -XX:TieredStopAtLevel=1}
WAIT_SECONDS=${OPENSEARCH_WAIT_SECONDS:-300}
MAIN=fixture.OpenSearchNode

log() { printf 'opensearch: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# need_tools: java (17 or newer) and, to build, javac and mvn.
need_tools() {
	local missing=()
	command -v java >/dev/null 2>&1 && command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
	command -v mvn >/dev/null 2>&1 || missing+=(maven)
	if ((${#missing[@]})); then
		is_root || die "java 17+ and maven are needed; install them as root: apt-get update && apt-get install -y ${missing[*]}"
		log "installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >/dev/null || die "apt-get update failed"
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null </dev/null ||
			die "apt-get install ${missing[*]} failed"
	fi
	local v
	v=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
	[[ ${v%%.*} -ge 17 ]] 2>/dev/null || die "java is version ${v:-unknown}; OpenSearch 2.19 needs 17 or newer"
}

# build: mvn package when the launcher's classes or jars are missing or
# older than its sources.
build() {
	local stamp=$PROJECT/target/.built
	if [[ -f $stamp && -z $(find "$PROJECT/pom.xml" "$PROJECT/src" -newer "$stamp" -print -quit) ]]; then
		return 0
	fi
	log "building the launcher (mvn package in opensearch/)"
	mvn -B -q -f "$PROJECT/pom.xml" package >"$STATE/build.log" 2>&1 </dev/null || {
		tail -n 40 "$STATE/build.log" >&2
		die "mvn package failed; the whole output is in $STATE/build.log"
	}
	touch "$stamp"
}

# pid: the pid of the running node, if any (checked against its command line,
# so a reused pid is not taken for the node).
pid() {
	local p
	p=$(cat "$STATE/pid" 2>/dev/null) || return 1
	[[ -n $p ]] && tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -q " $MAIN " || return 1
	echo "$p"
}

# http_status URL: the status code of a GET, through bash's /dev/tcp.
http_status() {
	local hostport=${1#http://} path=/${1#http://*/} line
	hostport=${hostport%%/*}
	exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&3
	IFS= read -r -t 60 line <&3 || line=
	exec 3<&- 3>&-
	line=${line#HTTP/* }
	echo "${line%% *}"
}

# wait_ready PID: waits for the ports file, then for cluster health yellow.
wait_ready() {
	local p=$1 deadline=$((SECONDS + WAIT_SECONDS)) ports=$STATE/home/logs/http.ports addr=
	while ((SECONDS < deadline)); do
		kill -0 "$p" 2>/dev/null || {
			tail -n 40 "$STATE/node.log" >&2
			die "the node exited while starting; its log is $STATE/node.log"
		}
		if [[ -z $addr && -s $ports ]]; then
			addr=$(head -n 1 "$ports")
		fi
		if [[ -n $addr && $(http_status "http://$addr/_cluster/health?wait_for_status=yellow&timeout=1s" 2>/dev/null) == 200 ]]; then
			echo "http://$addr" >"$STATE/url"
			return 0
		fi
		sleep 0.5
	done
	tail -n 40 "$STATE/node.log" >&2
	die "the node did not answer within ${WAIT_SECONDS}s; its log is $STATE/node.log"
}

start() {
	mkdir -p "$STATE"
	local p
	if p=$(pid); then
		if [[ ! -s $STATE/url ]]; then
			wait_ready "$p"
		fi
		echo "OPENSEARCH_URL=$(cat "$STATE/url")"
		return 0
	fi
	need_tools
	build
	rm -rf "$STATE/home" "$STATE/url" "$STATE/pid"
	local t0=$SECONDS
	log "starting OpenSearch 2.19.6 (log: $STATE/node.log)"
	# setsid: the node outlives this script and make, in a session of its own.
	# shellcheck disable=SC2086 # JAVA_OPTS is a list of options
	setsid java -Xms"$HEAP" -Xmx"$HEAP" $JAVA_OPTS \
		-cp "$PROJECT/target/classes:$PROJECT/target/lib/*" "$MAIN" "$STATE/home" "$PORT" \
		>"$STATE/node.log" 2>&1 </dev/null &
	echo $! >"$STATE/pid"
	wait_ready $!
	log "up in $((SECONDS - t0))s"
	echo "OPENSEARCH_URL=$(cat "$STATE/url")"
}

stop() {
	local p
	if p=$(pid); then
		kill -TERM "$p"
		local deadline=$((SECONDS + 60))
		while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do
			sleep 0.2
		done
		if kill -0 "$p" 2>/dev/null; then
			log "the node did not stop within 60s; killing it"
			kill -KILL "$p" 2>/dev/null || true
		fi
	fi
	rm -rf "$STATE/home" "$STATE/url" "$STATE/pid"
}

status() {
	pid >/dev/null && [[ -s $STATE/url ]] || {
		log "not running"
		return 1
	}
	echo "OPENSEARCH_URL=$(cat "$STATE/url")"
}

run() {
	(($#)) || die "run: no command given"
	local started= out rc=0
	pid >/dev/null || started=1
	out=$(start) || exit 1
	export OPENSEARCH_URL=${out##*OPENSEARCH_URL=}
	log "running $1 with OPENSEARCH_URL=$OPENSEARCH_URL"
	if [[ -n $started ]]; then
		trap stop EXIT
		trap 'exit 130' INT
		trap 'exit 143' TERM
	fi
	"$@" || rc=$?
	return "$rc"
}

case ${1:-start} in
start) start ;;
stop) stop ;;
status) status ;;
run)
	shift
	run "$@"
	;;
*) die "unknown command ${1}; use start, stop, status or run CMD..." ;;
esac
