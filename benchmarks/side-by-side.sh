#!/usr/bin/env bash
# StateMesh against the real deepstream server 7.0.2, side by side on this machine, in one run.
#
#   bash benchmarks/side-by-side.sh
#
# Installs @deepstream/server 7.0.2 (tests/deepstream-server, pinned by its package-lock.json), builds StateMesh.Server
# and the load tool in Release, then for each scenario starts a fresh server on 127.0.0.1, runs the load tool against
# it, and stops it: deepstream, StateMesh over the deepstream protocol (/deepstream), StateMesh over its native TCP
# protocol, and (fanout, pairs) the tool's bare relay. Writes docs/benchmarks.md, docs/benchmarks/chart.png and the
# JSON of every run under docs/benchmarks/results/, and refreshes README's benchmark table.
#
# DURATION (seconds measured per run, default 10) and WARMUP (default 2) shorten or lengthen it; about 12 minutes as is.
# ONLY=<regex> runs just the scenarios whose name and options match (for example ONLY=idle or ONLY='rate') and prints
# their table without touching docs/ or README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ONLY=${ONLY:-}
WORK=$(mktemp -d)
OUT=$ROOT/docs/benchmarks
if [[ -n "$ONLY" ]]; then OUT=$WORK/out; fi
RESULTS=$OUT/results
DS_PORT=6130
SM_HTTP=6140
SM_TCP=6141
RELAY_PORT=6150
SERVER_PID=""
trap 'stop_server; rm -rf "$WORK"' EXIT

echo "== installing the deepstream server and building StateMesh (Release)"
npm ci --prefix tests/deepstream-server --no-audit --no-fund --loglevel=error
dotnet build -c Release src/StateMesh.Server -v quiet -nologo
dotnet build -c Release benchmarks/StateMesh.LoadTest -v quiet -nologo
LOADTEST=(dotnet benchmarks/StateMesh.LoadTest/bin/Release/net10.0/StateMesh.LoadTest.dll)
SERVER=(dotnet src/StateMesh.Server/bin/Release/net10.0/StateMesh.Server.dll)
rm -rf "$RESULTS"
mkdir -p "$RESULTS"

pid_on_port() { ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; }

wait_for_port() {
  for _ in $(seq 1 150); do
    local pid
    pid=$(pid_on_port "$1")
    if [[ -n "$pid" ]]; then echo "$pid"; return 0; fi
    sleep 0.2
  done
  echo "nothing listens on 127.0.0.1:$1; see $WORK/server.log" >&2
  cat "$WORK/server.log" >&2
  return 1
}

# start_server deepstream|statemesh|relay: a fresh server; NODE_PID is the process that listens (the one measured).
start_server() {
  case $1 in
    deepstream)
      node tests/deepstream-server/start.cjs "$DS_PORT" open >"$WORK/server.log" 2>&1 &
      NODE_PID=$(wait_for_port "$DS_PORT") ;;
    statemesh)
      rm -rf "$WORK/data"
      "${SERVER[@]}" --StateMesh:Http:Port="$SM_HTTP" --StateMesh:Tcp:Port="$SM_TCP" --StateMesh:DataDirectory="$WORK/data" \
        --Logging:LogLevel:Default=Warning >"$WORK/server.log" 2>&1 &
      NODE_PID=$(wait_for_port "$SM_HTTP")
      wait_for_port "$SM_TCP" >/dev/null ;;
    relay)
      "${LOADTEST[@]}" relay --port "$RELAY_PORT" --max-seconds 600 >"$WORK/server.log" 2>&1 &
      NODE_PID=$(wait_for_port "$RELAY_PORT") ;;
  esac
  SERVER_PID=$!
}

