// `agora audit verify | query | export | checkpoint`: the tamper-evident
// audit trail in DATA_DIR/agora.db (format and guarantees: store/audit.h,
// docs/SECURITY.md). Entries hold metadata only — never prompts or
// responses — so exporting them is safe.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/store_access.h"
#include "common/file.h"
#include "crypto/ed25519.h"
#include "store/audit.h"
#include "store/credentials.h"

namespace agora::cli {
namespace {

namespace json = boost::json;

struct VerifyArgs {
  std::string data_dir;
  std::string master_key;
  std::string public_key;
  std::vector<std::string> expect;  // SEQ:HASH
  bool json = false;
};

struct QueryArgs {
  std::string data_dir;
  std::string provider, key, kind, since, until;
  size_t limit = 0;
};

struct ExportArgs {
  std::string data_dir;
  std::string out;
};

struct CheckpointArgs {
  std::string data_dir;
  std::string master_key;
};

// "2026-12-01T07:00:00Z" (optionally with .mmm), a Unix time in
// milliseconds, or a duration ago ("90m", "24h", "7d").
int64_t parse_time(const std::string& flag, const std::string& text) {
  if (auto d = store::parse_duration_ms(text)) return now_ms() - *d;
  int64_t ms = 0;
  if (auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
      ec == std::errc{} && p == text.data() + text.size()) {
    return ms;
  }
  std::tm tm{};
  int frac = 0;
  char z = 0;
  int n = std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                      &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &frac, &z);
  if (n != 8) {
    frac = 0;
    n = std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                    &tm.tm_min, &tm.tm_sec, &z);
    if (n != 7) z = 0;
  }
  if (z != 'Z') {
    fail("invalid_argument: " + flag + " must be a UTC time like 2026-12-01T07:00:00Z, Unix milliseconds, or a "
         "duration ago like 24h (got '" + text + "')");
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm)) * 1000 + frac;
}

// The key checkpoints must be signed with: --public-key, else the one
// derived from the master secret.
std::string expected_public_key(const VerifyArgs& a) {
  if (!a.public_key.empty()) {
    auto raw = crypto::from_hex(a.public_key);
    if (!raw || raw->size() != 32) fail("invalid_argument: --public-key must be 64 hex characters (Ed25519)");
    return crypto::to_hex(*raw);
  }
  auto master = load_master(a.data_dir, a.master_key, /*create=*/false);
  auto signer = store::audit_signer(*master);
  if (!signer) fail(signer.error().to_string());
  return (*signer)->public_key_hex();
}

int run_verify(const VerifyArgs& a) {
  auto db = open_store(a.data_dir, /*create=*/false);
  const std::string public_key = expected_public_key(a);
  std::vector<store::AuditAnchor> anchors;
  for (const auto& e : a.expect) {
    const auto colon = e.find(':');
    store::AuditAnchor anchor;
    const char* end = e.data() + (colon == std::string::npos ? e.size() : colon);
    auto [p, ec] = std::from_chars(e.data(), end, anchor.seq);
    if (colon == std::string::npos || ec != std::errc{} || p != end || anchor.seq < 1 || e.size() - colon - 1 != 64) {
      fail("invalid_argument: --expect takes SEQ:HASH (an entry number and its 64-hex hash), got '" + e + "'");
    }
    anchor.hash = e.substr(colon + 1);
    anchors.push_back(std::move(anchor));
  }
  auto report = store::verify_audit(*db, public_key, anchors);
  if (!report) fail(report.error().to_string());
  const int64_t unsigned_tail = report->last_seq - report->last_signed_seq;
  if (a.json) {
    json::array problems;
    for (const auto& p : report->problems) problems.push_back(json::object{{"seq", p.seq}, {"message", p.message}});
    json::object o{{"ok", report->ok()},
                   {"entries", report->entries},
                   {"last_seq", report->last_seq},
                   {"checkpoints", report->checkpoints},
                   {"last_signed_seq", report->last_signed_seq},
                   {"unsigned_entries", unsigned_tail},
                   {"public_key", public_key},
                   {"problems", std::move(problems)}};
    std::printf("%s\n", json::serialize(o).c_str());
  } else {
    for (const auto& p : report->problems) std::printf("TAMPERED: %s\n", p.message.c_str());
    if (report->ok()) {
      std::printf("audit trail intact: %lld entries, %lld signed checkpoints (signed through entry %lld)\n",
                  static_cast<long long>(report->entries), static_cast<long long>(report->checkpoints),
                  static_cast<long long>(report->last_signed_seq));
    } else {
      std::printf("audit trail FAILED verification: %zu problem(s) in %lld entries\n", report->problems.size(),
                  static_cast<long long>(report->entries));
    }
    if (unsigned_tail > 0) {
      std::fprintf(stderr,
                   "note: the last %lld entries are chained but not yet covered by a checkpoint (the gateway signs "
                   "every audit_checkpoint_interval_ms and at shutdown; `agora audit checkpoint` signs now)\n",
                   static_cast<long long>(unsigned_tail));
    }
  }
  return report->ok() ? 0 : 1;
}

