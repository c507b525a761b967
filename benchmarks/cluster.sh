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
source benchmarks/cluster-lib.sh

if ! cluster_require_tools; then
  echo "cluster.sh: cannot start" >&2
  exit 1
fi

echo "cluster.sh: building StateMesh.Server" >&2
dotnet build -c Release src/StateMesh.Server -v quiet -nologo >/dev/null

WORK=$(mktemp -d -t statemesh-cluster.XXXXXX)
PGROOT=$(mktemp -d -t statemesh-cluster-pg.XXXXXX)

stopping=""
stop() {
  [[ -n "$stopping" ]] && return
  stopping=1
  trap '' INT TERM
  echo "cluster.sh: stopping" >&2
  cluster_stop
  rm -rf "$WORK" "$PGROOT"
}
trap stop EXIT
trap 'exit 0' INT TERM

echo "cluster.sh: Redis on 127.0.0.1:$REDIS_PORT" >&2
cluster_start_redis "$REDIS_PORT" "$WORK/redis"
echo "cluster.sh: PostgreSQL on 127.0.0.1:$PG_PORT" >&2
cluster_start_postgres "$PG_PORT" "$PGROOT"
cluster_start_statemesh 3 6020 "$REDIS_PORT" "$PG_PORT" "$WORK"
if ! cluster_wait_healthy 6020 6030 6040; then
  echo "cluster.sh: a node did not start" >&2
  exit 1
fi
echo "cluster.sh: node1, node2, node3 answer on http://127.0.0.1:6020, :6030, :6040 (TCP 6021, 6031, 6041); Ctrl+C stops everything" >&2

# Until Ctrl+C, or until a node ends on its own (then the rest is stopped too).
wait -n "${NODE_PIDS[@]}" || true
echo "cluster.sh: a node exited" >&2
exit 1
