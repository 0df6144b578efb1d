#!/usr/bin/env bash
# Smoke test of agora-mock-openai (ctest bench.mock_upstream_smoke): agora-load
# straight at the mock, non-streaming and streaming, and max_tokens below
# --tokens; asserts ok == sent and the content chunk counts. No timing asserted.
#
# usage: smoke_test.sh AGORA_MOCK_OPENAI AGORA_LOAD
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

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
wait_for 10 has_port "$work/mock.log" || fail "agora-mock-openai printed no port"
port=$(port_in "$work/mock.log")
common=(--url "http://127.0.0.1:$port/v1/chat/completions" --model fake --json --connections 8)

# run LABEL N EXPECTED_CHUNKS ARGS...: N requests, all ok, the chunk count.
run() {
  local label=$1 n=$2 chunks=$3; shift 3
  local out
  out=$("$load" "${common[@]}" --rate 1000 --requests "$n" "$@") || true
  check_load_summary "$label" "$n" "$out"
  if [[ $chunks != - ]]; then
    [[ $(json_field chunks "$out") == "$chunks" ]] || fail "$label: $(json_field chunks "$out") chunks, expected $chunks"
  fi
}

run "non-streaming" 200 - --max-tokens 16
run "streaming" 100 1600 --stream --max-tokens 16
run "streaming, max_tokens 4" 50 200 --stream --max-tokens 4
run "streaming, more max_tokens than --tokens" 50 800 --stream --max-tokens 64
echo "PASS"