void run_query(const QueryArgs& a) {
  auto db = open_store(a.data_dir, /*create=*/false);
  store::AuditFilter f;
  if (!a.provider.empty()) f.provider_id = a.provider;
  if (!a.key.empty()) f.key_id = a.key;
  if (!a.kind.empty()) f.kind = a.kind;
  if (!a.since.empty()) f.since_ms = parse_time("--since", a.since);
  if (!a.until.empty()) f.until_ms = parse_time("--until", a.until);
  f.limit = a.limit;
  auto st = db->scan_audit(f, [](const store::AuditEntry& e) {
    std::fwrite(e.entry.data(), 1, e.entry.size(), stdout);
    std::fputc('\n', stdout);
    return true;
  });
  if (!st) fail(st.error().to_string());
}

// One JSON object per line: {"seq","prev_hash","hash","entry":{…}} for each
// entry, then {"checkpoint":{…}} for each checkpoint. `entry` re-serialised
// compactly is exactly the text that was hashed.
void run_export(const ExportArgs& a) {
  auto db = open_store(a.data_dir, /*create=*/false);
  std::FILE* out = stdout;
  std::string tmp;
  if (!a.out.empty() && a.out != "-") {
    tmp = a.out + ".part";
    out = std::fopen(tmp.c_str(), "w");
    if (!out) fail("io_error: cannot write " + tmp);
  }
  int64_t n = 0;
  auto st = db->scan_audit(store::AuditFilter{}, [&](const store::AuditEntry& e) {
    std::string line = "{\"seq\":" + std::to_string(e.seq) + ",\"prev_hash\":\"" + e.prev_hash + "\",\"hash\":\"" +
                       e.hash + "\",\"entry\":" + e.entry + "}\n";
    std::fwrite(line.data(), 1, line.size(), out);
    ++n;
    return true;
  });
  if (!st) fail(st.error().to_string());
  auto checkpoints = db->list_audit_checkpoints();
  if (!checkpoints) fail(checkpoints.error().to_string());
  for (const auto& c : *checkpoints) {
    json::object o{{"checkpoint", json::object{{"seq", c.seq},
                                               {"hash", c.hash},
                                               {"time_ms", c.time_ms},
                                               {"public_key", c.public_key},
                                               {"signature", c.signature}}}};
    std::string line = json::serialize(o) + "\n";
    std::fwrite(line.data(), 1, line.size(), out);
  }
  if (out != stdout) {
    const bool ok = std::fflush(out) == 0 && std::fclose(out) == 0;
    if (!ok || std::rename(tmp.c_str(), a.out.c_str()) != 0) fail("io_error: cannot write " + a.out);
    std::fprintf(stderr, "exported %lld entries and %zu checkpoints to %s\n", static_cast<long long>(n),
                 checkpoints->size(), a.out.c_str());
  }
}

