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
for sub in "proxy" "audit verify" "audit query" "audit export" "audit checkpoint" "providers suspend" "providers resume" \
           "providers terminate" "providers agreement show" "providers agreement publish" "providers agreement acceptances"; do
  # shellcheck disable=SC2086
  check "$sub --help" "$agora" $sub --help >/dev/null
done
check "node --help documents --agreement" grep -q -- "--agreement" <<<"$("$agora" node --help)"
check "gateway --help lists conversation_ttl_ms" grep -q "conversation_ttl_ms" <<<"$("$agora" gateway --help)"
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

# ---- keys and providers (the database in a data directory)
data="$work/data"
help=$("$agora" --help)
for sub in keys providers; do
  check "--help lists $sub" grep -q "^  $sub" <<<"$help"
done
for sub in "keys create" "keys list" "keys revoke" "keys rotate" "providers register" "providers list" "providers revoke"; do
  # shellcheck disable=SC2086
  check "$sub --help documents --data-dir" grep -q -- "--data-dir" <<<"$("$agora" $sub --help)"
done

# create: the key alone on stdout, one line; the id on stderr; the database private.
"$agora" keys create --data-dir "$data" --name alice >"$work/key1.out" 2>"$work/key1.err"
key1=$(cat "$work/key1.out")
check "keys create prints one line" test "$(wc -l <"$work/key1.out")" -eq 1
check "keys create prints only the key" grep -Eqx 'gk_[0-9A-Za-z]{43}' "$work/key1.out"
check "keys create says the id on stderr" grep -Eq '^created API key key_[0-9A-Za-z]{16} \(alice\); it is shown only once$' "$work/key1.err"
id1=$(grep -Eo 'key_[0-9A-Za-z]{16}' "$work/key1.err")
check "database file is agora.db, mode 600" test "$(stat -c %a "$data/agora.db")" = 600
key2=$(AGORA_DATA_DIR="$data" "$agora" keys create --name "bob the builder" 2>/dev/null)
check "AGORA_DATA_DIR selects the data directory" grep -Eqx 'gk_[0-9A-Za-z]{43}' <<<"$key2"
check "two keys differ" test "$key1" != "$key2"
check "the key is not stored in the clear" bash -c '! cat "$1"/agora.db* | grep -aqF "$2"' _ "$data" "$key1"

list=$("$agora" keys list --data-dir "$data")
check "keys list: header" grep -Eq '^ID +NAME +KEY +ROLE +RPM +TPM +CONCURRENT +MODELS +CREATED +STATUS$' <<<"$list"
check "keys list: alice with prefix, defaults, UTC time, active" \
  grep -Eq "^$id1 +alice +${key1:0:7}… +client +default +default +default +all +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z +active$" <<<"$list"
check "the master secret exists, owner-only" test "$(stat -c %a "$data/master.key")" = 600
check "the database holds a keyed hash, not the SHA-256" \
  bash -c '! cat "$1"/agora.db* | grep -aqF "$(printf %s "$2" | sha256sum | cut -d" " -f1)"' _ "$data" "$key1"
check "keys list: bob" grep -q "bob the builder" <<<"$list"
check "keys list never shows a whole key" bash -c '! grep -qF -e "$1" -e "$2" <<<"$3"' _ "$key1" "$key2" "$list"
json=$("$agora" keys list --data-dir "$data" --json)
check "keys list --json: an array" grep -q '^\[{.*}\]$' <<<"$json"
check "keys list --json: fields" grep -q "\"id\":\"$id1\",\"name\":\"alice\",\"prefix\":\"${key1:0:7}\"" <<<"$json"
check "keys list --json: active" grep -q '"status":"active","revoked":null' <<<"$json"

