#!/usr/bin/env bash
# StateMesh's three-node cluster against deepstream's three-node cluster, on this machine, in one run.
#
#   bash benchmarks/cluster-side-by-side.sh
#
# Installs @deepstream/server 7.0.2 with @deepstream/clusternode-redis 1.0.1 and @deepstream/cache-redis 2.0.9
# (tests/deepstream-server, pinned by its package-lock.json), builds StateMesh.Server and the load tool in Release,
# then for each scenario and each target starts a fresh cluster on 127.0.0.1, runs the load tool against it and stops
# it all again:
#
#   deepstream             a fresh redis-server and three deepstream nodes (node tests/deepstream-server/start.cjs
#                          <port> open cluster <redis-port> dsN): messages between nodes over Redis pub/sub, records
#                          cached in Redis
#   StateMesh native TCP   a fresh redis-server, a fresh PostgreSQL 15 and three StateMesh.Server nodes, as
#                          benchmarks/cluster.sh starts them (benchmarks/cluster-lib.sh), over the native TCP protocol
#   StateMesh /deepstream  the same cluster, reached over the deepstream protocol (/deepstream WebSocket)
#
# In every scenario the senders are on node 1 and the receivers on nodes 2 and 3, so every delivery crosses nodes:
# fanout (one publisher, 100 subscribers), records (one writer, 100 subscribers), rpc (16 callers, 4 providers).
# The CPU figure sums every node process, redis-server and (StateMesh) PostgreSQL with its backends; Redis's commands
# are read from INFO before and after the measured window. Writes a "Cluster" section into docs/benchmarks.md and the
# JSON of every run under docs/benchmarks/cluster-results/.
#
# DURATION (seconds measured per run, default 10) as in side-by-side.sh; WARMUP (default 5: three fresh processes a side
# compile their hot paths under load) follows the settling; about 5 minutes as is.
# ONLY=<regex> runs just the scenarios and targets that match (for example ONLY=fanout or ONLY='rpc.*deepstream') and
# prints their table without touching docs/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-5}
ONLY=${ONLY:-}
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
WORK=$(mktemp -d -t statemesh-cluster-bench.XXXXXX)
# PostgreSQL's folders: owned by the postgres OS user when this is root (it cannot enter $WORK).
PGWORK=$(mktemp -d -t statemesh-cluster-bench-pg.XXXXXX)
if [[ $EUID -eq 0 ]]; then chown postgres:postgres "$PGWORK"; fi
OUT=$ROOT/docs/benchmarks
if [[ -n "$ONLY" ]]; then OUT=$WORK/out; fi
RESULTS=$OUT/cluster-results
REDIS_PORT=6250
PG_PORT=6251
SM_HTTP=6260 # node i: HTTP 6260 + 10 (i - 1), TCP one above
DS_PORT=6290 # node i: 6290 + i
source benchmarks/cluster-lib.sh
DS_PIDS=()

stop_all() {
  local pid
  for pid in "${DS_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${DS_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  DS_PIDS=()
  cluster_stop
}
trap 'stop_all; rm -rf "$WORK" "$PGWORK"' EXIT
trap 'exit 1' INT TERM

cluster_require_tools
echo "== installing the deepstream server with its Redis plugins and building StateMesh (Release)"
npm ci --prefix tests/deepstream-server --no-audit --no-fund --loglevel=error
dotnet build -c Release src/StateMesh.Server -v quiet -nologo
dotnet build -c Release benchmarks/StateMesh.LoadTest -v quiet -nologo
LOADTEST=(dotnet benchmarks/StateMesh.LoadTest/bin/Release/net10.0/StateMesh.LoadTest.dll)
rm -rf "$RESULTS"
mkdir -p "$RESULTS" "$WORK/logs"
# One initdb for the whole run; each StateMesh cluster starts on a fresh copy of it.
cluster_init_postgres "$PGWORK/template"

pid_on_port() { ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; }

wait_for_port() { # port log
  local _ pid
  for _ in $(seq 1 150); do
    pid=$(pid_on_port "$1")
    if [[ -n "$pid" ]]; then echo "$pid"; return 0; fi
    sleep 0.2
  done
  echo "nothing listens on 127.0.0.1:$1; see $2" >&2
  tail -20 "$2" >&2
  return 1
}

