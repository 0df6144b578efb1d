#!/usr/bin/env bash
# The Portkey peer run of the gateway-overhead benchmark: agora-mock-openai
# (the upstream) and Portkey's gateway, both on free loopback ports.
#
#   run.sh [options]          start both, print the URL, headers and an
#                             agora-load command line, serve until Ctrl-C
#   run.sh --smoke [options]  start both, run 200 non-streaming and 100
#                             streaming requests through Portkey with
#                             agora-load, assert ok == sent; exit 0 or 1
#
# options: --mock PATH   agora-mock-openai (default: build/bench/mock_upstream/)
#          --load PATH   agora-load (default: build/bench/load/); --smoke only
#          --tokens N    content chunks per answer (default 16)
# Needs Node >= 20 and `npm ci --prefix bench/peer/portkey` (README.md).
set -euo pipefail
# shellcheck source=../../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../lib.sh"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
mock="$repo/build/bench/mock_upstream/agora-mock-openai"
load="$repo/build/bench/load/agora-load"
tokens=16
smoke=0
while (($#)); do
  case $1 in
    --smoke) smoke=1 ;;
    --mock) mock=${2:?--mock PATH}; shift ;;
    --load) load=${2:?--load PATH}; shift ;;
    --tokens) tokens=${2:?--tokens N}; shift ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

portkey_js="$here/node_modules/@portkey-ai/gateway/build/start-server.js"
if [[ ! -f $portkey_js ]]; then
  echo "FAIL: Portkey is not installed ($portkey_js is missing)." >&2
  echo "      Install it once with: npm ci --prefix $here" >&2
  exit 1
fi
[[ -x $mock ]] || { echo "FAIL: no agora-mock-openai at $mock (build it, or pass --mock)" >&2; exit 1; }
if ((smoke)); then
  [[ -x $load ]] || { echo "FAIL: no agora-load at $load (build it, or pass --load)" >&2; exit 1; }
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/*.log; do
    [[ -f $f ]] && { echo "--- $f" >&2; tail -n 30 "$f" | tr '\r' '\n' >&2; }
  done
  exit 1
}



"$mock" --port 0 --tokens "$tokens" >"$work/mock.log" 2>&1 &
pids+=($!)
wait_for 10 has_port "$work/mock.log" || fail "agora-mock-openai printed no port"
mock_port=$(port_in "$work/mock.log")

# One Node process, as `npx @portkey-ai/gateway` runs it; listen_loopback.mjs
# binds it to 127.0.0.1 and prints the port.
node --import "$here/listen_loopback.mjs" "$portkey_js" --port=0 --headless >"$work/portkey.log" 2>&1 &
pids+=($!)
wait_for 20 has_port "$work/portkey.log" || fail "Portkey printed no port"
portkey_port=$(port_in "$work/portkey.log")

url="http://127.0.0.1:$portkey_port/v1/chat/completions"
headers=(--header "x-portkey-provider: openai"
         --header "x-portkey-custom-host: http://127.0.0.1:$mock_port/v1")
common=(--url "$url" --api-key unused "${headers[@]}" --model fake --max-tokens "$tokens" --json)

# Ready when one request succeeds end to end through Portkey.
wait_for 20 "$load" "${common[@]}" --requests 1 --rate 10 --timeout 5 >/dev/null 2>&1 ||
  fail "no successful request through Portkey within 20 s"

if ((!smoke)); then
  cat <<EOF
upstream  agora-mock-openai  http://127.0.0.1:$mock_port/v1  (pid ${pids[0]}, --tokens $tokens)
gateway   Portkey            $url  (pid ${pids[1]})
headers   x-portkey-provider: openai
          x-portkey-custom-host: http://127.0.0.1:$mock_port/v1
          Authorization: Bearer <anything>  (forwarded to the upstream, which ignores it)
e.g.      $load --url $url --api-key unused \\
            --header 'x-portkey-provider: openai' \\
            --header 'x-portkey-custom-host: http://127.0.0.1:$mock_port/v1' \\
            --model fake --max-tokens $tokens --rate 500 --duration 5 --connections 64 [--stream]
Ctrl-C stops both.
EOF
  wait -n "${pids[@]}" || true
  fail "a process exited"
fi


out=$("$load" "${common[@]}" --rate 200 --requests 200 --connections 16) || true
check_load_summary "non-streaming" 200 "$out"

out=$("$load" "${common[@]}" --stream --rate 100 --requests 100 --connections 16) || true
check_load_summary "streaming" 100 "$out"
chunks=$(json_field chunks "$out")
[[ $chunks == $((100 * tokens)) ]] || fail "streaming: $chunks content chunks, expected $((100 * tokens))"

echo "PASS"
