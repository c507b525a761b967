#!/usr/bin/env bash
# What permissions cost a node, in one run: the load tool's fanout and records against StateMesh.Server without
# permissions and with benchmarks/permissions-typical.yml (every check an expression; the write rule reads the data),
# over native TCP and /deepstream, each on a freshly started node. Prints a markdown table of deliveries/s and the
# ratio with/without; the JSON of each run is kept under $OUT (default: a temporary folder, printed at the end).
#
#   bash benchmarks/permissions-side-by-side.sh        (about 2 minutes; DURATION and WARMUP as in side-by-side.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
WORK=$(mktemp -d)
OUT=${OUT:-$WORK/results}
SM_HTTP=6240
SM_TCP=6241
SERVER_PID=""
trap 'stop_server' EXIT
mkdir -p "$OUT"

dotnet build -c Release src/StateMesh.Server -v quiet -nologo
dotnet build -c Release benchmarks/StateMesh.LoadTest -v quiet -nologo
LOADTEST=(dotnet benchmarks/StateMesh.LoadTest/bin/Release/net10.0/StateMesh.LoadTest.dll)
SERVER=(dotnet src/StateMesh.Server/bin/Release/net10.0/StateMesh.Server.dll)

pid_on_port() { ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; }
wait_for_port() {
  for _ in $(seq 1 150); do
    local pid
    pid=$(pid_on_port "$1")
    if [[ -n "$pid" ]]; then echo "$pid"; return 0; fi
    sleep 0.2
  done
  cat "$WORK/server.log" >&2
  return 1
}
start_server() {
  rm -rf "$WORK/data"
  local extra=()
  if [[ $1 == with ]]; then extra=(--StateMesh:Permissions:Path="$ROOT/benchmarks/permissions-typical.yml"); fi
  "${SERVER[@]}" --StateMesh:Http:Port="$SM_HTTP" --StateMesh:Tcp:Port="$SM_TCP" --StateMesh:DataDirectory="$WORK/data" \
    --Logging:LogLevel:Default=Warning "${extra[@]}" >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  NODE_PID=$(wait_for_port "$SM_HTTP")
  wait_for_port "$SM_TCP" >/dev/null
}
stop_server() {
  if [[ -n "$SERVER_PID" ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}

declare -A RATE
# run <with|without> <transport label> <target> <scenario> [options...]
run() {
  local permissions=$1 transport=$2 target=$3 scenario=$4
  shift 4
  local json="$OUT/$scenario-$transport-$permissions.json"
  start_server "$permissions"
  echo "== $scenario over $transport, $permissions permissions"
  "${LOADTEST[@]}" "$scenario" --target "$target" --label "$transport $permissions" --seconds "$DURATION" --warmup "$WARMUP" "$@" \
    --node-pid "$NODE_PID" --json "$json" | tail -1
  stop_server
  RATE[$scenario-$transport-$permissions]=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['DeliveredPerSecond']))" "$json")
  ERRORS=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['Errors'])" "$json")
  if [[ $ERRORS != 0 ]]; then echo "   the run reported $ERRORS errors (a check refused what it should allow?): see $json" >&2; fi
}

for scenario in fanout records; do
  if [[ $scenario == fanout ]]; then opts=(--publishers 1 --subscribers 100 --window 1000); else opts=(--subscribers 100 --window 1000); fi
  for permissions in without with; do
    run "$permissions" tcp "tcp://127.0.0.1:$SM_TCP" "$scenario" "${opts[@]}"
    run "$permissions" deepstream "ws://127.0.0.1:$SM_HTTP/deepstream" "$scenario" "${opts[@]}"
  done
done

echo
echo "| scenario | transport | without permissions | with permissions-typical.yml | with / without |"
echo "|---|---|---|---|---|"
for scenario in fanout records; do
  for transport in tcp deepstream; do
    without=${RATE[$scenario-$transport-without]}
    with=${RATE[$scenario-$transport-with]}
    echo "| $scenario | $transport | $without/s | $with/s | $(python3 -c "print(f'{$with/$without:.2f}')") |"
  done
done
echo
echo "JSON of each run: $OUT"