# start_cluster deepstream|statemesh: a fresh cluster; NODE_PIDS_CSV lists the processes that listen (the ones measured).
start_cluster() {
  rm -rf "$WORK/run"
  mkdir -p "$WORK/run"
  cluster_start_redis "$REDIS_PORT" "$WORK/run/redis"
  local i pids=()
  case $1 in
    deepstream)
      for i in 1 2 3; do
        node tests/deepstream-server/start.cjs "$((DS_PORT + i))" open cluster "$REDIS_PORT" "ds$i" >"$WORK/logs/ds$i.log" 2>&1 &
        DS_PIDS+=($!)
      done
      for i in 1 2 3; do pids+=("$(wait_for_port "$((DS_PORT + i))" "$WORK/logs/ds$i.log")"); done ;;
    statemesh)
      rm -rf "$PGWORK/run"
      cluster_start_postgres "$PG_PORT" "$PGWORK/run" "$PGWORK/template"
      cluster_start_statemesh 3 "$SM_HTTP" "$REDIS_PORT" "$PG_PORT" "$WORK/run" "$WORK/logs" --Logging:LogLevel:Default=Warning
      cluster_wait_healthy "$SM_HTTP" "$((SM_HTTP + 10))" "$((SM_HTTP + 20))"
      for i in 0 1 2; do
        wait_for_port "$((SM_HTTP + 10 * i + 1))" "$WORK/logs/node$((i + 1)).log" >/dev/null
        pids+=("$(pid_on_port "$((SM_HTTP + 10 * i))")")
      done ;;
  esac
  NODE_PIDS_CSV=$(IFS=,; echo "${pids[*]}")
}

targets() { # deepstream|statemesh-tcp|statemesh-ws: node 1, node 2, node 3
  case $1 in
    deepstream) echo "ws://127.0.0.1:$((DS_PORT + 1))/deepstream,ws://127.0.0.1:$((DS_PORT + 2))/deepstream,ws://127.0.0.1:$((DS_PORT + 3))/deepstream" ;;
    statemesh-tcp) echo "tcp://127.0.0.1:$((SM_HTTP + 1)),tcp://127.0.0.1:$((SM_HTTP + 11)),tcp://127.0.0.1:$((SM_HTTP + 21))" ;;
    statemesh-ws) echo "ws://127.0.0.1:$SM_HTTP/deepstream,ws://127.0.0.1:$((SM_HTTP + 10))/deepstream,ws://127.0.0.1:$((SM_HTTP + 20))/deepstream" ;;
  esac
}

RUN=0
# run <cluster> <label> <targets> <scenario> [options...]
run() {
  local cluster=$1 label=$2 targets=$3 scenario=$4
  shift 4
  RUN=$((RUN + 1))
  local json extra=()
  json=$(printf "%s/%02d-%s-%s.json" "$RESULTS" "$RUN" "$scenario" "$(echo "$label" | tr -cs "A-Za-z0-9" "-" | sed "s/-$//")")
  start_cluster "$cluster"
  if [[ -n "$PG_PID" ]]; then extra=(--postgres-pid "$PG_PID"); fi
  local command=(StateMesh.LoadTest "$scenario" --target "$targets" --label "\"$label\"" --seconds "$DURATION" --warmup "$WARMUP" "$@")
  echo "== $label: ${command[*]}"
  "${LOADTEST[@]}" "$scenario" --target "$targets" --label "$label" --seconds "$DURATION" --warmup "$WARMUP" "$@" \
    --node-pid "$NODE_PIDS_CSV" --redis "127.0.0.1:$REDIS_PORT" "${extra[@]}" --json "$json" | tail -1 \
    || echo "   (the run reported errors; see its JSON)"
  echo "| $label | \`${command[*]} --node-pid <3 pids> --redis 127.0.0.1:$REDIS_PORT${extra:+ --postgres-pid <postmaster>}\` |" >>"$WORK/commands.md"
  stop_all
}

# Each scenario against each cluster in turn, each on a freshly started cluster.
each() {
  local scenario=$1
  shift
  local label cluster targets
  for label in deepstream "StateMesh native TCP" "StateMesh /deepstream"; do
    if [[ -n "$ONLY" && ! "$scenario $label $*" =~ $ONLY ]]; then continue; fi
    case $label in
      deepstream) cluster=deepstream targets=$(targets deepstream) ;;
      "StateMesh native TCP") cluster=statemesh targets=$(targets statemesh-tcp) ;;
      *) cluster=statemesh targets=$(targets statemesh-ws) ;;
    esac
    run "$cluster" "$label" "$targets" "$scenario" "$@"
  done
}

# Closed loop, as in side-by-side.sh: as fast as the cluster delivers, with a bounded window in flight.
each fanout --publishers 1 --subscribers 100 --window 1000
each records --subscribers 100 --window 1000
each rpc --providers 4 --callers 16 --window 4

"${LOADTEST[@]}" cluster-report --in "$RESULTS" --markdown "$WORK/cluster.md"
if [[ -n "$ONLY" ]]; then
  cat "$WORK/cluster.md"
  exit 0
fi

STATEMESH_RPC_NOTE=""
if grep -q '| StateMesh [^|]* | rpc | [^|]* | no figure' "$WORK/cluster.md"; then
  STATEMESH_RPC_NOTE=1
