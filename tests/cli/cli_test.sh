#!/usr/bin/env bash
# Runs the agora binary as a user would and checks what it prints and returns.
set -euo pipefail
agora=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
failures=0
check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; failures=$((failures + 1)); fi
}

# --help is complete on every subcommand.
help=$("$agora" --help)
for sub in model bench up; do
  check "--help lists $sub" grep -q "^  $sub" <<<"$help"
done
for sub in "model synth" "model info" "model run" "bench engine" "up"; do
  # shellcheck disable=SC2086
  check "$sub --help" "$agora" $sub --help >/dev/null
done
check "synth --help documents --quant" grep -q -- "--quant" <<<"$("$agora" model synth --help)"

# Synthesis prints the path on stdout, and is reproducible.
out=$("$agora" model synth --preset tiny --out "$work/a.gguf" --seed 3 2>/dev/null)
check "synth prints the path" test "$out" = "$work/a.gguf"
"$agora" model synth --preset tiny --out "$work/b.gguf" --seed 3 >/dev/null 2>&1
check "same seed, same bytes" cmp -s "$work/a.gguf" "$work/b.gguf"

# info
json=$("$agora" model info --json "$work/a.gguf")
check "info --json: architecture" grep -q '"architecture":"llama"' <<<"$json"
check "info --json: sha256 matches sha256sum" grep -q "\"sha256\":\"$(sha256sum "$work/a.gguf" | cut -d' ' -f1)\"" <<<"$json"
check "info caches the digest" test -s "$work/a.gguf.sha256"

# run streams text and reports the finish reason
run_err=$("$agora" model run "$work/a.gguf" --prompt "hello" --max-tokens 6 --seed 1 2>&1 >/dev/null)
check "run reports length" grep -q "finish=length" <<<"$run_err"
check "run counts tokens" grep -q "completion_tokens=6" <<<"$run_err"

# Bad input: clear message, non-zero exit, no crash.
set +e
err=$("$agora" model info "$work/missing.gguf" 2>&1); rc=$?
set -e
check "missing model exits 1" test "$rc" -eq 1
check "missing model says not_found" grep -q "error: not_found" <<<"$err"
printf 'GGUFjunkjunkjunk' >"$work/junk.gguf"
set +e
err=$("$agora" model run "$work/junk.gguf" --prompt hi 2>&1); rc=$?
set -e
check "corrupt model exits 1" test "$rc" -eq 1
check "corrupt model says corrupt" grep -q "error: corrupt" <<<"$err"
set +e
"$agora" model synth --preset nope --out "$work/x.gguf" >/dev/null 2>&1; rc=$?
set -e
check "unknown preset is a usage error" test "$rc" -ne 0

if [ "$failures" -ne 0 ]; then echo "$failures check(s) failed"; exit 1; fi
echo "all CLI checks passed"
