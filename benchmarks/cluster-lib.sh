# Sourced by benchmarks/cluster.sh and benchmarks/cluster-side-by-side.sh: starts and stops Redis, PostgreSQL 15 and
# StateMesh.Server nodes as one cluster, all on 127.0.0.1. Not a script of its own.
#
#   cluster_require_tools
#   cluster_start_redis <port> <dir>              REDIS_PID
#   cluster_init_postgres <template-dir>          initdb once (as the postgres OS user when root)
#   cluster_start_postgres <port> <dir> [<template-dir>]   PG_DIR, PG_PID (the postmaster); copies the template if given
#   cluster_start_statemesh <count> <first-http-port> <redis-port> <pg-port> <dir> [<log-dir>] [extra server args...]
#                                                 NODE_PIDS; node i listens on http = first + 10 (i - 1), TCP on http + 1
#   cluster_wait_healthy <http-port>...           waits for /health-check on each
#   cluster_stop                                  the nodes (SIGINT), then Redis, then PostgreSQL
#
# Redis and PostgreSQL get sessions of their own (setsid), so that Ctrl+C reaches only the nodes and the script, and
# they are stopped after the nodes.

CLUSTER_PG_BIN=${STATEMESH_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
CLUSTER_SERVER=${CLUSTER_SERVER:-src/StateMesh.Server/bin/Release/net10.0/StateMesh.Server.dll}
REDIS_PID=""
PG_DIR=""
PG_PID=""
NODE_PIDS=()

cluster_require_tools() {
  local tool
  for tool in dotnet redis-server redis-cli "$CLUSTER_PG_BIN/initdb" "$CLUSTER_PG_BIN/pg_ctl" "$CLUSTER_PG_BIN/createdb"; do
    if ! type -P "$tool" >/dev/null; then
      echo "$tool is missing (Debian: apt-get install -y redis-server postgresql-15)" >&2
      return 1
    fi
  done
}

# As the postgres OS user when this is root (PostgreSQL refuses to run as root), from / (which that user can read).
cluster_as_postgres() {
  if [[ $EUID -eq 0 ]]; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

cluster_start_redis() { # port dir
  mkdir -p "$2"
  setsid redis-server --bind 127.0.0.1 --port "$1" --dir "$2" --save '' --appendonly no --logfile "$2/redis.log" &
  REDIS_PID=$!
  local _
  for _ in $(seq 1 100); do
    redis-cli -h 127.0.0.1 -p "$1" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "redis-server on 127.0.0.1:$1 did not answer PING; see $2/redis.log" >&2
  return 1
}

cluster_init_postgres() { # template-dir
  mkdir -p "$1"
  [[ $EUID -eq 0 ]] && chown postgres:postgres "$1"
  cluster_as_postgres "$CLUSTER_PG_BIN/initdb" -D "$1/data" -U postgres --auth=trust --encoding=UTF8 --locale=C --no-sync >"$1/initdb.log"
}

cluster_start_postgres() { # port dir [template-dir]
  PG_DIR=$2
  if [[ -n "${3:-}" ]]; then
    mkdir -p "$PG_DIR"
    cp -a "$3/data" "$PG_DIR/data"
  else
    cluster_init_postgres "$PG_DIR"
  fi
  [[ $EUID -eq 0 ]] && chown -R postgres:postgres "$PG_DIR"
  cluster_as_postgres setsid "$CLUSTER_PG_BIN/pg_ctl" -D "$PG_DIR/data" -w -t 60 -l "$PG_DIR/postgres.log" \
    -o "-c listen_addresses=127.0.0.1 -c port=$1 -c unix_socket_directories=$PG_DIR" start >/dev/null
  PG_PID=$(head -1 "$PG_DIR/data/postmaster.pid")
  cluster_as_postgres "$CLUSTER_PG_BIN/createdb" -h 127.0.0.1 -p "$1" -U postgres statemesh
}

cluster_start_statemesh() { # count first-http-port redis-port pg-port dir [log-dir] [extra server args...]
  local count=$1 first=$2 redis=$3 pg=$4 dir=$5 logs=${6:-}
  shift 6 2>/dev/null || shift $#
  local i http
  for i in $(seq 1 "$count"); do
    http=$((first + 10 * (i - 1)))
    local args=(--StateMesh:NodeName="node$i" --StateMesh:Http:Port="$http" --StateMesh:Tcp:Port="$((http + 1))"
      --StateMesh:Cluster:Redis="127.0.0.1:$redis"
      --StateMesh:Postgres:ConnectionString="Host=127.0.0.1;Port=$pg;Database=statemesh;Username=postgres"
      --StateMesh:DataDirectory="$dir/node$i" "$@")
    if [[ -n "$logs" ]]; then
      dotnet "$CLUSTER_SERVER" "${args[@]}" >"$logs/node$i.log" 2>&1 &
    else
      # Each node's log on this terminal, its lines marked with its name ($! stays the node's own process id; the
      # marker ignores Ctrl+C so that it still passes on what the node logs while it stops).
      dotnet "$CLUSTER_SERVER" "${args[@]}" > >(trap '' INT; exec sed -u "s/^/[node$i] /") 2>&1 &
    fi
    NODE_PIDS+=($!)
  done
}

cluster_healthy() ( # port: /health-check answers 200
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  printf 'GET /health-check HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  read -r _ status _ <&3
  [[ "$status" == 200 ]]
)

cluster_wait_healthy() { # http-port...
  local http attempt
  for http in "$@"; do
    for attempt in $(seq 1 150); do
      cluster_healthy "$http" 2>/dev/null && break
      if ((attempt == 150)); then
        echo "the node on port $http did not answer /health-check" >&2
        return 1
      fi
      sleep 0.2
    done
  done
}

cluster_stop() {
  local pid
  # The nodes first (SIGINT: clients are told CLOSING, writes are committed), then what they use.
  for pid in "${NODE_PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${NODE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  NODE_PIDS=()
  if [[ -n "$REDIS_PID" ]]; then
    kill -TERM "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
  fi
  if [[ -n "$PG_DIR" && -f "$PG_DIR/data/postmaster.pid" ]]; then
    cluster_as_postgres "$CLUSTER_PG_BIN/pg_ctl" -D "$PG_DIR/data" -w -m fast stop >/dev/null || true
  fi
  PG_DIR=""
  PG_PID=""
}