fi
{
  echo "<!-- cluster:begin (written by benchmarks/cluster-side-by-side.sh; side-by-side.sh keeps it) -->"
  echo "## Cluster"
  echo
  echo "Written by \`bash benchmarks/cluster-side-by-side.sh\` (DURATION=$DURATION, WARMUP=$WARMUP) on $(date -u '+%Y-%m-%d %H:%M UTC'), StateMesh commit \`$(git rev-parse --short HEAD)\`$(git diff --quiet HEAD -- src || echo ' with uncommitted changes under src/')."
  echo "Every figure below comes from that one run, on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores shared by three nodes, Redis,"
  echo "PostgreSQL (StateMesh) and the load tool; .NET $(dotnet --version), Node.js $(node --version), redis-server $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2),"
  echo "PostgreSQL $("$CLUSTER_PG_BIN/postgres" --version | awk '{print $3}'). The machine was not idle: its load average was $LOAD_AT_START when the run began and $(cut -d' ' -f1-3 /proc/loadavg) at its end."
  echo "The JSON of each run is in [benchmarks/cluster-results](benchmarks/cluster-results)."
  echo
  echo "- **deepstream** is three @deepstream/server 7.0.2 nodes (ds1, ds2, ds3) with \`clusterNode: {name: 'redis'}\` (@deepstream/clusternode-redis 1.0.1)"
  echo "  and \`cache: {name: 'redis'}\` (@deepstream/cache-redis 2.0.9) on one redis-server, no storage; reached at \`/deepstream\`."
  echo "  **StateMesh** is three StateMesh.Server nodes in one cluster as \`benchmarks/cluster.sh\` starts them: StateMesh:Cluster:Redis on the same"
  echo "  kind of redis-server, records in PostgreSQL 15; reached over the native TCP protocol and over \`/deepstream\`."
  echo "  So the records rows compare unlike work: deepstream keeps records in the Redis cache alone, while a StateMesh write runs a"
  echo "  compare-and-set in Redis and is made durable in PostgreSQL before any node shows it."
  echo "- Each run starts a fresh Redis (and, for StateMesh, a fresh PostgreSQL) and three fresh nodes. The publisher, the writer and the callers"
  echo "  connect to node 1; the subscribers and the providers round robin to nodes 2 and 3, so every delivery crosses nodes. Before the warm-up"
  echo "  (${WARMUP} s) the tool waits until every subscriber has heard node 1 (every provider has answered), then measures ${DURATION} s, closed loop."
  echo "- *CPU µs/msg, all processes* is the user+system CPU time of the three node processes, redis-server and PostgreSQL (the postmaster and its"
  echo "  backends) over the measured window, from /proc/<pid>/stat, divided by the messages delivered in it; the next column splits it."
  echo "  The load tool's own CPU is not in it."
  echo "- *Redis cmds/msg sent* is the growth of \`total_commands_processed\` (INFO) over the window divided by the messages sent (events emitted,"
  echo "  patches written, calls made), the tool's own INFO left out; the next column names the most frequent commands (INFO commandstats, those under 0.005"
  echo "  per message left out)."
  echo "- Latency is from a send timestamp in each payload to its arrival, sampled on one subscriber in ten (every call for RPC); closed-loop"
  echo "  latency includes queueing."
  if [[ -n "$STATEMESH_RPC_NOTE" ]]; then
    echo "- **RPC across StateMesh nodes is not built yet** at this commit: a call made on node 1 for a provider on node 2 or 3 is answered"
    echo "  NO_RPC_PROVIDER, so the StateMesh RPC rows have no figure (the row shows what the caller was sent). Rerun this script once it lands."
  fi
  echo
  cat "$WORK/cluster.md"
  echo
  echo "Each command ran against a freshly started cluster; \`--node-pid\` named the three processes listening on the nodes' ports, \`--postgres-pid\`"
  echo "PostgreSQL's postmaster. The clusters: \`node tests/deepstream-server/start.cjs <$((DS_PORT + 1))|$((DS_PORT + 2))|$((DS_PORT + 3))> open cluster $REDIS_PORT <ds1|ds2|ds3>\`;"
  echo "\`dotnet src/StateMesh.Server/bin/Release/net10.0/StateMesh.Server.dll --StateMesh:NodeName=node<i> --StateMesh:Http:Port=<$SM_HTTP|$((SM_HTTP + 10))|$((SM_HTTP + 20))> --StateMesh:Tcp:Port=<http + 1>"
  echo "--StateMesh:Cluster:Redis=127.0.0.1:$REDIS_PORT --StateMesh:Postgres:ConnectionString=\"Host=127.0.0.1;Port=$PG_PORT;Database=statemesh;Username=postgres\" --StateMesh:DataDirectory=<fresh directory> --Logging:LogLevel:Default=Warning\`."
  echo
  echo "| target | command |"
  echo "|---|---|"
  cat "$WORK/commands.md"
  echo "<!-- cluster:end -->"
} >"$WORK/section.md"

# docs/benchmarks.md keeps everything else; the section between the markers is replaced (or appended the first time).
python3 - "$ROOT/docs/benchmarks.md" "$WORK/section.md" <<'PY'
import os, re, sys
path, section = sys.argv[1], open(sys.argv[2]).read()
text = open(path).read() if os.path.exists(path) else "# StateMesh against deepstream, side by side\n"
pattern = re.compile(r"<!-- cluster:begin.*?<!-- cluster:end -->\n?", re.S)
text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
open(path, "w").write(text)
PY
echo "== wrote the Cluster section of docs/benchmarks.md"
cat "$WORK/cluster.md"
