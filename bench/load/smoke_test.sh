#!/usr/bin/env bash
# Smoke mode of agora-load (ctest bench.load_smoke): a real gateway over TLS, a
# fake-engine node over WSS, then 300 non-streaming requests at 500/s and 200
# streaming ones; asserts ok == sent and no errors. Timings are never asserted.
#
# usage: smoke_test.sh AGORA_BINARY AGORA_LOAD_BINARY
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

agora=${1:?usage: smoke_test.sh AGORA AGORA_LOAD}
load=${2:?usage: smoke_test.sh AGORA AGORA_LOAD}

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/*.log; do
    [[ -f $f ]] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }
  done
  exit 1
}


data="$work/data"
mkdir -p "$data"
token=$("$agora" providers register --data-dir "$data" --name p 2>/dev/null)
key=$("$agora" keys create --data-dir "$data" --name k --rpm none --tpm none --max-concurrent none 2>/dev/null)
[[ $token == pt_* ]] || fail "providers register printed '$token'"
[[ $key == gk_* ]] || fail "keys create printed '$key'"

"$agora" gateway --data-dir "$data" --listen 127.0.0.1:0 >"$work/gateway.log" 2>&1 &
pids+=($!)
wait_for 20 test -s "$data/gateway.json" || fail "the gateway wrote no gateway.json"
port=$(sed -n 's/.*"base_url":"https:\/\/[^"]*:\([0-9][0-9]*\)".*/\1/p' "$data/gateway.json")
[[ -n $port ]] || fail "no port in $(cat "$data/gateway.json")"
ca="$data/tls/ca.pem"

"$agora" node --gateway "wss://127.0.0.1:$port" --token "$token" --ca-cert "$ca" \
  --engine fake --fake name=fake,tokens=4,slots=64 >"$work/node.log" 2>&1 &
pids+=($!)

url="https://127.0.0.1:$port/v1/chat/completions"
common=(--url "$url" --api-key "$key" --ca-cert "$ca" --model fake --max-tokens 4 --json)

# Ready when one request succeeds end to end (the node has registered).
wait_for 20 "$load" "${common[@]}" --requests 1 --rate 10 --timeout 5 >/dev/null 2>&1 ||
  fail "no successful request within 20 s"


out=$("$load" "${common[@]}" --rate 500 --requests 300 --connections 16) || true
check_load_summary "non-streaming" 300 "$out"

out=$("$load" "${common[@]}" --stream --rate 500 --requests 200 --connections 16) || true
check_load_summary "streaming" 200 "$out"
chunks=$(json_field chunks "$out")
[[ $chunks -gt 0 ]] || fail "streaming: no content chunks counted"
ttft=$(grep -o '"ttft_ms":{"count":[0-9]*' <<<"$out" | grep -o '[0-9]*$')
[[ $ttft == 200 ]] || fail "streaming: $ttft TTFT samples, expected 200"

echo "PASS"