# revoke by id, and by the full key
out=$("$agora" keys revoke --data-dir "$data" "$id1")
check "keys revoke by id" test "$out" = "revoked API key $id1 (alice)"
check "keys list shows the revocation" grep -Eq "^$id1 .* revoked at [0-9T:Z-]+$" <<<"$("$agora" keys list --data-dir "$data")"
out=$("$agora" keys revoke --data-dir "$data" "$id1")
check "revoking twice keeps the first time" grep -q "was already revoked at" <<<"$out"
out=$("$agora" keys revoke --data-dir "$data" "$key2")
check "keys revoke by the full key" grep -q "^revoked API key key_.* (bob the builder)$" <<<"$out"
check "keys list --json: revoked" test "$("$agora" keys list --data-dir "$data" --json | grep -o '"status":"revoked"' | wc -l)" -eq 2

# errors: clear message, exit 1, nothing echoed that should not be
set +e
unknown_key=$("$agora" keys create --data-dir "$work/other" --name x 2>/dev/null)
err=$("$agora" keys revoke --data-dir "$data" "$unknown_key" 2>&1); rc=$?
set -e
check "revoking an unknown key exits 1" test "$rc" -eq 1
check "revoking an unknown key says not_found" grep -q "^error: not_found: no API key matches the API key ${unknown_key:0:7}…$" <<<"$err"
check "the error does not echo the key" bash -c '! grep -qF "$1" <<<"$2"' _ "$unknown_key" "$err"
set +e
err=$("$agora" keys revoke --data-dir "$data" key_nope 2>&1); rc=$?
set -e
check "unknown key id exits 1 with not_found" bash -c '[ "$1" -eq 1 ] && grep -q "error: not_found" <<<"$2"' _ "$rc" "$err"
set +e
err=$("$agora" keys revoke --data-dir "$data" hello 2>&1); rc=$?
set -e
check "a malformed key exits 1 with invalid_argument" bash -c '[ "$1" -eq 1 ] && grep -q "error: invalid_argument" <<<"$2"' _ "$rc" "$err"
set +e
err=$("$agora" keys list --data-dir "$work/nowhere" 2>&1); rc=$?
set -e
check "keys list on a missing data dir exits 1" test "$rc" -eq 1
check "... says not_found" grep -q "error: not_found: no Agora database" <<<"$err"
check "... and creates nothing" test ! -e "$work/nowhere"
set +e
"$agora" keys create --data-dir "$data" >/dev/null 2>&1; rc=$?
set -e
check "keys create without --name is a usage error" test "$rc" -ne 0

# limits, expiry, models, admin tokens, rotation
key3=$("$agora" keys create --data-dir "$data" --name carol --rpm 60 --tpm none --max-concurrent 2 --expires 30d \
  --models tiny,other 2>/dev/null)
id3=$("$agora" keys list --data-dir "$data" --json | grep -o '"id":"key_[0-9A-Za-z]*","name":"carol"' | cut -d'"' -f4)
list=$("$agora" keys list --data-dir "$data")
check "keys list: limits and models" grep -Eq "^$id3 +carol +${key3:0:7}… +client +60 +none +2 +tiny,other +[0-9T:Z-]+ +active until [0-9T:Z-]+$" <<<"$list"
json=$("$agora" keys list --data-dir "$data" --json)
check "keys list --json: limits" grep -q '"limits":{"rpm":60,"tpm":null,"max_concurrent":2},"models":\["tiny","other"\]' <<<"$json"
admin=$("$agora" keys create --data-dir "$data" --name ops --admin 2>"$work/admin.err")
check "an admin token is at_…" grep -Eqx 'at_[0-9A-Za-z]{43}' <<<"$admin"
check "... and says so" grep -q "^created admin token key_" "$work/admin.err"
new3=$("$agora" keys rotate --data-dir "$data" "$key3" --grace 2h 2>"$work/rotate.err")
check "keys rotate prints only the new key" grep -Eqx 'gk_[0-9A-Za-z]{43}' <<<"$new3"
check "... a different one" test "$new3" != "$key3"
check "... and when the old one stops" grep -Eq "^rotated $id3 to key_[0-9A-Za-z]{16} \(carol\); .*the old key works until [0-9T:Z-]+$" "$work/rotate.err"
list=$("$agora" keys list --data-dir "$data")
check "keys list: the rotated key" grep -Eq "^$id3 .* rotated to key_[0-9A-Za-z]{16}, works until [0-9T:Z-]+$" <<<"$list"
check "keys list: the successor keeps limits and models" grep -Eq "^key_[0-9A-Za-z]{16} +carol +${new3:0:7}… +client +60 +none +2 +tiny,other " <<<"$list"
set +e
err=$("$agora" keys rotate --data-dir "$data" "$id3" 2>&1); rc=$?
set -e
check "rotating a rotated key exits 1 naming its successor" bash -c '[ "$1" -eq 1 ] && grep -q "already rotated to key_" <<<"$2"' _ "$rc" "$err"
for bad in "--rpm 0" "--rpm ten" "--expires 3y" "--models a,,"; do
  set +e
  # shellcheck disable=SC2086
  err=$("$agora" keys create --data-dir "$data" --name bad $bad 2>&1); rc=$?
  set -e
  if [ "$bad" = "--models a,," ]; then
    check "keys create $bad ignores empty items" test "$rc" -eq 0
  else
    check "keys create $bad exits 1 with invalid_argument" bash -c '[ "$1" -eq 1 ] && grep -q "error: invalid_argument" <<<"$2"' _ "$rc" "$err"
  fi
