#include "store/audit.h"

#include <boost/json.hpp>

#include <map>

#include "common/json_text.h"
#include "crypto/ed25519.h"
#include "crypto/sha256.h"
#include "store/credentials.h"

namespace agora::store {
namespace json = boost::json;

// Written directly (not through a JSON DOM): the store writer makes one per
// job. `data_json` is already a serialised object (json::serialize or
// audit_event_for).
std::string audit_entry_text(int64_t seq, const AuditEvent& e) {
  std::string out;
  out.reserve(160 + e.data_json.size());
  out += "{\"seq\":";
  append_json_number(out, seq);
  out += ",\"time_ms\":";
  append_json_number(out, e.time_ms);
  out += ",\"time\":";
  append_json_string(out, iso_utc(e.time_ms));
  out += ",\"kind\":";
  append_json_string(out, e.kind);
  if (!e.key_id.empty()) {
    out += ",\"key_id\":";
    append_json_string(out, e.key_id);
  }
  if (!e.provider_id.empty()) {
    out += ",\"provider_id\":";
    append_json_string(out, e.provider_id);
  }
  out += ",\"data\":";
  out += e.data_json.empty() ? std::string_view("{}") : std::string_view(e.data_json);
  out += '}';
  return out;
}

std::string audit_hash(std::string_view prev_hash, std::string_view entry) {
  std::string buf;
  buf.reserve(prev_hash.size() + 1 + entry.size());
  buf.append(prev_hash);
  buf += '\n';
  buf.append(entry);
  return crypto::sha256_hex(buf);
}

std::string audit_checkpoint_message(int64_t seq, std::string_view hash, int64_t time_ms) {
  std::string m = "agora audit checkpoint v1\nseq=" + std::to_string(seq) + "\nhash=";
  m.append(hash);
  m += "\ntime_ms=" + std::to_string(time_ms);
  return m;
}

AuditEvent audit_event_for(const GenerationRecord& g) {
  AuditEvent e;
  e.time_ms = g.created_ms + static_cast<int64_t>(g.total_ms);
  e.kind = "job";
  e.key_id = g.key_id;
  e.provider_id = g.provider_id;
  std::string& d = e.data_json;
  d.reserve(384);
  auto str = [&](const char* k, std::string_view v) {
    d += d.empty() ? "{\"" : ",\"";
    d += k;
    d += "\":";
    append_json_string(d, v);
  };
  auto number = [&](const char* k, auto v) {
    d += ",\"";
    d += k;
    d += "\":";
    append_json_number(d, v);
  };
  str("generation_id", g.id);
  str("node_id", g.node_id);
  str("model", g.model);
  str("model_sha256", g.model_sha256);
  str("attestation", g.attestation);
  str("outcome", g.finish_reason);
  d += g.stream ? ",\"stream\":true" : ",\"stream\":false";
  number("prompt_tokens", int64_t{g.prompt_tokens});
  number("completion_tokens", int64_t{g.completion_tokens});
  number("cached_prompt_tokens", int64_t{g.cached_prompt_tokens});
  number("queued_ms", g.queued_ms);
  number("prompt_ms", g.prompt_ms);
  number("decode_ms", g.decode_ms);
  number("total_ms", g.total_ms);
  number("admitted_ms", g.created_ms);
  d += '}';
  return e;
}

Result<std::unique_ptr<crypto::Ed25519Signer>> audit_signer(const crypto::MasterSecret& master) {
  return crypto::Ed25519Signer::from_seed(master.derive("agora/v1/audit-signing", "", 32));
}

Result<std::optional<AuditCheckpoint>> checkpoint_audit(Store& store, const crypto::Ed25519Signer& signer,
                                                        int64_t now_ms) {
  return store.checkpoint_audit([&](std::string_view m) { return signer.sign_hex(m); }, signer.public_key_hex(),
                                now_ms);
}

namespace {

// The entry's own fields against the columns it is found under: a row
// moved to another seq, or a column edited to mislead queries, shows here.
std::optional<std::string> check_columns(const AuditEntry& row) {
  boost::system::error_code ec;
  json::value v = json::parse(row.entry, ec);
  if (ec || !v.is_object()) return "its content is not a JSON object (modified)";
  const auto& o = v.get_object();
  auto str = [&](std::string_view k) -> std::string {
    auto* x = o.if_contains(k);
    return x && x->is_string() ? std::string(x->get_string()) : std::string();
  };
  auto* seq = o.if_contains("seq");
  if (!seq || !seq->is_int64() || seq->get_int64() != row.seq) {
    return "its content belongs at another position (seq " +
           (seq && seq->is_int64() ? std::to_string(seq->get_int64()) : std::string("?")) +
           "): entries were reordered or renumbered";
  }
  auto* t = o.if_contains("time_ms");
  if (!t || !t->is_int64() || t->get_int64() != row.time_ms) return "its time column differs from its content";
  if (str("kind") != row.kind || str("key_id") != row.key_id || str("provider_id") != row.provider_id) {
    return "its kind/key/provider columns differ from its content";
  }
  return std::nullopt;
}

}  // namespace

Result<AuditReport> verify_audit(Store& store, const std::string& public_key, std::span<const AuditAnchor> anchors) {
  AuditReport report;
  std::multimap<int64_t, const AuditAnchor*> outside;
  for (const auto& a : anchors) outside.emplace(a.seq, &a);
  auto checkpoints = store.list_audit_checkpoints();
  if (!checkpoints) return checkpoints.error();
  // seq -> the checkpoints that vouch for it (signature already checked).
  std::multimap<int64_t, const AuditCheckpoint*> pending;
  for (const auto& c : *checkpoints) {
    if (c.public_key != public_key) {
      report.problems.push_back({c.seq, "checkpoint at entry " + std::to_string(c.seq) +
                                            " is signed by another key (" + c.public_key.substr(0, 16) + "…)"});
      continue;
    }
    if (!crypto::ed25519_verify(public_key, audit_checkpoint_message(c.seq, c.hash, c.time_ms), c.signature)) {
      report.problems.push_back({c.seq, "checkpoint at entry " + std::to_string(c.seq) +
                                            ": the signature does not verify (the checkpoint was altered or forged)"});
      continue;
    }
    pending.emplace(c.seq, &c);
  }

  int64_t expected = 1;
  std::string prev(kAuditGenesisHash);
  auto st = store.scan_audit(AuditFilter{}, [&](const AuditEntry& row) {
    ++report.entries;
    if (row.seq > expected) {
      report.problems.push_back(
          {expected, row.seq == expected + 1
                         ? "entry " + std::to_string(expected) + " is missing (deleted)"
                         : "entries " + std::to_string(expected) + "-" + std::to_string(row.seq - 1) +
                               " are missing (deleted)"});
    }
    if (row.prev_hash != prev) {
      report.problems.push_back({row.seq, "entry " + std::to_string(row.seq) +
                                              " does not follow the entry before it (its link differs): an "
                                              "entry was deleted, inserted or reordered here"});
    }
    if (audit_hash(row.prev_hash, row.entry) != row.hash) {
      report.problems.push_back(
          {row.seq, "entry " + std::to_string(row.seq) + " was modified (its hash does not match its content)"});
    } else if (auto why = check_columns(row)) {
      report.problems.push_back({row.seq, "entry " + std::to_string(row.seq) + ": " + *why});
    }
    auto [lo, hi] = pending.equal_range(row.seq);
    for (auto it = lo; it != hi; ++it) {
      if (it->second->hash == row.hash) {
        ++report.checkpoints;
        report.last_signed_seq = std::max(report.last_signed_seq, row.seq);
      } else {
        report.problems.push_back({row.seq, "entry " + std::to_string(row.seq) +
                                                " differs from what the checkpoint signed there: the chain up "
                                                "to it was rewritten"});
      }
    }
    pending.erase(lo, hi);
    auto [alo, ahi] = outside.equal_range(row.seq);
    for (auto it = alo; it != ahi; ++it) {
      if (it->second->hash != row.hash) {
        report.problems.push_back({row.seq, "entry " + std::to_string(row.seq) +
                                                " differs from the anchor given for it: the chain up to it was "
                                                "rewritten"});
      }
    }
    outside.erase(alo, ahi);
    prev = row.hash;
    report.last_seq = row.seq;
    expected = row.seq + 1;
    return true;
  });
  if (!st) return st.error();
  for (const auto& [seq, c] : pending) {
    report.problems.push_back({seq, "the checkpoint at entry " + std::to_string(seq) +
                                        " vouches for entries that are gone: the log ends at entry " +
                                        std::to_string(report.last_seq) + " (entries were deleted from its end)"});
  }
  for (const auto& [seq, a] : outside) {
    report.problems.push_back({seq, "the anchor for entry " + std::to_string(seq) + " vouches for entries that are "
                                    "gone: the log ends at entry " + std::to_string(report.last_seq)});
  }
  return report;
}

}  // namespace agora::store
