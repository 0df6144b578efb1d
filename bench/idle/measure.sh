#!/usr/bin/env bash
# Gateway memory per idle node connection (bench/idle/README.md).
#
# For each count: a fresh gateway (temp data dir, port 0), one warm-up node
# connection (so OpenSSL's and the allocator's one-time set-up is not
# counted), the gateway's memory read, COUNT idle nodes opened with
# agora-idle-nodes, the gateway polled until it reports them all (its
# agora_nodes_connected gauge), its memory read again. Per connection =
# (after - before) / welcomed, for VmRSS (bytes_per_connection) and for the
# private dirty and anonymous pages of /proc/PID/smaps_rollup.
#
# usage: measure.sh --agora BIN --tool BIN [--count N|max | --counts N,N,...]
#                   [--concurrency C] [--wrap 'heaptrack -o FILE'] [--json] [--keep]
#        measure.sh --smoke --agora BIN --tool BIN
#   --count max  as many as RLIMIT_NOFILE allows (both processes hold one
#                descriptor per connection), less a margin
#   --smoke      200 connections; asserts every one is welcomed and reported by
#                the gateway; memory is printed, never asserted (ctest
#                bench.idle_smoke)
#   --wrap       runs the gateway under a command (a profiler); memory is
#                still read from the gateway's own pid (its gateway.json)
#   --json       one JSON line per count on stdout
# (--idle is accepted for --tool.) File limits are raised here (ulimit -n to
# the hard limit, for this script's children only), never system-wide; the
# gateway raises its own soft limit too. Connections past the limit fail as
# fd_limit in the tool's report.
# Exit status: 0 when every connection of every count was welcomed.
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

agora="" tool="" counts="1000,10000" concurrency=128 wrap="" json=0 keep=0 smoke=0
while (($#)); do
  case $1 in
    --agora) agora=$2; shift 2 ;;
    --tool | --idle) tool=$2; shift 2 ;;
    --counts | --count) counts=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --wrap) wrap=$2; shift 2 ;;
    --json) json=1; shift ;;
    --keep) keep=1; shift ;;
    --smoke) smoke=1; counts=200; shift ;;
    *) echo "measure.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ -x $agora && -x $tool ]] || { echo "usage: measure.sh --agora BIN --tool BIN [--count N|max]" >&2; exit 2; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_limit=$(ulimit -n)
