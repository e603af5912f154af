#!/usr/bin/env bash
# Runs the local Redis Cluster used by the cluster tests: three masters, no
# replicas, on 127.0.0.1 at the ports in REDIS_CLUSTER_PORTS (default
# "30001 30002 30003"; each node's cluster bus is its port + 10000).
# Nothing is persisted: node files and logs live in REDIS_CLUSTER_DIR
# (default /tmp/redstream-redis-cluster).
#
#   scripts/redis-cluster.sh [start]   start the nodes that are not answering,
#                                       form the cluster if it is not formed,
#                                       wait until every node is cluster_state:ok
#   scripts/redis-cluster.sh status    one line per node; exit 1 unless all are ok
#   scripts/redis-cluster.sh stop      shut the nodes down and delete their files
#
# A missing redis-server is installed from Debian's packages (when run as
# root). start is safe to run any number of times and prints nothing when
# the cluster is already up.
set -euo pipefail

HOST=127.0.0.1
read -r -a PORTS <<<"${REDIS_CLUSTER_PORTS:-30001 30002 30003}"
DIR=${REDIS_CLUSTER_DIR:-/tmp/redstream-redis-cluster}
WAIT_SECONDS=${SERVICES_WAIT_SECONDS:-60}
SLOTS=16384

log() { printf 'redis-cluster: %s\n' "$*" >&2; }
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
	redis-cli -h "$HOST" -p "$port" "$@"
}

node_up() { [[ $(cli "$1" ping 2>/dev/null) == PONG ]]; }
node_down() { ! node_up "$1"; }

# port_open PORT: whether anything accepts connections on PORT.
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# info PORT FIELD: a field of CLUSTER INFO on the node at PORT.
info() {
	cli "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

node_ok() { [[ $(info "$1" cluster_state) == ok ]]; }

all_ok() {
	local port
	for port in "${PORTS[@]}"; do
		node_ok "$port" || return 1
	done
}

# formed: every node knows all the others and sees every slot assigned.
formed() {
	local port
	for port in "${PORTS[@]}"; do
		[[ $(info "$port" cluster_known_nodes) == "${#PORTS[@]}" &&
			$(info "$port" cluster_slots_assigned) == "$SLOTS" ]] || return 1
	done
}

# fresh: no node knows another one or has a slot.
fresh() {
	local port
	for port in "${PORTS[@]}"; do
		[[ $(info "$port" cluster_known_nodes) == 1 &&
			$(info "$port" cluster_slots_assigned) == 0 ]] || return 1
	done
}

ensure_tools() {
	if ! command -v redis-server >/dev/null 2>&1; then
		apt_install redis-server
	fi
	if ! command -v redis-cli >/dev/null 2>&1; then
		apt_install redis-tools
	fi
}

start_node() {
	local port=$1 dir=$DIR/$1
	if node_up "$port"; then
		# Some other Redis on our port would make every later step fail
		# in a confusing way: say so now.
		if [[ $(cli "$port" cluster info 2>&1) != *cluster_state:* ]]; then
			die "$HOST:$port answers, but is not a Redis Cluster node; stop it or set REDIS_CLUSTER_PORTS"
		fi
		return 0
	fi
	if port_open "$port"; then
		die "$HOST:$port is taken by something that is not Redis; free it or set REDIS_CLUSTER_PORTS"
	fi
	mkdir -p "$dir"
	log "starting a cluster node on $HOST:$port"
	redis-server --daemonize yes --bind "$HOST" --port "$port" \
		--cluster-enabled yes --cluster-config-file "$dir/nodes.conf" \
		--cluster-node-timeout 5000 \
		--save "" --appendonly no --dir "$dir" \
		--pidfile "$dir/redis.pid" --logfile "$dir/redis.log" ||
		die "redis-server failed to start on port $port; see $dir/redis.log"
	if ! wait_for node_up "$port"; then
		tail -n 20 "$dir/redis.log" >&2 2>/dev/null || true
		die "the node on $HOST:$port is not answering after ${WAIT_SECONDS}s; see $dir/redis.log"
	fi
}

start() {
	((${#PORTS[@]} >= 3)) || die "REDIS_CLUSTER_PORTS must list at least 3 ports (a cluster needs 3 masters), not '${PORTS[*]}'"
	ensure_tools
	local port
	for port in "${PORTS[@]}"; do
		start_node "$port"
	done
	if all_ok && formed; then
		return 0
	fi
	if fresh; then
		local addrs=() out
		for port in "${PORTS[@]}"; do
			addrs+=("$HOST:$port")
		done
		log "creating the cluster of ${addrs[*]}"
		if ! out=$(redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes 2>&1 </dev/null); then
			printf '%s\n' "$out" >&2
			die "redis-cli --cluster create failed"
		fi
	elif ! formed; then
		# Nodes that restarted without their node files next to nodes that
		# kept theirs, or nodes of another cluster: nothing to repair here.
		status >&2 || true
		die "the nodes are neither a formed cluster nor fresh nodes; start over with: $0 stop && $0 start"
	fi
	if ! wait_for all_ok; then
		status >&2 || true
		die "the cluster is not cluster_state:ok after ${WAIT_SECONDS}s; logs are in $DIR/*/redis.log"
	fi
}

status() {
	local port rc=0 state
	for port in "${PORTS[@]}"; do
		if ! node_up "$port"; then
			printf '%s:%s  not answering\n' "$HOST" "$port"
			rc=1
			continue
		fi
		state=$(info "$port" cluster_state)
		printf '%s:%s  cluster_state:%s  known_nodes:%s  slots_assigned:%s\n' "$HOST" "$port" \
			"${state:-?}" "$(info "$port" cluster_known_nodes)" "$(info "$port" cluster_slots_assigned)"
		[[ $state == ok ]] || rc=1
	done
	return "$rc"
}

stop() {
	local port dir
	for port in "${PORTS[@]}"; do
		dir=$DIR/$port
		if node_up "$port"; then
			# Shut down only a node this script started: one whose
			# working directory is ours.
			if [[ $(cli "$port" config get dir 2>/dev/null | tr -d '\r' | sed -n 2p) != "$dir" ]]; then
				die "$HOST:$port is not a node started by $0 (its dir is not $dir); leaving it alone"
			fi
			cli "$port" shutdown nosave >/dev/null 2>&1 || true
			wait_for node_down "$port" ||
				die "the node on $HOST:$port did not shut down"
		fi
		rm -rf "$dir"
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