void run_checkpoint(const CheckpointArgs& a) {
  auto db = open_store(a.data_dir, /*create=*/false);
  auto master = load_master(a.data_dir, a.master_key, /*create=*/false);
  auto signer = store::audit_signer(*master);
  if (!signer) fail(signer.error().to_string());
  auto c = store::checkpoint_audit(*db, **signer, now_ms());
  if (!c) fail(c.error().to_string());
  if (!*c) {
    std::printf("nothing to sign: the audit trail is empty or already signed to its end\n");
    return;
  }
  std::printf("signed the audit trail through entry %lld (hash %s, public key %s)\n",
              static_cast<long long>((*c)->seq), (*c)->hash.c_str(), (*c)->public_key.c_str());
}

}  // namespace

void add_audit_commands(CLI::App& app) {
  auto* audit = app.add_subcommand(
      "audit",
      "The tamper-evident audit trail (metadata only: job assignments, key and provider events; never prompts or "
      "responses): verify it, query it, export it, sign it");
  audit->require_subcommand(1);

  auto v = std::make_shared<VerifyArgs>();
  auto* verify = audit->add_subcommand(
      "verify",
      "Check every entry's hash chain and every signed checkpoint; names each modified, deleted, inserted or "
      "reordered entry. Exit status 1 when anything fails.");
  add_data_dir(verify, v->data_dir);
  add_master_key(verify, v->master_key);
  verify->add_option("--public-key", v->public_key,
                     "The gateway's audit public key (hex; `agora audit checkpoint` prints it) instead of deriving "
                     "it from the master secret");
  verify->add_option("--expect", v->expect,
                     "SEQ:HASH of an entry known from outside the database (repeatable): the gateway logs each "
                     "checkpoint as audit_checkpoint seq=… hash=…; catches a rewrite whose checkpoints were deleted "
                     "too");
  verify->add_flag("--json", v->json, "Print the report as one JSON object");
  verify->callback([v] {
    const int rc = run_verify(*v);
    std::fflush(stdout);
    if (rc != 0) std::exit(rc);
  });

  auto q = std::make_shared<QueryArgs>();
  auto* query = audit->add_subcommand(
      "query", "Print matching entries as JSON lines, oldest first (filters combine; none: every entry)");
  add_data_dir(query, q->data_dir);
  query->add_option("--provider", q->provider, "Only entries about this provider (prov_…)");
  query->add_option("--key", q->key, "Only entries about this API key (key_…)");
  query->add_option("--kind", q->kind,
                    "Only this kind: job, key.created, key.revoked, key.rotated, provider.registered, "
                    "provider.connected, provider.disconnected, provider.agreement_accepted, provider.suspended, "
                    "provider.resumed, provider.terminated, provider.revoked, provider.attested, "
                    "provider.attestation_failed, provider.attestation_expired, agreement.published");
  query->add_option("--since", q->since, "From this time: 2026-12-01T07:00:00Z, Unix ms, or a duration ago (24h)");
  query->add_option("--until", q->until, "Before this time (same forms)");
  query->add_option("--limit", q->limit, "At most this many entries (0: all)")->capture_default_str();
  query->callback([q] { run_query(*q); });

  auto e = std::make_shared<ExportArgs>();
  auto* exp = audit->add_subcommand(
      "export",
      "Write the whole trail as JSON lines — {seq, prev_hash, hash, entry} per entry, then the signed "
      "checkpoints — for archiving or checking elsewhere");
  add_data_dir(exp, e->data_dir);
  exp->add_option("--out", e->out, "File to write (atomically); default: stdout");
  exp->callback([e] { run_export(*e); });

  auto c = std::make_shared<CheckpointArgs>();
  auto* cp = audit->add_subcommand(
      "checkpoint", "Sign the end of the trail now (the gateway also does it periodically and at shutdown)");
  add_data_dir(cp, c->data_dir);
  add_master_key(cp, c->master_key);
  cp->callback([c] { run_checkpoint(*c); });
}

}  // namespace agora::cli
