#!/usr/bin/env bash
# Runs one libFuzzer target: first every input of its corpora, then fresh
# fuzzing for SECONDS (at least 1). Used by ctest (label fuzz) and scripts/fuzz.
#   run_target.sh [--ctest] BINARY NAME SECONDS BUILD_DIR CORPUS DICT MAX_LEN [libFuzzer flags...]
# Campaign mode (scripts/fuzz): new inputs accumulate in BUILD_DIR/corpus/NAME
# (replayed by the next campaign), logs go to BUILD_DIR/logs/NAME.log.
# --ctest: only the committed CORPUS is replayed, new inputs go to a temporary
# directory, logs to BUILD_DIR/logs-ctest/, so `make test` costs the same
# whatever campaigns ran before. The committed corpus is never written.
# Crashes, hangs (-timeout), leaks, out-of-memory inputs and inputs slower than
# FUZZ_SLOW_S seconds (default 2; 10 under ctest) are kept as findings under
# BUILD_DIR/findings/NAME/. Prints one summary line:
#   NAME execs=N exec/s=N cov=N ft=N corpus=N slowest_s=N findings=none|FILES
# Exit status: 0 when nothing was found, 1 when something was, 2 on bad usage.
set -uo pipefail
ctest=0
if [ "${1:-}" = --ctest ]; then ctest=1; shift; fi
if [ $# -lt 7 ]; then sed -n '2,14p' "$0" >&2; exit 2; fi
bin=$1 name=$2 seconds=$3 build=$4 corpus=$5 dict=$6 max_len=$7
shift 7
case $seconds in '' | *[!0-9]* | 0) echo "run_target: SECONDS must be a positive integer, not '$seconds'" >&2; exit 2 ;; esac
findings="$build/findings/$name"
if ((ctest)); then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  logs="$build/logs-ctest" slow=${FUZZ_SLOW_S:-10}
else
  work="$build/corpus/$name" logs="$build/logs" slow=${FUZZ_SLOW_S:-2}
fi
log="$logs/$name.log" marker="$logs/$name.started"
mkdir -p "$work" "$findings" "$logs"
touch "$marker"
args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$max_len"
      -print_final_stats=1 -artifact_prefix="$findings/" -report_slow_units="$slow")
[ -n "$dict" ] && args+=(-dict="$dict")
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Readable stack traces (Debian's llvm-14 has no unversioned llvm-symbolizer).
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] && [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
  export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
fi
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