stop_server() {
  if [[ -n "$SERVER_PID" ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}

RUN=0
# run <server> <label> <target> <scenario> [options...]
run() {
  local server=$1 label=$2 target=$3 scenario=$4
  shift 4
  RUN=$((RUN + 1))
  local json
  json=$(printf "%s/%02d-%s-%s.json" "$RESULTS" "$RUN" "$scenario" "$(echo "$label" | tr -cs "A-Za-z0-9" "-" | sed "s/-$//")")
  start_server "$server"
  local command=(StateMesh.LoadTest "$scenario" --target "$target" --label "$label" --seconds "$DURATION" --warmup "$WARMUP" "$@")
  echo "== $label: ${command[*]}"
  "${LOADTEST[@]}" "$scenario" --target "$target" --label "$label" --seconds "$DURATION" --warmup "$WARMUP" "$@" \
    --node-pid "$NODE_PID" --json "$json" | tail -1 || echo "   (the run reported errors; see its JSON)"
  echo "| $label | \`${command[*]}\` |" >>"$WORK/commands.md"
  stop_server
}

# Each scenario against each server in turn, each on a freshly started server.
each() {
  local scenario=$1 relay=$2
  shift 2
  if [[ -n "$ONLY" && ! "$scenario $*" =~ $ONLY ]]; then return 0; fi
  run deepstream deepstream "ws://127.0.0.1:$DS_PORT/deepstream" "$scenario" "$@"
  run statemesh "StateMesh /deepstream" "ws://127.0.0.1:$SM_HTTP/deepstream" "$scenario" "$@"
  run statemesh "StateMesh native TCP" "tcp://127.0.0.1:$SM_TCP" "$scenario" "$@"
  if [[ $relay == relay ]]; then
    run relay "bare relay" "relay://127.0.0.1:$RELAY_PORT" "$scenario" "$@"
  fi
}

# Throughput, closed loop: as fast as the servers deliver, with a bounded window in flight.
each fanout relay --publishers 1 --subscribers 100 --window 1000
each pairs relay --pairs 50 --window 1000
each records none --subscribers 100 --window 1000
each rpc none --providers 4 --callers 16 --window 4
# Latency at equal offered load, open loop: at about a quarter and at about 60 % of what deepstream sustained in the
# closed-loop runs on this machine (fanout ~70k deliveries/s, pairs ~40k, records ~75k). The relay gives the floor.
each fanout relay --publishers 1 --subscribers 100 --rate 200
each pairs relay --pairs 50 --rate 10000
each records none --subscribers 100 --rate 200
each fanout relay --publishers 1 --subscribers 100 --rate 400
each pairs relay --pairs 50 --rate 25000
each records none --subscribers 100 --rate 450
# Memory per idle connection.
each idle none --connections 2000

"${LOADTEST[@]}" report --in "$RESULTS" --markdown "$WORK/report.md" --chart "$OUT/chart.png"
if [[ -n "$ONLY" ]]; then
  cat "$WORK/report.md"
  exit 0
fi
# The report names the chart by file name; docs/benchmarks.md finds it in docs/benchmarks/.
sed -i 's#](chart.png)#](benchmarks/chart.png)#' "$WORK/report.md"

# The Cluster section (benchmarks/cluster-side-by-side.sh) and what follows it (the Redis counts of
# RedisMessagesPerEventTests, the attack figures) are other runs': kept as they are.
CLUSTER_SECTION=$(sed -n '/^<!-- cluster:begin/,$p' "$ROOT/docs/benchmarks.md" 2>/dev/null || true)
{
  echo "# StateMesh against deepstream, side by side"
  echo
  echo "Written by \`bash benchmarks/side-by-side.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), StateMesh commit \`$(git rev-parse --short HEAD)\`$(git diff --quiet HEAD -- src || echo ' with uncommitted changes under src/')."
  echo "Every figure below comes from that one run; the JSON of each run is in [benchmarks/results](benchmarks/results)."
  echo "What was changed to get here, allocations per message, and where the targets that are not met hit their limits:"
  echo "[performance.md](performance.md)."
  echo
  echo "## Machine"
  echo
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; memory $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -sr)"
  echo "- .NET $(dotnet --version), Node.js $(node --version), @deepstream/server $(node -p "require('./tests/deepstream-server/node_modules/@deepstream/server/package.json').version")"
  echo "- The load tool, the server under test and nothing else share these cores; every address is 127.0.0.1."
  echo
  echo "## How to read it"
  echo
  echo "- **deepstream** is @deepstream/server 7.0.2 on Node.js (in-memory storage, open auth, no permissions), reached at \`/deepstream\` with the"
  echo "  protobuf protocol of @deepstream/client 7. **StateMesh /deepstream** is StateMesh.Server (its defaults: SQLite storage) reached the same"
  echo "  way, on the same protocol, by the same tool. **StateMesh native TCP** is the same node over its MessagePack protocol."
  echo "  **bare relay** is the tool's relay (read a frame, copy it to each receiver; no protocol) on the same sockets layer: the physical limit."
  echo "- Each run starts a fresh server, warms up for ${WARMUP} s, then measures ${DURATION} s. Closed-loop runs keep at most a window of"
  echo "  messages in flight per subscriber (per caller for RPC), so the figure is what the pair of processes sustains."
  echo "- *node CPU µs/msg* is the server's user+system CPU time from /proc/<pid>/stat over the measured window, divided by the messages"
  echo "  delivered in it. When the tool uses a core of its own (see *tool CPU*), the server is not the bottleneck and this is the figure that counts."
  echo "- *memory/conn* is the growth of the server's resident memory (VmRSS) per held connection, after 100 warm-up connections."
  echo "- Latency is from a send timestamp in each payload to its arrival, sampled on one subscriber in ten; closed-loop latency includes queueing."
  echo
  echo "## Results"
  echo
  cat "$WORK/report.md"
  echo
  echo "## Commands"
  echo
  echo "Each command ran against a freshly started server; \`--node-pid\` named the process listening on the target port."
  echo
  echo "| target | command |"
  echo "|---|---|"
  cat "$WORK/commands.md"
  echo
  echo "The servers: \`node tests/deepstream-server/start.cjs $DS_PORT open\`; \`dotnet src/StateMesh.Server/bin/Release/net10.0/StateMesh.Server.dll --StateMesh:Http:Port=$SM_HTTP --StateMesh:Tcp:Port=$SM_TCP --StateMesh:DataDirectory=<fresh directory> --Logging:LogLevel:Default=Warning\`; \`StateMesh.LoadTest relay --port $RELAY_PORT\`."
  if [[ -n "$CLUSTER_SECTION" ]]; then
    echo
    echo "$CLUSTER_SECTION"
  fi
} >"$ROOT/docs/benchmarks.md"

# README's table is the comparison table of docs/benchmarks.md.
python3 - "$ROOT/README.md" "$WORK/report.md" <<'PY'
import re, sys
readme, report = sys.argv[1], open(sys.argv[2]).read()
table = re.search(r"\| scenario \| shape .*?\n(?:\|.*\n)+", report).group(0)
text = open(readme).read()
begin, end = "<!-- benchmarks:begin -->", "<!-- benchmarks:end -->"
if begin in text:
    head, rest = text.split(begin, 1)
    text = head + begin + "\n" + table + end + rest.split(end, 1)[1]
    open(readme, "w").write(text)
PY
echo "== wrote docs/benchmarks.md and docs/benchmarks/chart.png"
