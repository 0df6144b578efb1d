#!/usr/bin/env bash
# Smoke test of agora-mock-openai (ctest bench.mock_upstream_smoke): agora-load
# straight at the mock, non-streaming and streaming, and max_tokens below
# --tokens; asserts ok == sent and the content chunk counts. No timing asserted.
#
# usage: smoke_test.sh AGORA_MOCK_OPENAI AGORA_LOAD
set -euo pipefail

mock=${1:?usage: smoke_test.sh AGORA_MOCK_OPENAI AGORA_LOAD}
load=${2:?usage: smoke_test.sh AGORA_MOCK_OPENAI AGORA_LOAD}

work=$(mktemp -d)
pid=
cleanup() {
  [[ -n $pid ]] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  [[ -f $work/mock.log ]] && { echo "--- mock.log" >&2; tail -n 30 "$work/mock.log" >&2; }
  exit 1
}

"$mock" --port 0 --tokens 16 >"$work/mock.log" 2>&1 &
pid=$!
port=
for _ in $(seq 100); do  # bounded: 10 s
  port=$(sed -n 's/.* listening on http:\/\/127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$work/mock.log")
  [[ -n $port ]] && break
  sleep 0.1
done
[[ -n $port ]] || fail "agora-mock-openai printed no port"
common=(--url "http://127.0.0.1:$port/v1/chat/completions" --model fake --json --connections 8)

# field NAME JSON: the first integer value of "NAME".
field() { grep -o "\"$1\":[0-9]*" <<<"$2" | head -n 1 | cut -d: -f2; }

# run LABEL N EXPECTED_CHUNKS ARGS...: N requests, all ok, the chunk count.
run() {
  local label=$1 n=$2 chunks=$3; shift 3
  local out
  out=$("$load" "${common[@]}" --rate 1000 --requests "$n" "$@") || true
  echo "$label: $out"
  [[ $(field sent "$out") == "$n" ]] || fail "$label: sent $(field sent "$out"), expected $n"
  [[ $(field ok "$out") == "$n" ]] || fail "$label: ok $(field ok "$out") != $n"
  [[ $(field errors "$out") == 0 ]] || fail "$label: errors"
  if [[ $chunks != - ]]; then
    [[ $(field chunks "$out") == "$chunks" ]] || fail "$label: $(field chunks "$out") chunks, expected $chunks"
  fi
}

run "non-streaming" 200 - --max-tokens 16
run "streaming" 100 1600 --stream --max-tokens 16
run "streaming, max_tokens 4" 50 200 --stream --max-tokens 4
run "streaming, more max_tokens than --tokens" 50 800 --stream --max-tokens 64
echo "PASS"
