#!/usr/bin/env bash
# Runs the local Redis Sentinel deployment used by the Sentinel tests: two
# data nodes, a master and its replica, and one sentinel watching them, all
# on 127.0.0.1. The data nodes listen on the ports in
# REDIS_SENTINEL_NODE_PORTS (default "30101 30102"; the first is the master
# of a fresh start), the sentinel on REDIS_SENTINEL_PORT (default 30126);
# the master's name is REDIS_SENTINEL_MASTER (default "redstream"). Nothing
# is persisted: config files and logs live in REDIS_SENTINEL_DIR (default
# /tmp/redstream-redis-sentinel).
#
#   scripts/redis-sentinel.sh [start]   start what is not answering and bring
#                                        the deployment to a sane state: the
#                                        sentinel's master up, every other
#                                        node its replica with the link up,
#                                        the sentinel seeing them so
#   scripts/redis-sentinel.sh status    one line per process; exit 1 unless
#                                        the deployment is in that state
#   scripts/redis-sentinel.sh stop      shut everything down, delete the files
#
# The sentinel has a quorum of 1, declares a node down after 1 s without an
# answer (down-after-milliseconds 1000) and runs on shortened timers
# (SENTINEL DEBUG, below), so a failover, forced (SENTINEL FAILOVER) or not,
# completes in about a second and the demoted master rejoins as a replica
# within a few more. A failover swaps the roles of the nodes: ask the
# sentinel which one is the master (SENTINEL GET-MASTER-ADDR-BY-NAME), never
# assume a port. start keeps the sentinel's current master, whichever node
# that is.
#
# The data nodes accept DEBUG from loopback (enable-debug-command local):
# the tests pause the replica with DEBUG SLEEP.
#
# A missing redis-server is installed from Debian's packages (when run as
# root); its binary is also the sentinel (redis-server --sentinel). start is
# safe to run any number of times and prints nothing when all is well.
set -euo pipefail

HOST=127.0.0.1
read -r -a NODES <<<"${REDIS_SENTINEL_NODE_PORTS:-30101 30102}"
SENTINEL_PORT=${REDIS_SENTINEL_PORT:-30126}
NAME=${REDIS_SENTINEL_MASTER:-redstream}
DIR=${REDIS_SENTINEL_DIR:-/tmp/redstream-redis-sentinel}
WAIT_SECONDS=${SERVICES_WAIT_SECONDS:-60}
SENTINEL_DIR=$DIR/sentinel
SENTINEL_CONF=$SENTINEL_DIR/sentinel.conf