done
mv "$data/master.key" "$work/master.key"
set +e
err=$("$agora" keys revoke --data-dir "$data" "$key3" 2>&1); rc=$?
set -e
check "without the master secret a key cannot be looked up" bash -c '[ "$1" -eq 1 ] && grep -q "no master secret at" <<<"$2"' _ "$rc" "$err"
out=$("$agora" keys revoke --data-dir "$data" --master-key "$work/master.key" "$key3")
check "--master-key points elsewhere" grep -q "^revoked API key $id3 (carol)$" <<<"$out"
mv "$work/master.key" "$data/master.key"

# providers
"$agora" providers register --data-dir "$data" --name acme >"$work/tok.out" 2>"$work/tok.err"
token=$(cat "$work/tok.out")
check "providers register prints one line" test "$(wc -l <"$work/tok.out")" -eq 1
check "providers register prints only the token" grep -Eqx 'pt_[0-9A-Za-z]{43}' "$work/tok.out"
check "providers register says the id on stderr" grep -Eq '^registered provider prov_[0-9A-Za-z]{16} \(acme\)' "$work/tok.err"
prov=$(grep -Eo 'prov_[0-9A-Za-z]{16}' "$work/tok.err")
"$agora" providers register --data-dir "$data" --name globex >/dev/null 2>&1
set +e
err=$("$agora" providers register --data-dir "$data" --name acme 2>&1 >/dev/null); rc=$?
set -e
check "a duplicate provider name exits 1" test "$rc" -eq 1
check "... and says so" grep -q "error: invalid_argument: .*named 'acme' already exists" <<<"$err"
list=$("$agora" providers list --data-dir "$data")
check "providers list: acme" grep -Eq "^$prov +acme +${token:0:7}… +[0-9T:Z-]+ +active$" <<<"$list"
check "providers list: no nodes yet" grep -q "^    no connected nodes$" <<<"$list"
check "providers list: one header for both providers" test "$(grep -c '^ID ' <<<"$list")" -eq 1
check "providers list: globex" grep -Eq "^prov_[0-9A-Za-z]{16} +globex +pt_" <<<"$list"
json=$("$agora" providers list --data-dir "$data" --json)
check "providers list --json: nodes array" grep -q "\"id\":\"$prov\",\"name\":\"acme\".*\"nodes\":\[\]" <<<"$json"

