#!/usr/bin/env bash
# A local cluster of three StateMesh.Server nodes on loopback; Ctrl+C stops everything.
#
#   bash benchmarks/cluster.sh
#
# Starts Redis (Debian's redis-server) and PostgreSQL 15 (initdb in a temp folder, as the postgres OS user when run as
# root, since PostgreSQL refuses to run as root), both in temp folders and on 127.0.0.1 only, then builds
# StateMesh.Server in Release and starts node1, node2 and node3:
#
#   node1  http://127.0.0.1:6020  tcp://127.0.0.1:6021
#   node2  http://127.0.0.1:6030  tcp://127.0.0.1:6031
#   node3  http://127.0.0.1:6040  tcp://127.0.0.1:6041
#
# The nodes meet in Redis (StateMesh:Cluster:Redis) and keep records in one PostgreSQL database
# (StateMesh:Postgres:ConnectionString). REDIS_PORT (default 6050) and PG_PORT (default 6051) move Redis and PostgreSQL;
# STATEMESH_POSTGRES_BIN points at PostgreSQL's binaries (default /usr/lib/postgresql/15/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
REDIS_PORT=${REDIS_PORT:-6050}
PG_PORT=${PG_PORT:-6051}
PG_BIN=${STATEMESH_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
SERVER=src/StateMesh.Server/bin/Release/net10.0/StateMesh.Server.dll

for tool in dotnet redis-server redis-cli "$PG_BIN/initdb" "$PG_BIN/pg_ctl" "$PG_BIN/createdb"; do
  if ! type -P "$tool" >/dev/null; then
    echo "cluster.sh: $tool is missing (Debian: apt-get install -y redis-server postgresql-15)" >&2
    exit 1
  fi
done

echo "cluster.sh: building StateMesh.Server" >&2
dotnet build -c Release src/StateMesh.Server -v quiet -nologo >/dev/null

WORK=$(mktemp -d -t statemesh-cluster.XXXXXX)
PGROOT=$(mktemp -d -t statemesh-cluster-pg.XXXXXX)
REDIS_PID=""
PG_STARTED=""
NODE_PIDS=()

# As the postgres OS user when this is root, from / (which that user can read).
as_postgres() {
  if [[ $EUID -eq 0 ]]; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

stopping=""
stop() {
  [[ -n "$stopping" ]] && return
  stopping=1
  trap '' INT TERM
  echo "cluster.sh: stopping" >&2
  # The nodes first (SIGINT: clients are told CLOSING, writes are committed), then what they use.
  for pid in "${NODE_PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${NODE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n "$REDIS_PID" ]]; then
    kill -TERM "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
  fi
  if [[ -n "$PG_STARTED" ]]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$PGROOT/data" -w -m fast stop >/dev/null || true
  fi
  rm -rf "$WORK" "$PGROOT"
}
trap stop EXIT
trap 'exit 0' INT TERM

# Redis and PostgreSQL get sessions of their own, so that Ctrl+C reaches only the nodes and this script, and they are
# stopped after the nodes.
echo "cluster.sh: Redis on 127.0.0.1:$REDIS_PORT" >&2
mkdir -p "$WORK/redis"
setsid redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$WORK/redis" --save '' --appendonly no \
  --logfile "$WORK/redis/redis.log" &
REDIS_PID=$!

echo "cluster.sh: PostgreSQL on 127.0.0.1:$PG_PORT" >&2
[[ $EUID -eq 0 ]] && chown postgres:postgres "$PGROOT"
as_postgres "$PG_BIN/initdb" -D "$PGROOT/data" -U postgres --auth=trust --encoding=UTF8 --locale=C --no-sync >"$WORK/initdb.log"
PG_STARTED=1
as_postgres setsid "$PG_BIN/pg_ctl" -D "$PGROOT/data" -w -t 60 -l "$PGROOT/postgres.log" \
  -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PGROOT" start >/dev/null
as_postgres "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres statemesh

for _ in $(seq 1 100); do
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done

for i in 1 2 3; do
  http=$((6000 + 10 * (i + 1)))
  # Each node's log, its lines marked with its name ($! stays the node's own process id; the marker ignores Ctrl+C so
  # that it still passes on what the node logs while it stops).
  dotnet "$SERVER" --StateMesh:NodeName="node$i" \
    --StateMesh:Http:Port="$http" --StateMesh:Tcp:Port="$((http + 1))" \
    --StateMesh:Cluster:Redis="127.0.0.1:$REDIS_PORT" \
    --StateMesh:Postgres:ConnectionString="Host=127.0.0.1;Port=$PG_PORT;Database=statemesh;Username=postgres" \
    --StateMesh:DataDirectory="$WORK/node$i" > >(trap '' INT; exec sed -u "s/^/[node$i] /") 2>&1 &
  NODE_PIDS+=($!)
done

healthy() ( # port: /health-check answers 200
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  printf 'GET /health-check HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  read -r _ status _ <&3
  [[ "$status" == 200 ]]
)
for http in 6020 6030 6040; do
  for attempt in $(seq 1 150); do
    healthy "$http" 2>/dev/null && break
    if ((attempt == 150)); then
      echo "cluster.sh: the node on port $http did not answer /health-check" >&2
      exit 1
    fi
    sleep 0.2
  done
done
echo "cluster.sh: node1, node2, node3 answer on http://127.0.0.1:6020, :6030, :6040 (TCP 6021, 6031, 6041); Ctrl+C stops everything" >&2

# Until Ctrl+C, or until a node ends on its own (then the rest is stopped too).
wait -n "${NODE_PIDS[@]}" || true
echo "cluster.sh: a node exited" >&2
exit 1
