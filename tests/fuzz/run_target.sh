#!/usr/bin/env bash
# Runs one libFuzzer target: first every input of its committed corpus, then
# fresh fuzzing for SECONDS. Used by ctest (label fuzz) and scripts/fuzz.
#   run_target.sh BINARY NAME SECONDS BUILD_DIR CORPUS DICT MAX_LEN [libFuzzer flags...]
# New inputs go to BUILD_DIR/corpus/NAME (never the committed corpus);
# crashes, hangs, leaks and out-of-memory inputs to BUILD_DIR/findings/NAME/;
# the log to BUILD_DIR/logs/NAME.log. An input slower than FUZZ_SLOW_S
# seconds (default 2) is kept as a slow-unit finding. Prints one summary line:
#   NAME execs=N exec/s=N cov=N ft=N corpus=N slowest_s=N findings=none|FILES
# Exit status: 0 when nothing was found, 1 otherwise.
set -uo pipefail
bin=$1 name=$2 seconds=$3 build=$4 corpus=$5 dict=$6 max_len=$7
shift 7
work="$build/corpus/$name" findings="$build/findings/$name" log="$build/logs/$name.log"
mkdir -p "$work" "$findings" "$build/logs"
args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$max_len"
      -print_final_stats=1 -artifact_prefix="$findings/" -report_slow_units="${FUZZ_SLOW_S:-2}")
[ -n "$dict" ] && args+=(-dict="$dict")
marker="$build/logs/$name.started"
touch "$marker"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
"$bin" "${args[@]}" "$@" "$work" "$corpus" >"$log" 2>&1
rc=$?
stat() { grep -o "^stat::$1: *[0-9]*" "$log" | tail -1 | grep -o '[0-9]*$'; }
last=$(grep -E '^#[0-9]+' "$log" | tail -1)
cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
# What this run wrote: crash-*, timeout-* (hangs), leak-*, oom-*, slow-unit-*.
new=$(find "$findings" -type f -newer "$marker" -printf '%f ' | sed 's/ $//')
found=none
if [ "$rc" -ne 0 ] || [ -n "$new" ]; then
  found="${new:-exit status $rc}"
fi
printf '%-22s execs=%s exec/s=%s cov=%s ft=%s corpus=%s slowest_s=%s findings=%s\n' "$name" \
  "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" "${cov:-?}" "${ft:-?}" "${corp:-?}" \
  "$(stat slowest_unit_time_sec)" "$found"
if [ "$found" != none ]; then
  echo "--- $log (last 40 lines)"
  tail -40 "$log"
  exit 1
fi