# Connected nodes, as a gateway would have written them (sqlite3 comes with
# scripts/setup).
sql() { sqlite3 "$data/agora.db" "$1"; }
now_ms=$(($(date +%s) * 1000))
models='[{"name":"tiny","sha256":"ab","quantization":"q8_0","slots":4,"busy":1}]'
if sql "INSERT INTO nodes VALUES ('node-fresh','$prov','eu-west','agora/0.1.0','$models',4,1,$((now_ms - 60000)),$now_ms,'$(printf 'ab%.0s' {1..32})','{\"level\":\"confidential\",\"kind\":\"nvidia_cc\",\"status\":\"verified\",\"expires_ms\":1800000000000}'),
                                ('node-old','$prov','us-east','agora/0.1.0','[]',2,0,$((now_ms - 600000)),$((now_ms - 30000)),'','')"; then
  list=$("$agora" providers list --data-dir "$data")
  check "providers list: a node with its models" grep -Eq "^    node-fresh +eu-west +agora/0.1.0 +abababababababab… +tiny q8_0 \(1/4 busy\) +none +confidential \(nvidia_cc, expires 2027-01-15T08:00:00Z\) +[0-9T:Z-]+ +[0-9] s ago$" <<<"$list"
  check "providers list: a node without attestation is standard" grep -Eq "^    node-old +us-east .* standard +[0-9T:Z-]+ " <<<"$list"
  check "providers list: an old report is stale" grep -Eq "^    node-old +us-east .* 3[0-9] s ago \(stale\)$" <<<"$list"
  json=$("$agora" providers list --data-dir "$data" --json)
  check "providers list --json: node fields" grep -q '"node_id":"node-fresh","region":"eu-west","agent":"agora/0.1.0","identity_key":"abab[ab]*","models":\[{"name":"tiny"' <<<"$json"
  check "providers list --json: stale flag" grep -q '"node_id":"node-old".*"stale":true' <<<"$json"
  check "providers list --json: the attestation" grep -q '"node_id":"node-fresh".*"attestation":{"level":"confidential","kind":"nvidia_cc","status":"verified","expires_ms":1800000000000}' <<<"$json"
else
  check "writing a node snapshot with sqlite3" false
fi

out=$("$agora" providers revoke --data-dir "$data" acme)
check "providers revoke by name" test "$out" = "revoked provider $prov (acme)"
check "providers list shows the revocation" grep -Eq "^$prov +acme .* revoked at [0-9T:Z-]+$" <<<"$("$agora" providers list --data-dir "$data")"
set +e
err=$("$agora" providers revoke --data-dir "$data" initech 2>&1); rc=$?
set -e
check "revoking an unknown provider exits 1 with not_found" bash -c '[ "$1" -eq 1 ] && grep -q "^error: not_found: no provider matches '"'"'initech'"'"'$" <<<"$2"' _ "$rc" "$err"

# Suspend, resume, terminate: each says what it did; terminated is final.
gprov=$(sql "SELECT id FROM providers WHERE name = 'globex'")
out=$("$agora" providers suspend --data-dir "$data" globex)
check "providers suspend says so" grep -q "^suspended provider $gprov (globex): its nodes stay connected but get no new jobs" <<<"$out"
check "providers list shows the suspension" grep -Eq "^$gprov +globex .* suspended since [0-9T:Z-]+$" <<<"$("$agora" providers list --data-dir "$data")"
check "providers resume" grep -q "^resumed provider $gprov (globex)" <<<"$("$agora" providers resume --data-dir "$data" globex)"
out=$("$agora" providers terminate --data-dir "$data" globex)
check "providers terminate records the forfeiture" grep -q "^terminated provider $gprov (globex): token revoked, nodes disconnected; forfeited earnings recorded in the audit trail (0 jobs, 0 completion tokens)$" <<<"$out"
set +e
err=$("$agora" providers resume --data-dir "$data" globex 2>&1); rc=$?
set -e
check "a terminated provider cannot be resumed" bash -c '[ "$1" -eq 1 ] && grep -q "terminated (final)" <<<"$2"' _ "$rc" "$err"

