#!/usr/bin/env bash
# Two builds of StateMesh.Server side by side with one load tool, alternating runs so that drift hits both:
#   bash benchmarks/compare-builds.sh <checkout A> <checkout B> [rounds]
# Each checkout must have src/StateMesh.Server built in Release. Records (closed loop and 450/s) and durable writes
# (16 writers) over native TCP and /deepstream, SQLite storage with fsync per commit; rows go to stdout.
set -u
A=$1; B=$2; ROUNDS=${3:-2}
cd "$(dirname "$0")/.."
dotnet build -c Release benchmarks/StateMesh.LoadTest -v quiet -nologo >/dev/null
LT=(dotnet benchmarks/StateMesh.LoadTest/bin/Release/net10.0/StateMesh.LoadTest.dll)
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
start() {
  rm -rf "$WORK/data"
  dotnet "$1/src/StateMesh.Server/bin/Release/net10.0/StateMesh.Server.dll" --StateMesh:Http:Port=6240 --StateMesh:Tcp:Port=6241 \
    --StateMesh:DataDirectory="$WORK/data" --Logging:LogLevel:Default=Warning >"$WORK/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do ss -ltn | grep -q ":6241 " && ss -ltn | grep -q ":6240 " && return; sleep 0.2; done
}
echo "| build | scenario | shape | offered/s | delivered/s | node CPU µs/msg | node CPU | tool CPU | p50 ms | p99 ms | max ms | memory | errors |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for round in $(seq 1 "$ROUNDS"); do
  for dir in "$A" "$B"; do
    for scenario in "records --subscribers 100 --window 1000" "records --subscribers 100 --rate 450" "durable --writers 16"; do
      for target in tcp://127.0.0.1:6241 ws://127.0.0.1:6240/deepstream; do
        start "$dir"
        # shellcheck disable=SC2086
        "${LT[@]}" $scenario --target "$target" --label "$(basename "$dir") ${target%%:*} r$round" --seconds 8 --warmup 2 --node-pid "$PID" | tail -1
        kill "$PID"; wait "$PID" 2>/dev/null
      done
    done
  done
done
