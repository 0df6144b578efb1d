# Shell helpers of the benchmark smoke scripts; source it. Each script keeps
# its own fail() (what logs to show) and cleanup; check_load_summary calls
# that fail().

# wait_for SECONDS CMD...: runs CMD every 0.1 s until it succeeds; returns 1
# when SECONDS pass first.
wait_for() {
  local limit=$1; shift
  local deadline=$((SECONDS + limit))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# json_field NAME JSON: the first integer value of "NAME" in agora-load's JSON.
json_field() { grep -o "\"$1\":[0-9]*" <<<"$2" | head -n 1 | cut -d: -f2; }

# check_load_summary LABEL EXPECTED JSON: agora-load sent EXPECTED requests,
# all OK, no errors.
check_load_summary() {
  local label=$1 expected=$2 summary=$3
  echo "$label: $summary"
  local sent ok errors
  sent=$(json_field sent "$summary")
  ok=$(json_field ok "$summary")
  errors=$(json_field errors "$summary")
  [[ $sent == "$expected" ]] || fail "$label: sent $sent, expected $expected"
  [[ $ok == "$sent" ]] || fail "$label: ok $ok != sent $sent"
  [[ $errors == 0 ]] || fail "$label: $errors errors"
}

# port_in LOG: the port of a "... listening on http://127.0.0.1:PORT" line.
port_in() { sed -n 's/.* listening on http:\/\/127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$1" | head -n 1; }
has_port() { [[ -n $(port_in "$1") ]]; }
