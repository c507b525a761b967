#!/usr/bin/env bash
# Redundant RPC providers behind several nodes, on this machine; Ctrl+C stops everything.
#
#   bash samples/ScaleOut/run.sh
#
# Starts Redis and PostgreSQL (as benchmarks/cluster.sh does), three StateMesh.Server nodes meeting in them
# (HTTP 6020/6030/6040, TCP 6021/6031/6041), two providers of the RPC scaleout/work, "alpha" on node1 and "beta" on
# node2, and a caller on node3 that prints every second how many calls it made and which provider answered them.
# Try: kill a provider (its pid is printed), then start it again with the command printed; or stop node3 (the
# caller's node) with kill -INT on its pid: calls go on, through node1.
set -euo pipefail
cd "$(dirname "$0")/../.."
REDIS_PORT=${REDIS_PORT:-6050}
PG_PORT=${PG_PORT:-6051}
source benchmarks/cluster-lib.sh
cluster_require_tools || { echo "run.sh: cannot start" >&2; exit 1; }
echo "run.sh: building StateMesh.Server and the sample" >&2
dotnet build -c Release src/StateMesh.Server -v quiet -nologo >/dev/null
dotnet build -c Release samples/ScaleOut -v quiet -nologo >/dev/null
SAMPLE=(dotnet samples/ScaleOut/bin/Release/net10.0/ScaleOut.dll)
WORK=$(mktemp -d -t statemesh-scaleout.XXXXXX)
PGROOT=$(mktemp -d -t statemesh-scaleout-pg.XXXXXX)
CLIENT_PIDS=()
stopping=""
stop() {
  [[ -n "$stopping" ]] && return
  stopping=1
  trap '' INT TERM
  # SIGTERM: background jobs of a script start with SIGINT ignored.
  for pid in "${CLIENT_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${CLIENT_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  cluster_stop
  rm -rf "$WORK" "$PGROOT"
}
trap stop EXIT
trap 'exit 0' INT TERM

cluster_start_redis "$REDIS_PORT" "$WORK/redis"
cluster_start_postgres "$PG_PORT" "$PGROOT"
mkdir -p "$WORK/logs"
cluster_start_statemesh 3 6020 "$REDIS_PORT" "$PG_PORT" "$WORK" "$WORK/logs"
cluster_wait_healthy 6020 6030 6040 || { echo "run.sh: a node did not start; logs in $WORK/logs" >&2; exit 1; }
echo "run.sh: three nodes up (node logs in $WORK/logs)" >&2

for provider in alpha:6021,6031 beta:6031,6021; do
  name=${provider%%:*}
  ports=${provider#*:}
  addresses="tcp://127.0.0.1:${ports%%,*},tcp://127.0.0.1:${ports#*,}"
  "${SAMPLE[@]}" provider "$name" "$addresses" > >(trap '' INT; exec sed -u "s/^/[$name] /") 2>&1 &
  CLIENT_PIDS+=($!)
  echo "run.sh: provider $name is pid $! (start it again from the repository root: ${SAMPLE[*]} provider $name $addresses)" >&2
done
sleep 1
"${SAMPLE[@]}" caller tcp://127.0.0.1:6041,tcp://127.0.0.1:6021 > >(trap '' INT; exec sed -u "s/^/[caller] /") 2>&1 &
CLIENT_PIDS+=($!)
echo "run.sh: the caller is on node3 (pid ${NODE_PIDS[2]}); Ctrl+C stops everything" >&2
wait "${CLIENT_PIDS[-1]}"
