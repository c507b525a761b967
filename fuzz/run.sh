#!/usr/bin/env bash
# Coverage-guided fuzzing of StateMesh's parsers: SharpFuzz instruments the project's assemblies, and AFL++ (default)
# or libFuzzer (through fuzz/driver, FUZZ_ENGINE=libfuzzer) drives them.
#   bash fuzz/run.sh <target|all> <inputs-per-target>
# Installs what is missing (afl++ or clang with libFuzzer, the sharpfuzz tool), builds fuzz/StateMesh.Fuzz in Release,
# instruments a copy of its output, runs each target for the given number of inputs, and prints per target the inputs
# executed, execs/s, crashes and hangs (with each crash's input and exception). Exits non-zero on any crash, hang or
# failed run. Environment: FUZZ_ENGINE (afl or libfuzzer), FUZZ_JOBS (targets run at once, default 1),
# FUZZ_MAX_TOTAL_TIME (seconds per target, default none), FUZZ_MAX_LEN (largest input for libFuzzer, default 16384),
# FUZZ_TIMEOUT (seconds one input may take before it is a hang, default 10), FUZZ_OUT (work directory, default fuzz/out).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
targets=(deepstream native websocket-node websocket-client record-path http-api)

usage() { echo "usage: bash fuzz/run.sh <all|${targets[*]// /|}> <inputs-per-target>" >&2; exit 2; }
[ $# -eq 2 ] || usage
[[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -gt 0 ] || usage
runs=$2
if [ "$1" = all ]; then
  selected=("${targets[@]}")
else
  selected=()
  for t in "${targets[@]}"; do [ "$t" = "$1" ] && selected=("$t"); done
  [ ${#selected[@]} -eq 1 ] || usage
fi
out=${FUZZ_OUT:-$root/fuzz/out}
jobs_at_once=${FUZZ_JOBS:-1}
max_len=${FUZZ_MAX_LEN:-16384}
timeout=${FUZZ_TIMEOUT:-10}
max_total_time=${FUZZ_MAX_TOTAL_TIME:-0}
engine=${FUZZ_ENGINE:-afl}
case "$engine" in afl | libfuzzer) ;; *) echo "FUZZ_ENGINE is afl or libfuzzer" >&2; exit 2 ;; esac
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
mkdir -p "$out"

if [ "$engine" = afl ]; then
  if ! command -v afl-fuzz >/dev/null 2>&1; then
    echo "fuzz: installing afl++" >&2
    apt-get update -qq
    apt-get install -y -qq afl++ >/dev/null
  fi
else
  # clang with libFuzzer's runtime (Debian: clang and libclang-rt-<version>-dev).
  libfuzzer_works() {
    command -v clang >/dev/null 2>&1 &&
      echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' |
        clang -x c -fsanitize=fuzzer -o "$out/.libfuzzer-check" - >/dev/null 2>&1
  }
  if ! libfuzzer_works; then
    echo "fuzz: installing clang and libFuzzer" >&2
    apt-get update -qq
    apt-get install -y -qq clang >/dev/null
    major=$(clang -dumpversion | cut -d. -f1)
    apt-get install -y -qq "libclang-rt-$major-dev" >/dev/null
    libfuzzer_works || { echo "fuzz: clang cannot link -fsanitize=fuzzer" >&2; exit 1; }
  fi
  rm -f "$out/.libfuzzer-check"
  driver=$out/statemesh-libfuzzer-driver
  if [ ! -x "$driver" ] || [ fuzz/driver/statemesh-libfuzzer-driver.c -nt "$driver" ]; then
    clang -O2 -Wall -Werror -fsanitize=fuzzer fuzz/driver/statemesh-libfuzzer-driver.c -o "$driver"
  fi
fi

# SharpFuzz's instrumenter, as a local tool (nothing installed globally).
sharpfuzz=$out/tools/sharpfuzz
if [ ! -x "$sharpfuzz" ]; then
  dotnet tool install SharpFuzz.CommandLine --version 2.3.0 --tool-path "$out/tools" >/dev/null
fi

# Build, then instrument a copy: the project's own bin stays as the tests and the replay tool use it.
dotnet build fuzz/StateMesh.Fuzz/StateMesh.Fuzz.csproj -c Release -nologo -v q -clp:ErrorsOnly
rm -rf "$out/bin"
cp -r fuzz/StateMesh.Fuzz/bin/Release/net10.0 "$out/bin"
for assembly in StateMesh StateMesh.Deepstream StateMesh.AspNetCore MessagePack; do
  "$sharpfuzz" "$out/bin/$assembly.dll" >/dev/null
done

run_target() {
  local t=$1 dir=$out/$1 rc=0 start end executed=0 crashes=0 hangs=0
  rm -rf "$dir"
  mkdir -p "$dir/corpus"
  start=$(date +%s.%N)
  # A parser that allocates without bound meets the heap limit (OutOfMemoryException, a crash) before the machine's memory.
  export DOTNET_GCHeapHardLimit=0x40000000
  if [ "$engine" = afl ]; then
    # SharpFuzz's Fuzzer.Run speaks AFL's fork-server protocol and runs inputs in one process (persistent mode).
    local limits=(-E "$runs")
    [ "$max_total_time" = 0 ] || limits+=(-V "$max_total_time")
    AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
      afl-fuzz -i "$root/fuzz/corpus/$t" -o "$dir/afl" -t "$((timeout * 1000))" -m none "${limits[@]}" \
      -- dotnet "$out/bin/StateMesh.Fuzz.dll" "$t" --afl </dev/null >"$dir/log" 2>&1 || rc=$?
    local stats=$dir/afl/default/fuzzer_stats
    if [ -f "$stats" ]; then
      executed=$(awk -F' *: *' '$1 == "execs_done" { print $2 }' "$stats")
    fi
    crashes=$(find "$dir/afl/default/crashes" -type f -name 'id:*' 2>/dev/null | wc -l)
    hangs=$(find "$dir/afl/default/hangs" -type f -name 'id:*' 2>/dev/null | wc -l)
  else
    STATEMESH_FUZZ_DLL=$out/bin/StateMesh.Fuzz.dll STATEMESH_FUZZ_TARGET=$t \
      "$driver" -runs="$runs" -max_len="$max_len" -timeout="$timeout" -max_total_time="$max_total_time" \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/" "$dir/corpus" "$root/fuzz/corpus/$t" >"$dir/log" 2>&1 || rc=$?
    executed=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$dir/log" | grep -o '[0-9]*$' || echo 0)
    crashes=$(find "$dir" -maxdepth 1 \( -name 'crash-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
    hangs=$(find "$dir" -maxdepth 1 -name 'timeout-*' | wc -l)
  fi
  end=$(date +%s.%N)
  printf '%s %s %s %s %s %s\n' "$t" "${executed:-0}" "$crashes" "$hangs" "$rc" \
    "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')" >"$dir/result"
}

echo "fuzz: ${selected[*]}: $runs inputs each with $engine (timeout ${timeout}s per input, $jobs_at_once target(s) at once)"
for t in "${selected[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_at_once" ]; do wait -n || true; done
  run_target "$t" &
done
wait || true

failed=0
printf '%-18s %12s %9s %8s %6s %9s\n' target inputs execs/s crashes hangs seconds
for t in "${selected[@]}"; do
  if [ ! -f "$out/$t/result" ]; then
    echo "$t: no result (see $out/$t/log)"
    failed=1
    continue
  fi
  read -r name executed crashes hangs rc seconds <"$out/$t/result"
  # execs/s over the whole run: the .NET start, the seed corpus and calibration included.
  rate=$(awk -v n="$executed" -v s="$seconds" 'BEGIN { printf "%d", (s > 0 ? n / s : 0) }')
  printf '%-18s %12s %9s %8s %6s %9.1f\n' "$name" "$executed" "$rate" "$crashes" "$hangs" "$seconds"
  if [ "$crashes" -ne 0 ] || [ "$hangs" -ne 0 ] || [ "$rc" -ne 0 ] || [ "$executed" -lt "$runs" -a "$max_total_time" = 0 ]; then
    failed=1
    echo "--- $t failed ($engine exit $rc); the end of $out/$t/log:"
    grep -v -E '^#[0-9]+[[:space:]]|^[[:space:]]+#[0-9]+ 0x|^(0x[0-9a-f]{2},)+$' "$out/$t/log" | tail -n 15
    for artifact in "$out/$t"/crash-* "$out/$t"/oom-* "$out/$t"/timeout-* "$out/$t"/afl/default/crashes/id:* "$out/$t"/afl/default/hangs/id:*; do
      [ -f "$artifact" ] || continue
      echo "input $artifact ($(stat -c %s "$artifact") bytes): $(od -An -tx1 -v "$artifact" | tr -d ' \n' | head -c 2048)"
      echo "replayed once, without instrumentation:"
      timeout "$((timeout * 3))" dotnet fuzz/StateMesh.Fuzz/bin/Release/net10.0/StateMesh.Fuzz.dll replay "$t" "$artifact" 2>&1 | head -n 25 || true
    done
  fi
done
exit "$failed"