# The agreement: none is published before a gateway starts; publishing
# needs a higher version; show prints the document as published.
set +e
err=$("$agora" providers agreement show --data-dir "$data" 2>&1); rc=$?
set -e
check "agreement show before any gateway: not_found" bash -c '[ "$1" -eq 1 ] && grep -q "no agreement is published yet" <<<"$2"' _ "$rc" "$err"
sed 's/^Version: 1$/Version: 3/' "$(dirname "$0")/../../docs/PROVIDER_AGREEMENT.md" >"$work/agreement-v3.md"
check "agreement publish" grep -q "^published agreement version 3 (sha256 $(sha256sum "$work/agreement-v3.md" | cut -d' ' -f1))" \
  <<<"$("$agora" providers agreement publish --data-dir "$data" --file "$work/agreement-v3.md")"
check "agreement show prints the document byte for byte" cmp -s "$work/agreement-v3.md" <("$agora" providers agreement show --data-dir "$data" 2>/dev/null)
set +e
err=$("$agora" providers agreement publish --data-dir "$data" --file "$work/agreement-v3.md" 2>&1); rc=$?
set -e
check "publishing the same version again exits 1" bash -c '[ "$1" -eq 1 ] && grep -q "not above the current version 3" <<<"$2"' _ "$rc" "$err"
printf 'no version line\n' >"$work/bad-agreement.md"
set +e
err=$("$agora" providers agreement publish --data-dir "$data" --file "$work/bad-agreement.md" 2>&1); rc=$?
set -e
check "an agreement without a Version line is refused" bash -c '[ "$1" -eq 1 ] && grep -q "no \"Version: N\" line" <<<"$2"' _ "$rc" "$err"

# The audit trail: every change above is in it, chained and signed; a
# changed byte makes verify exit 1 naming the entry.
out=$("$agora" audit verify --data-dir "$data")
check "audit verify: intact" grep -q "^audit trail intact: [0-9]* entries" <<<"$out"
check "audit query --provider" test "$("$agora" audit query --data-dir "$data" --provider "$gprov" | grep -c '"provider_id":"'"$gprov"'"')" -eq 4
check "audit query --kind provider.terminated" grep -q '"kind":"provider.terminated".*"forfeited":{"jobs":0' <<<"$("$agora" audit query --data-dir "$data" --kind provider.terminated)"
check "audit query --since 1h finds entries" test -n "$("$agora" audit query --data-dir "$data" --since 1h --limit 1)"
check "audit query --until the epoch finds none" test -z "$("$agora" audit query --data-dir "$data" --until 1970-01-01T00:00:01Z)"
"$agora" audit export --data-dir "$data" --out "$work/audit.jsonl" 2>/dev/null
check "audit export: entries and checkpoints" bash -c 'grep -q "^{\"seq\":1,\"prev_hash\":\"0\{64\}\",\"hash\":" "$1" && grep -q "^{\"checkpoint\":" "$1"' _ "$work/audit.jsonl"
h1=$(sql "SELECT hash FROM audit_log WHERE seq = 1")
check "audit verify --expect: a matching anchor passes" "$agora" audit verify --data-dir "$data" --expect "1:$h1"
set +e
out=$("$agora" audit verify --data-dir "$data" --expect "1:$(printf '0%.0s' {1..64})"); rc=$?
set -e
check "audit verify --expect: a differing anchor exits 1" bash -c '[ "$1" -eq 1 ] && grep -q "differs from the anchor" <<<"$2"' _ "$rc" "$out"
sql "UPDATE audit_log SET entry = replace(entry, 'globex', 'globox') WHERE seq = (SELECT MIN(seq) FROM audit_log WHERE entry LIKE '%globex%')"
tampered=$(sql "SELECT MIN(seq) FROM audit_log WHERE entry LIKE '%globox%'")
set +e
out=$("$agora" audit verify --data-dir "$data"); rc=$?
set -e
check "audit verify: a modified entry exits 1 and is named" bash -c '[ "$1" -eq 1 ] && grep -q "^TAMPERED: entry $3 was modified" <<<"$2"' _ "$rc" "$out" "$tampered"

if [ "$failures" -ne 0 ]; then echo "$failures check(s) failed"; exit 1; fi
echo "all CLI checks passed"