fd_hard=$(ulimit -Hn)

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if ((keep)); then echo "measure.sh: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/*/*.log; do
    [[ -f $f ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
  done
  exit 1
}


# kB of a field of /proc/PID/status or /proc/PID/smaps_rollup.
kb() { awk -v k="$2:" '$1 == k { print $2; exit }' "$1"; }
read_mem() {  # pid -> "rss private_dirty anonymous" (kB)
  echo "$(kb "/proc/$1/status" VmRSS) $(kb "/proc/$1/smaps_rollup" Private_Dirty) $(kb "/proc/$1/smaps_rollup" Anonymous)"
}

nodes_connected() {  # -> the gateway's agora_nodes_connected gauge
  curl -s --max-time 5 --cacert "$ca" "https://127.0.0.1:$port/metrics" |
    awk '$1 == "agora_nodes_connected" { print $2; exit }'
}
# The gateway reports $1 nodes. At its file limit it cannot accept the
# /metrics request: then its open sockets are counted instead (at least $1).
gateway_reports() {
  local n
  n=$(nodes_connected)
  if [[ -z $n && -n ${gw_pid:-} ]]; then
    n=$(find "/proc/$gw_pid/fd" -mindepth 1 -maxdepth 1 -lname 'socket:*' 2>/dev/null | wc -l)
    ((n >= $1)) && { counted_sockets=1; return 0; }
    return 1
  fi
  [[ $n == "$1" ]]
}
has_line() { grep -q "$2" "$1" 2>/dev/null; }
field() { grep -o "\"$1\":[0-9.]*" <<<"$2" | head -n 1 | cut -d: -f2; }

all_welcomed=1

# One measurement at $1 connections ("max": what the file limit allows);
# prints its result line.
measure() {
  local requested=$1 note=""
  local count=$requested
  if [[ $requested == max ]]; then
    [[ $fd_limit != unlimited ]] || fail "--count max needs a finite RLIMIT_NOFILE"
    count=$((fd_limit - 100))
    note="max for RLIMIT_NOFILE $fd_limit"
  elif [[ $fd_limit != unlimited ]] && ((count + 64 > fd_limit)); then
    note="more than RLIMIT_NOFILE $fd_limit (hard $fd_hard) allows: the excess fails as fd_limit"
    echo "measure.sh: note: $count connections: $note" >&2
  fi
  local dir="$work/run-$count"
  mkdir -p "$dir/data"
  local data="$dir/data"
  local token
  token=$("$agora" providers register --data-dir "$data" --name idle 2>/dev/null)
  [[ $token == pt_* ]] || fail "providers register printed '$token'"

  # Room for the nodes, the warm-up node and a few HTTP connections.
  local max_conn=$((count + 1000))
  # shellcheck disable=SC2086
  $wrap "$agora" gateway --data-dir "$data" --listen 127.0.0.1:0 --set "max_connections=$max_conn" \
    >"$dir/gateway.log" 2>&1 &
  local gw_job=$!
  pids+=("$gw_job")
  wait_for 30 test -s "$data/gateway.json" || fail "the gateway wrote no gateway.json"
  port=$(sed -n 's/.*"base_url":"https:\/\/[^"]*:\([0-9][0-9]*\)".*/\1/p' "$data/gateway.json")
  gw_pid=$(sed -n 's/.*"pid":\([0-9][0-9]*\).*/\1/p' "$data/gateway.json")
  counted_sockets=0
  ca="$data/tls/ca.pem"
  [[ -n $port && -n $gw_pid ]] || fail "no port or pid in $(cat "$data/gateway.json")"
  local url="wss://127.0.0.1:$port/v1/node"

  # Warm-up: one node in and out (TLS, WebSocket, router and store paths).
  "$tool" --url "$url" --token "$token" --ca-cert "$ca" --count 1 --hold 0 --node-prefix warm- \
    >"$dir/warmup.out" 2>"$dir/warmup.log" || fail "the warm-up node was not welcomed"
  wait_for 30 gateway_reports 0 || fail "the gateway still reports $(nodes_connected) nodes after the warm-up"

  local before after
  before=$(read_mem "$gw_pid")
  "$tool" --url "$url" --token "$token" --ca-cert "$ca" --count "$count" --concurrency "$concurrency" \
    --json >"$dir/idle.out" 2>"$dir/idle.log" &
  local tool_pid=$!
  pids+=("$tool_pid")
  # Set-up ends (each connection welcomed or failed), then the gateway must
  # report every welcomed one.
  local limit=$((120 + count / 20))
  wait_for "$limit" has_line "$dir/idle.out" '"phase":"connected"' ||
    fail "agora-idle-nodes did not finish its set-up within $limit s"
  local summary welcomed failed setup
  summary=$(grep '"phase":"connected"' "$dir/idle.out")
  welcomed=$(field welcomed "$summary")
  failed=$(field failed "$summary")
  setup=$(field setup_ms "$summary")
  wait_for 60 gateway_reports "$welcomed" ||
    fail "the gateway reports $(nodes_connected) nodes, the tool $welcomed"
  after=$(read_mem "$gw_pid")
  local gw_fds
  gw_fds=$(find "/proc/$gw_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)

  kill -TERM "$tool_pid" 2>/dev/null || true
  wait "$tool_pid" 2>/dev/null || true
  kill -TERM "$gw_pid" 2>/dev/null || true
  wait "$gw_job" 2>/dev/null || true

  local rss0 pd0 an0 rss1 pd1 an1
  read -r rss0 pd0 an0 <<<"$before"
  read -r rss1 pd1 an1 <<<"$after"
  local n=$((welcomed > 0 ? welcomed : 1))
  local per_rss=$(((rss1 - rss0) * 1024 / n)) per_pd=$(((pd1 - pd0) * 1024 / n)) per_an=$(((an1 - an0) * 1024 / n))
  if ((counted_sockets)); then
    note="${note:+$note; }the gateway was at its file limit (/metrics unreachable): its sockets were counted"
  fi
  if ((failed > 0)); then
    local examples
    examples=$(grep -o '"error_examples":{[^}]*}' <<<"$summary" | sed 's/"/'"'"'/g')
    note="${note:+$note; }$failed failed: ${examples#\'error_examples\':}"
  fi
  if ((json)); then
    printf '{"requested":%s,"count":%s,"welcomed":%s,"failed":%s,"setup_ms":%s,' \
      "$count" "$count" "$welcomed" "$failed" "$setup"
    printf '"rss_before_kb":%s,"rss_after_kb":%s,"bytes_per_connection":%s,' "$rss0" "$rss1" "$per_rss"
    printf '"private_dirty_kb":[%s,%s],"anonymous_kb":[%s,%s],' "$pd0" "$pd1" "$an0" "$an1"
    printf '"bytes_per_connection_private_dirty":%s,"bytes_per_connection_anonymous":%s,' "$per_pd" "$per_an"
    printf '"gateway_fds":%s,"fd_limit":"%s","fd_hard_limit":"%s","concurrency":%s,"note":"%s","tool":%s}\n' \
      "$gw_fds" "$fd_limit" "$fd_hard" "$concurrency" "$note" "$summary"
  else
    printf '%7s conns: welcomed %s failed %s (set-up %s ms)  VmRSS %s -> %s kB  ' "$count" "$welcomed" "$failed" \
      "$setup" "$rss0" "$rss1"
    printf 'per connection: RSS %s B, Private_Dirty %s B, Anonymous %s B\n' "$per_rss" "$per_pd" "$per_an"
    [[ -z $note ]] || echo "  note: $note"
  fi
  if ((welcomed != count)); then
    all_welcomed=0
    ((smoke == 0)) || fail "smoke: $welcomed of $count welcomed: $summary"
  fi
  if ((keep == 0)); then rm -rf "$dir"; fi
}

IFS=, read -r -a list <<<"$counts"
for c in "${list[@]}"; do measure "$c"; done
if ((smoke)); then echo "PASS"; fi
((all_welcomed)) || exit 1
