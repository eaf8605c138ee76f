# shellcheck shell=bash disable=SC2034,SC2016
# Helpers of infra/services/cluster-{up,down,status}.sh (the cluster profile).
# Sourced, not run. Reuses lib.sh (paths, java, the Kafka jars) without
# touching the single-node services on 5432/6379/9092.
#
# Everything the cluster profile creates lives under <repo>/.data/cluster:
#   kafka-N/  server.properties, data/, logs/, kafka.pid      (N = 1..3)
#   redis-P/  redis.conf, nodes.conf, appendonly, redis.pid, redis.log  (P = port)
#   cluster.id, env (CHAT_* variables that point Parley at the cluster)

# shellcheck source=infra/services/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CL_DIR="$DATA_DIR/cluster"
CL_ENV="$CL_DIR/env"
CL_KAFKA_TEMPLATE="$INFRA_DIR/kafka/cluster/server.properties"
CL_KAFKA_CLUSTER_ID="$CL_DIR/cluster.id"

# Kafka: three combined broker+controller nodes, a three-voter KRaft quorum.
CL_KAFKA_NODES=(1 2 3)
CL_KAFKA_BROKER_BASE=19091     # node N listens on 19091+N (19092..19094)
CL_KAFKA_CONTROLLER_BASE=19191 # and its controller on 19191+N (19192..19194)
CL_KAFKA_HEAP=${CL_KAFKA_HEAP:--Xms128m -Xmx384m}
CL_KAFKA_TIMEOUT=${CL_KAFKA_TIMEOUT:-120}

# Redis Cluster: three primaries and three replicas (one per primary), so a
# stopped primary fails over to its replica instead of taking its slots away.
CL_REDIS_PORTS=(17001 17002 17003 17004 17005 17006)
CL_REDIS_REPLICAS=${CL_REDIS_REPLICAS:-1}
CL_REDIS_TIMEOUT=${CL_REDIS_TIMEOUT:-60}
# how long a primary may be unreachable before its replica takes over
CL_REDIS_NODE_TIMEOUT=${CL_REDIS_NODE_TIMEOUT:-2000}

CL_TOPIC=${CL_TOPIC:-chat.events}
CL_PARTITIONS=${CL_PARTITIONS:-8}

cl_broker_port() { echo $((CL_KAFKA_BROKER_BASE + $1)); }
cl_controller_port() { echo $((CL_KAFKA_CONTROLLER_BASE + $1)); }
cl_kafka_dir() { echo "$CL_DIR/kafka-$1"; }
cl_kafka_pidfile() { echo "$CL_DIR/kafka-$1/kafka.pid"; }
cl_kafka_pid() { pidfile_alive "$(cl_kafka_pidfile "$1")" kafka.Kafka; }
cl_redis_dir() { echo "$CL_DIR/redis-$1"; }
cl_redis_pid() { pidfile_alive "$CL_DIR/redis-$1/redis.pid" redis-server; }

cl_bootstrap() {
  local n out=()
  for n in "${CL_KAFKA_NODES[@]}"; do out+=("127.0.0.1:$(cl_broker_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

cl_voters() {
  local n out=()
  for n in "${CL_KAFKA_NODES[@]}"; do out+=("$n@127.0.0.1:$(cl_controller_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

# The go-redis cluster URL: the first node as host, the others as addr=.
cl_redis_url() {
  local p url="redis://127.0.0.1:${CL_REDIS_PORTS[0]}?cluster=true"
  for p in "${CL_REDIS_PORTS[@]:1}"; do url+="&addr=127.0.0.1:$p"; done
  echo "$url"
}

# cl_kafka_brokers PORT: how many brokers a Metadata v4 answer from
# 127.0.0.1:PORT lists (nothing when no answer). A KRaft broker only answers
# once it has caught up with the metadata log; the list holds the unfenced brokers.
cl_kafka_brokers() {
  local bytes
  bytes=$(timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "\x00\x00\x00\x1b\x00\x03\x00\x04\x00\x00\x30\x39\x00\x0cparley-probe\x00\x00\x00\x00\x00" >&3
    head -c 20 <&3 | od -An -tu1 -v' _ "$1" 2>/dev/null) || return 1
  # shellcheck disable=SC2206
  local b=($bytes)
  ((${#b[@]} >= 20)) || return 1
  [[ "${b[4]} ${b[5]} ${b[6]} ${b[7]}" == "0 0 48 57" ]] || return 1
  echo $(((b[12] << 24) | (b[13] << 16) | (b[14] << 8) | b[15]))
}

# cl_redis PORT ARGS...: redis-cli against one node of the cluster.
cl_redis() {
  local port=$1
  shift
  timeout 5 redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null
}

cl_redis_ping() { [[ $(cl_redis "$1" ping) == PONG ]]; }

# cl_redis_info PORT FIELD: one field of CLUSTER INFO.
cl_redis_info() { cl_redis "$1" cluster info | tr -d '\r' | awk -F: -v f="$2" '$1 == f {print $2}'; }

# A node that has taken part in `redis-cli --cluster create` knows the others.
cl_redis_joined() { local n; n=$(cl_redis_info "$1" cluster_known_nodes); [[ ${n:-0} -gt 1 ]]; }

# The whole cluster serves every slot, as every running node sees it.
cl_redis_healthy() {
  local p
  for p in "${CL_REDIS_PORTS[@]}"; do
    cl_redis_ping "$p" || return 1
    [[ $(cl_redis_info "$p" cluster_state) == ok ]] || return 1
    [[ $(cl_redis_info "$p" cluster_slots_ok) == 16384 ]] || return 1
    [[ $(cl_redis_info "$p" cluster_known_nodes) == "${#CL_REDIS_PORTS[@]}" ]] || return 1
  done
}

# Every node answers and every broker sees all three brokers.
cl_kafka_healthy() {
  local n c
  for n in "${CL_KAFKA_NODES[@]}"; do
    c=$(cl_kafka_brokers "$(cl_broker_port "$n")") || return 1
    [[ $c == "${#CL_KAFKA_NODES[@]}" ]] || return 1
  done
}

cl_take_lock() {
  mkdir -p "$CL_DIR"
  exec 8>"$CL_DIR/.lock"
  if ! flock -w 300 8; then
    note "another cluster-up/down run has held $CL_DIR/.lock for 300s: giving up"
    exit 1
  fi
}
