#!/usr/bin/env bash
# One attacker against 100 ordinary clients (50 event ping-pong pairs), on both of a node's protocols, in one run.
#
#   bash benchmarks/attack.sh            # open loop at RATE round trips/s (default 8000) and closed loop (as fast as they go)
#
# Builds StateMesh.Server and the load tool in Release, starts a fresh node on 127.0.0.1 (SQLite in a temp folder),
# and runs the load tool's attack scenario (slowreader, subscribe, listen: each one attacked phase measured against
# the same baseline) over native TCP and over the deepstream protocol. Prints one markdown table per run.
# DURATION (seconds per phase, default 10), RATE, PAIRS (default 50).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
RATE=${RATE:-8000}
PAIRS=${PAIRS:-50}
WORK=$(mktemp -d)
HTTP=6160
TCP=6161
SERVER_PID=""
trap '[[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

dotnet build -c Release src/StateMesh.Server -v quiet -nologo >/dev/null
dotnet build -c Release benchmarks/StateMesh.LoadTest -v quiet -nologo >/dev/null
dotnet src/StateMesh.Server/bin/Release/net10.0/StateMesh.Server.dll --StateMesh:Http:Port=$HTTP --StateMesh:Tcp:Port=$TCP \
  --StateMesh:DataDirectory="$WORK/data" --Logging:LogLevel:Default=Warning >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  if (echo >/dev/tcp/127.0.0.1/$TCP) 2>/dev/null && (echo >/dev/tcp/127.0.0.1/$HTTP) 2>/dev/null; then break; fi
  sleep 0.2
done

run() { # target label extra-args...
  local target=$1 label=$2
  shift 2
  echo "== $label"
  dotnet benchmarks/StateMesh.LoadTest/bin/Release/net10.0/StateMesh.LoadTest.dll attack --target "$target" --label "$label" \
    --pairs "$PAIRS" --seconds "$DURATION" --node-pid "$SERVER_PID" "$@" | sed -n '/^| target | attack/,$p'
}
run "tcp://127.0.0.1:$TCP" "StateMesh TCP, $RATE/s" --rate "$RATE"
run "ws://127.0.0.1:$HTTP/deepstream" "StateMesh /deepstream, $RATE/s" --rate "$RATE"
run "tcp://127.0.0.1:$TCP" "StateMesh TCP, closed loop"
run "ws://127.0.0.1:$HTTP/deepstream" "StateMesh /deepstream, closed loop"