log() { printf 'redis-sentinel: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

is_root() { [[ $(id -u) -eq 0 ]]; }

apt_install() {
	if ! is_root; then
		die "$* not installed; install it as root: apt-get update && apt-get install -y $*"
	fi
	log "installing $*"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null || die "apt-get update failed"
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

cli() {
	local port=$1
	shift
	redis-cli -h "$HOST" -p "$port" "$@" 2>/dev/null | tr -d '\r'
}

up() { [[ $(cli "$1" ping) == PONG ]]; }
down() { ! up "$1"; }

# port_open PORT: whether anything accepts connections on PORT.
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# field PORT SECTION FIELD: a field of INFO SECTION on the server at PORT.
field() { cli "$1" info "$2" | sed -n "s/^$3://p"; }

# sentinel_cmd ARGS...: a SENTINEL subcommand, one reply element a line.
sentinel_cmd() { cli "$SENTINEL_PORT" sentinel "$@"; }

# kv KEY: the value after the line KEY in a flat key/value reply on stdin.
kv() { awk -v k="$1" 'prev == k { print; exit } { prev = $0 }'; }

ensure_tools() {
	if ! command -v redis-server >/dev/null 2>&1; then
		apt_install redis-server
	fi
	if ! command -v redis-cli >/dev/null 2>&1; then
		apt_install redis-tools
	fi
}

# ours PORT: whether the data node at PORT runs in our directory.
ours() { [[ $(cli "$1" config get dir | sed -n 2p) == "$DIR/$1" ]]; }

sentinel_ours() {
	[[ $(field "$SENTINEL_PORT" server redis_mode) == sentinel &&
		$(field "$SENTINEL_PORT" server config_file) == "$SENTINEL_CONF" ]]
}

start_node() {
	local port=$1 dir=$DIR/$1
	if up "$port"; then
		# Some other Redis on our port would make every later step fail
		# in a confusing way: say so now.
		ours "$port" ||
			die "$HOST:$port answers, but is not a node started by $0 (its dir is not $dir); stop it or set REDIS_SENTINEL_NODE_PORTS"
		return 0
	fi
	if port_open "$port"; then
		die "$HOST:$port is taken by something that is not Redis; free it or set REDIS_SENTINEL_NODE_PORTS"
	fi
	mkdir -p "$dir"
	# A config file of its own, written afresh: the sentinel rewrites it
	# (CONFIG REWRITE) when it changes the node's role. The diskless sync
	# without delay lets a demoted master resync from the new one at once.
	cat >"$dir/redis.conf" <<EOF
bind $HOST
port $port
daemonize yes
dir $dir
pidfile $dir/redis.pid
logfile $dir/redis.log
save ""
appendonly no
enable-debug-command local
repl-diskless-sync yes
repl-diskless-sync-delay 0
EOF
	log "starting a data node on $HOST:$port"
	redis-server "$dir/redis.conf" ||
		die "redis-server failed to start on port $port; see $dir/redis.log"
	if ! wait_for up "$port"; then
		tail -n 20 "$dir/redis.log" >&2 2>/dev/null || true
		die "the node on $HOST:$port is not answering after ${WAIT_SECONDS}s; see $dir/redis.log"
	fi
}

is_node() {
	local p
	for p in "${NODES[@]}"; do
		[[ $p == "$1" ]] && return 0
	done
	return 1
}

# sentinel_master: the port of the master the sentinel names, "" if none.
sentinel_master() {
	local reply
	reply=$(sentinel_cmd get-master-addr-by-name "$NAME")
	[[ $(sed -n 1p <<<"$reply") == "$HOST" ]] || return 0
	sed -n 2p <<<"$reply"
}

# sentinel_flags: the flags of the master in the sentinel's view.
sentinel_flags() { sentinel_cmd master "$NAME" | kv flags; }

settled() { [[ $(sentinel_flags) == master ]]; }

# choose_master: the node to make the master when no sentinel says which:
# the master some replica follows, else the first node that is a master.
choose_master() {
	local p m
	for p in "${NODES[@]}"; do
		if [[ $(field "$p" replication role) == slave ]]; then
			m=$(field "$p" replication master_port)
			if is_node "$m" && [[ $(field "$m" replication role) == master ]]; then
				echo "$m"
				return
			fi
		fi
	done
	for p in "${NODES[@]}"; do
		if [[ $(field "$p" replication role) == master ]]; then
			echo "$p"
			return
		fi
	done
	echo "${NODES[0]}"
}

# follows PORT MASTER: whether the node at PORT is a replica of MASTER.
follows() {
	[[ $(field "$1" replication role) == slave &&
		$(field "$1" replication master_host) == "$HOST" &&
		$(field "$1" replication master_port) == "$2" ]]
}

link_up() { follows "$1" "$2" && [[ $(field "$1" replication master_link_status) == up ]]; }

# sentinel_sees REPLICA MASTER: the sentinel lists REPLICA as a healthy
# replica of MASTER, so that it could promote it.
sentinel_sees() {
	local reply
	reply=$(sentinel_cmd replicas "$NAME" | awk -v p="$1" '
		/^name$/ { getline; take = ($0 == "'"$HOST"':" p) }
		take { print }')
	[[ -n $reply &&
		$(kv flags <<<"$reply") == slave &&
		$(kv master-link-status <<<"$reply") == ok &&
		$(kv master-port <<<"$reply") == "$2" ]]
}

# healthy: the sentinel's master is a node of ours with no failover under
# way, and every other node is its replica, linked, and seen so by the
# sentinel.
healthy() {
	local m p
	m=$(sentinel_master)
	[[ -n $m ]] && is_node "$m" && settled || return 1
	[[ $(field "$m" replication role) == master ]] || return 1
	for p in "${NODES[@]}"; do
		[[ $p == "$m" ]] && continue
		link_up "$p" "$m" && sentinel_sees "$p" "$m" || return 1
	done
}

start_sentinel() {
	local master=$1
	mkdir -p "$SENTINEL_DIR"
	# Written afresh: a sentinel that is not running may remember a
	# master and replicas that are no longer so.
	cat >"$SENTINEL_CONF" <<EOF
bind $HOST
port $SENTINEL_PORT
daemonize yes
dir $SENTINEL_DIR
pidfile $SENTINEL_DIR/sentinel.pid
logfile $SENTINEL_DIR/sentinel.log
sentinel monitor $NAME $HOST $master 1
sentinel down-after-milliseconds $NAME 1000
sentinel failover-timeout $NAME 5000
sentinel parallel-syncs $NAME 1
EOF
	log "starting a sentinel on $HOST:$SENTINEL_PORT watching $NAME at $HOST:$master"
	redis-server "$SENTINEL_CONF" --sentinel ||
		die "the sentinel failed to start on port $SENTINEL_PORT; see $SENTINEL_DIR/sentinel.log"
	if ! wait_for up "$SENTINEL_PORT"; then
		tail -n 20 "$SENTINEL_DIR/sentinel.log" >&2 2>/dev/null || true
		die "the sentinel on $HOST:$SENTINEL_PORT is not answering after ${WAIT_SECONDS}s"
	fi
}

start() {
	((${#NODES[@]} >= 2)) || die "REDIS_SENTINEL_NODE_PORTS must list at least 2 ports (a master and a replica), not '${NODES[*]}'"
	ensure_tools
	if healthy 2>/dev/null && sentinel_ours; then
		return 0
	fi
	local p master=
	for p in "${NODES[@]}"; do
		start_node "$p"
	done
	if up "$SENTINEL_PORT"; then
		sentinel_ours ||
			die "$HOST:$SENTINEL_PORT answers, but is not the sentinel started by $0 (its config is not $SENTINEL_CONF); stop it or set REDIS_SENTINEL_PORT"
		# A failover under way (a test stopped in the middle of one)
		# ends within failover-timeout; then the sentinel's master is
		# the one to keep.
		wait_for settled || die "the sentinel still reports a failover after ${WAIT_SECONDS}s (flags: $(sentinel_flags))"
		master=$(sentinel_master)
		is_node "$master" ||
			die "the sentinel's master $NAME is '$master', not one of ${NODES[*]}; start over with: $0 stop && $0 start"
	else
		if port_open "$SENTINEL_PORT"; then
			die "$HOST:$SENTINEL_PORT is taken by something that is not Redis; free it or set REDIS_SENTINEL_PORT"
		fi
		master=$(choose_master)
	fi
	if [[ $(field "$master" replication role) != master ]]; then
		log "making $HOST:$master a master"
		cli "$master" replicaof no one >/dev/null
	fi
	for p in "${NODES[@]}"; do
		[[ $p == "$master" ]] && continue
		if ! follows "$p" "$master"; then
			log "making $HOST:$p a replica of $HOST:$master"
			cli "$p" replicaof "$HOST" "$master" >/dev/null
		fi
	done
	if ! up "$SENTINEL_PORT"; then
		start_sentinel "$master"
	fi
	# Shorter timers than the defaults, which suit a production
	# deployment but would make each failover of the tests take 10 s:
	# INFO every 500 ms (replicas are seen sooner), and a demoted master
	# reconfigured 4 publish periods (2 s) after the switch. The TILT
	# trigger is raised so that a sentinel starved of CPU by a parallel
	# test run does not stop acting for 30 s. Not kept across restarts:
	# set on every start.
	sentinel_cmd debug info-period 500 publish-period 500 tilt-trigger 30000 >/dev/null ||
		die "SENTINEL DEBUG failed on $HOST:$SENTINEL_PORT"
	if ! wait_for healthy; then
		status >&2 || true
		die "the deployment is not healthy after ${WAIT_SECONDS}s; logs are in $DIR/*/*.log"
	fi
}

status() {
	local p rc=0 m role
	m=$(sentinel_master 2>/dev/null || true)
	if up "$SENTINEL_PORT"; then
		printf '%s:%s  sentinel  master %s at %s:%s  flags:%s\n' "$HOST" "$SENTINEL_PORT" "$NAME" "$HOST" "${m:-?}" "$(sentinel_flags)"
	else
		printf '%s:%s  sentinel  not answering\n' "$HOST" "$SENTINEL_PORT"
		rc=1
	fi
	for p in "${NODES[@]}"; do
		if ! up "$p"; then
			printf '%s:%s  not answering\n' "$HOST" "$p"
			rc=1
			continue
		fi
		role=$(field "$p" replication role)
		if [[ $role == slave ]]; then
			printf '%s:%s  replica of %s:%s  link:%s\n' "$HOST" "$p" "$(field "$p" replication master_host)" \
				"$(field "$p" replication master_port)" "$(field "$p" replication master_link_status)"
		else
			printf '%s:%s  %s  replicas:%s\n' "$HOST" "$p" "$role" "$(field "$p" replication connected_slaves)"
		fi
	done
	healthy >/dev/null 2>&1 || rc=1
	return "$rc"
}

# shutdown PORT: shut down the server at PORT, if up, and wait until it is.
shutdown() {
	if up "$1"; then
		cli "$1" shutdown nosave >/dev/null || true
		wait_for down "$1" || die "the server on $HOST:$1 did not shut down"
	fi
}

stop() {
	local p
	# Only what this script started: a sentinel with our config file,
	# nodes whose working directory is ours.
	if up "$SENTINEL_PORT"; then
		sentinel_ours || die "$HOST:$SENTINEL_PORT is not the sentinel started by $0; leaving it alone"
		shutdown "$SENTINEL_PORT"
	fi
	for p in "${NODES[@]}"; do
		if up "$p"; then
			ours "$p" || die "$HOST:$p is not a node started by $0 (its dir is not $DIR/$p); leaving it alone"
			shutdown "$p"
		fi
	done
	rm -rf "$SENTINEL_DIR"
	for p in "${NODES[@]}"; do
		rm -rf "${DIR:?}/$p"
	done
	rmdir "$DIR" 2>/dev/null || true
}

case ${1:-start} in
start) start ;;
stop) stop ;;
status) status ;;
*)
	echo "usage: $0 [start|stop|status]" >&2
	exit 2
	;;
esac
