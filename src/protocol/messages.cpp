#include "protocol/messages.h"

#include <boost/json.hpp>

#include <cmath>
#include <iterator>
#include <limits>

#include "common/json_text.h"
#include "crypto/encoding.h"
#include "protocol/json_reader.h"
#include "protocol/request_json.h"
#include "protocol/sealed.h"

namespace agora::protocol {
namespace json = boost::json;
using namespace detail;

namespace {

// An optional "sealed" chunk object.
bool read_sealed_chunk(Reader& r, std::optional<SealedChunk>& out) {
  const json::object* o = r.object("sealed", false);
  if (!o) return r.ok();
  Reader cr(*o, r.where() + ".sealed");
  SealedChunk c;
  if (!cr.integer("seq", c.seq) || !cr.boolean("final", c.final) || !b64(cr, "ciphertext", c.ciphertext)) {
    return r.fail("sealed", "is malformed: " + cr.error().message);
  }
  out = std::move(c);
  return true;
}

void put_tool_call_deltas(std::string& out, const std::vector<ToolCallDelta>& calls) {
  out += ",\"tool_calls\":[";
  for (size_t i = 0; i < calls.size(); ++i) {
    const auto& c = calls[i];
    if (i) out += ',';
    out += "{\"index\":";
    append_json_number(out, int64_t{c.index});
    if (!c.id.empty()) {
      out += ",\"id\":";
      append_json_string(out, c.id);
    }
    if (!c.name.empty()) {
      out += ",\"name\":";
      append_json_string(out, c.name);
    }
    if (!c.arguments.empty()) {
      out += ",\"arguments\":";
      append_json_string(out, c.arguments);
    }
    out += '}';
  }
  out += ']';
}

// An optional "tool_calls" array of call fragments (protocol 2).
bool read_tool_call_deltas(Reader& r, std::vector<ToolCallDelta>& out) {
  const json::array* a = r.array("tool_calls", false);
  if (!a) return r.ok();
  if (a->size() > kMaxToolCallDeltas) {
    return r.fail("tool_calls", "has more than " + std::to_string(kMaxToolCallDeltas) + " entries");
  }
  for (size_t i = 0; i < a->size(); ++i) {
    const std::string where = r.where() + ".tool_calls[" + std::to_string(i) + "]";
    if (!(*a)[i].is_object()) return r.fail("tool_calls", "must hold objects");
    Reader cr((*a)[i].get_object(), where);
    ToolCallDelta c;
    if (!cr.integer("index", c.index) || !cr.str("id", c.id, false) || !cr.str("name", c.name, false) ||
        !cr.str("arguments", c.arguments, false)) {
      return r.fail("tool_calls", "is malformed: " + cr.error().message);
    }
    if (c.index < 0 || c.index > kMaxToolCallIndex) {
      return r.fail("tool_calls", "index must be from 0 to " + std::to_string(kMaxToolCallIndex));
    }
    out.push_back(std::move(c));
  }
  return true;
}

void put_usage(std::string& out, const Usage& u) {
  out += "{\"prompt_tokens\":";
  append_json_number(out, int64_t{u.prompt_tokens});
  out += ",\"completion_tokens\":";
  append_json_number(out, int64_t{u.completion_tokens});
  out += ",\"cached_prompt_tokens\":";
  append_json_number(out, int64_t{u.cached_prompt_tokens});
  out += '}';
}

void put_timings(std::string& out, const Timings& t) {
  out += "{\"queued_ms\":";
  append_json_number(out, t.queued_ms);
  out += ",\"prompt_ms\":";
  append_json_number(out, t.prompt_ms);
  out += ",\"decode_ms\":";
  append_json_number(out, t.decode_ms);
  out += '}';
}

void put_logprobs(std::string& out, const std::vector<TokenLogprob>& lps) {
  out += '[';
  bool first = true;
  for (const auto& lp : lps) {
    if (!first) out += ',';
    first = false;
    out += "{\"id\":";
    append_json_number(out, int64_t{lp.token});
    out += ",\"bytes\":";
    append_json_bytes(out, lp.text);
    out += ",\"logprob\":";
    append_json_number(out, double{lp.logprob});
    out += ",\"top\":[";
    for (size_t i = 0; i < lp.top.size(); ++i) {
      if (i) out += ',';
      out += "{\"id\":";
      append_json_number(out, int64_t{lp.top[i].token});
      out += ",\"bytes\":";
      append_json_bytes(out, lp.top[i].text);
      out += ",\"logprob\":";
      append_json_number(out, double{lp.top[i].logprob});
      out += '}';
    }
    out += "]}";
  }
  out += ']';
}

bool read_bytes(Reader& r, const json::object& o, std::string& out) {
  auto* a = r.array("bytes");
  if (!a) return false;
  out.clear();
  out.reserve(a->size());
  for (const auto& b : *a) {
    if (!b.is_int64() || b.get_int64() < 0 || b.get_int64() > 255) return r.fail("bytes", "must hold bytes (0-255)");
    out.push_back(static_cast<char>(b.get_int64()));
  }
  (void)o;
  return true;
}

bool read_logprobs(Reader& parent, const json::array& a, std::vector<TokenLogprob>& out) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].is_object()) return parent.fail("logprobs", "entries must be objects");
    const auto& o = a[i].get_object();
    Reader r(o, parent.where() + ".logprobs[" + std::to_string(i) + "]");
    TokenLogprob lp;
    if (!r.integer("id", lp.token) || !read_bytes(r, o, lp.text) || !r.number("logprob", lp.logprob)) {
      return parent.fail("logprobs", r.error().message);
    }
    auto* top = r.array("top", false);
    if (!r.ok()) return parent.fail("logprobs", r.error().message);
    if (top) {
      for (const auto& t : *top) {
        if (!t.is_object()) return parent.fail("logprobs", "top entries must be objects");
        Reader tr(t.get_object(), r.where() + ".top");
        TopLogprob tl;
        if (!tr.integer("id", tl.token) || !read_bytes(tr, t.get_object(), tl.text) || !tr.number("logprob", tl.logprob)) {
          return parent.fail("logprobs", tr.error().message);
        }
        lp.top.push_back(std::move(tl));
      }
    }
    out.push_back(std::move(lp));
  }
  return true;
}


}  // namespace

std::string_view message_type(const Message& m) {
  static constexpr std::string_view kNames[] = {"hello", "welcome", "reject", "job",       "cancel", "delta",
                                                "done",  "failed",  "drain",  "agreement", "accept",
                                                "challenge", "evidence"};
  static_assert(std::size(kNames) == std::variant_size_v<Message>);
  return kNames[m.index()];
}

FinishReason parse_finish_reason(std::string_view s, bool* ok) {
  *ok = true;
  if (s == "stop") return FinishReason::stop;
  if (s == "length") return FinishReason::length;
  if (s == "cancelled") return FinishReason::cancelled;
  if (s == "error") return FinishReason::error;
  if (s == "tool_calls") return FinishReason::tool_calls;
  *ok = false;
  return FinishReason::error;
}

void put_sealed_chunk(std::string& out, const SealedChunk& c) {
  out += ",\"sealed\":{\"seq\":";
  append_json_number(out, static_cast<int64_t>(c.seq));
  out += c.final ? ",\"final\":true" : ",\"final\":false";
  out += ",\"ciphertext\":\"";
  out += crypto::to_base64(c.ciphertext);
  out += "\"}";
}

void encode_delta(std::string& out, const Delta& d) {
  out += "{\"type\":\"delta\",\"job\":";
  append_json_number(out, static_cast<int64_t>(d.job));
  out += ",\"text\":";
  append_json_string(out, d.text);
  if (!d.logprobs.empty()) {
    out += ",\"logprobs\":";
    put_logprobs(out, d.logprobs);
  }
  if (!d.tool_calls.empty()) put_tool_call_deltas(out, d.tool_calls);
  if (d.sealed) put_sealed_chunk(out, *d.sealed);
  out += '}';
}

std::string encode(const Message& m) {
  std::string out;
  std::visit(
      [&](const auto& msg) {
        using T = std::decay_t<decltype(msg)>;
        if constexpr (std::is_same_v<T, Delta>) {
          encode_delta(out, msg);
        } else if constexpr (std::is_same_v<T, Done>) {
          out += "{\"type\":\"done\",\"job\":";
          append_json_number(out, static_cast<int64_t>(msg.job));
          out += ",\"finish_reason\":\"";
          out += finish_reason_name(msg.finish);
          out += "\",\"usage\":";
          put_usage(out, msg.usage);
          out += ",\"timings\":";
          put_timings(out, msg.timings);
          if (msg.sealed) put_sealed_chunk(out, *msg.sealed);
          out += '}';
        } else {
          json::object o;
          o["type"] = message_type(Message{msg});
          if constexpr (std::is_same_v<T, Hello>) {
            o["protocol"] = msg.protocol;
            o["node_id"] = msg.node_id;
            o["agent"] = msg.agent;
            o["region"] = msg.region;
            json::array models;
            for (const auto& a : msg.models) {
              json::object m{{"name", a.name},
                             {"sha256", a.sha256},
                             {"quantization", a.quantization},
                             {"architecture", a.architecture},
                             {"parameters", a.parameters},
                             {"context_length", a.context_length},
                             {"ctx_per_slot", a.ctx_per_slot},
                             {"slots", a.slots}};
              if (msg.protocol >= 2) {
                m["capabilities"] = json::object{{"tools", a.capabilities.tools},
                                                 {"parallel_tool_calls", a.capabilities.parallel_tool_calls},
                                                 {"grammar", a.capabilities.grammar}};
              }
              models.push_back(std::move(m));
            }
            o["models"] = std::move(models);
            json::array gpus;
            for (const auto& g : msg.hardware.gpus) gpus.push_back(json::string(g));
            o["hardware"] = json::object{{"cpu", msg.hardware.cpu},
                                         {"cores", msg.hardware.cores},
                                         {"memory_bytes", msg.hardware.memory_bytes},
                                         {"gpus", std::move(gpus)}};
            json::array agreements;
            for (const auto& a : msg.agreements) agreements.push_back(json::string(a));
            o["agreements"] = std::move(agreements);
            if (!msg.identity_key.empty()) o["identity_key"] = msg.identity_key;
            if (!msg.attestation.empty()) o["attestation"] = msg.attestation;
          } else if constexpr (std::is_same_v<T, Welcome>) {
            o["protocol"] = msg.protocol;
            o["provider_id"] = msg.provider_id;
            o["heartbeat_ms"] = msg.heartbeat_ms;
            o["agreement"] = json::object{{"version", msg.agreement_version},
                                          {"sha256", msg.agreement_sha256},
                                          {"accepted", msg.agreement_accepted}};
          } else if constexpr (std::is_same_v<T, AgreementOffer>) {
            o["version"] = msg.version;
            o["sha256"] = msg.sha256;
            o["text"] = msg.text;
          } else if constexpr (std::is_same_v<T, Accept>) {
            o["sha256"] = msg.sha256;
          } else if constexpr (std::is_same_v<T, Challenge>) {
            o["nonce"] = msg.nonce;
          } else if constexpr (std::is_same_v<T, Evidence>) {
            o["nonce"] = msg.nonce;
            o["kind"] = msg.kind;
            if (msg.error.empty()) o["evidence"] = msg.evidence;
            else o["error"] = msg.error;
          } else if constexpr (std::is_same_v<T, Reject>) {
            o["code"] = msg.code;
            o["message"] = msg.message;
          } else if constexpr (std::is_same_v<T, Job>) {
            o["job"] = msg.job;
            o["model"] = msg.model;
            o["request"] = request_to_json(msg.request);
            if (msg.sealed) {
              json::array rs;
              for (const auto& r : msg.sealed->recipients) rs.push_back(json::string(r));
              o["sealed"] = json::object{{"issued_ms", msg.sealed->issued_ms},
                                         {"stream", msg.sealed->stream},
                                         {"recipients", std::move(rs)},
                                         {"enc", crypto::to_base64(msg.sealed->enc)},
                                         {"key", crypto::to_base64(msg.sealed->key)},
                                         {"ciphertext", crypto::to_base64(msg.sealed->ciphertext)}};
            }
          } else if constexpr (std::is_same_v<T, Cancel>) {
            o["job"] = msg.job;
          } else if constexpr (std::is_same_v<T, Failed>) {
            o["job"] = msg.job;
            o["code"] = msg.code;
            o["message"] = msg.message;
            o["retryable"] = msg.retryable;
            if (msg.sealed) {
              o["sealed"] = json::object{{"seq", msg.sealed->seq},
                                         {"final", msg.sealed->final},
                                         {"ciphertext", crypto::to_base64(msg.sealed->ciphertext)}};
            }
          }
          out = json::serialize(o);
        }
      },
      m);
  return out;
}

Result<Message> decode(std::string_view frame) {
  auto v = parse_object(frame, "frame", kMaxFrameBytes, kMaxJsonDepth);
  if (!v) return v.error();
  const auto& o = v->get_object();
  Reader r(o, "frame");
  std::string type;
  if (!r.str("type", type)) return r.error();

  if (type == "delta") {
    Delta d;
    if (!r.integer("job", d.job) || !r.str("text", d.text)) return r.error();
    if (auto* lps = r.array("logprobs", false)) {
      if (!read_logprobs(r, *lps, d.logprobs)) return r.error();
    }
    if (!read_tool_call_deltas(r, d.tool_calls)) return r.error();
    if (!read_sealed_chunk(r, d.sealed)) return r.error();
    if (!r.ok()) return r.error();
    return Message{std::move(d)};
  }
  if (type == "done") {
    Done d;
    std::string finish;
    if (!r.integer("job", d.job) || !r.str("finish_reason", finish)) return r.error();
    bool ok;
    d.finish = parse_finish_reason(finish, &ok);
    if (!ok) return bad("frame.finish_reason is unknown: " + finish);
    if (auto* u = r.object("usage")) {
      Reader ur(*u, "frame.usage");
      if (!ur.integer("prompt_tokens", d.usage.prompt_tokens) ||
          !ur.integer("completion_tokens", d.usage.completion_tokens) ||
          !ur.integer("cached_prompt_tokens", d.usage.cached_prompt_tokens, false)) {
        return ur.error();
      }
      if (d.usage.prompt_tokens < 0 || d.usage.completion_tokens < 0 || d.usage.cached_prompt_tokens < 0) {
        return bad("frame.usage counts must not be negative");
      }
    } else {
      return r.error();
    }
    if (auto* t = r.object("timings", false)) {
      Reader tr(*t, "frame.timings");
      if (!tr.number("queued_ms", d.timings.queued_ms, false) || !tr.number("prompt_ms", d.timings.prompt_ms, false) ||
          !tr.number("decode_ms", d.timings.decode_ms, false)) {
        return tr.error();
      }
      // The gateway subtracts them from its own clock's durations.
      for (double ms : {d.timings.queued_ms, d.timings.prompt_ms, d.timings.decode_ms}) {
        if (!(ms >= 0 && ms <= kMaxTimingMs)) return bad("frame.timings must be from 0 to 1e10 ms");
      }
    }
    if (!read_sealed_chunk(r, d.sealed)) return r.error();
    if (!r.ok()) return r.error();
    return Message{std::move(d)};
  }
  if (type == "job") {
    Job j;
    if (!r.integer("job", j.job) || !r.str("model", j.model)) return r.error();
    auto* req = r.object("request");
    if (!req) return r.error();
    if (!request_from_json(r, *req, j.request)) return r.error();
    if (auto* so = r.object("sealed", false)) {
      Reader sr(*so, "frame.sealed");
      SealedJob sj;
      if (!sr.integer("issued_ms", sj.issued_ms) || !sr.boolean("stream", sj.stream) || !b64(sr, "enc", sj.enc) ||
          !b64(sr, "key", sj.key) || !b64(sr, "ciphertext", sj.ciphertext)) {
        return sr.error();
      }
      auto* rs = sr.array("recipients");
      if (!rs) return sr.error();
      if (rs->empty() || rs->size() > sealed::kMaxRecipients) {
        return bad("frame.sealed.recipients must list 1 to " + std::to_string(sealed::kMaxRecipients) + " nodes");
      }
      for (const auto& x : *rs) {
        if (!x.is_string()) return bad("frame.sealed.recipients must hold node ids");
        sj.recipients.emplace_back(x.get_string());
      }
      j.sealed = std::move(sj);
    }
    if (!r.ok()) return r.error();
    return Message{std::move(j)};
  }
  if (type == "cancel") {
    Cancel c;
    if (!r.integer("job", c.job)) return r.error();
    return Message{c};
  }
  if (type == "failed") {
    Failed f;
    if (!r.integer("job", f.job) || !r.str("code", f.code) || !r.str("message", f.message) ||
        !r.boolean("retryable", f.retryable, false)) {
      return r.error();
    }
    if (!read_sealed_chunk(r, f.sealed)) return r.error();
    return Message{std::move(f)};
  }
  if (type == "hello") {
    Hello h;
    if (!r.integer("protocol", h.protocol) || !r.str("node_id", h.node_id) || !r.str("agent", h.agent, false) ||
        !r.str("region", h.region, false)) {
      return r.error();
    }
    auto* models = r.array("models");
    if (!models) return r.error();
    for (size_t i = 0; i < models->size(); ++i) {
      if (!(*models)[i].is_object()) return bad("frame.models[" + std::to_string(i) + "] must be an object");
      Reader mr((*models)[i].get_object(), "frame.models[" + std::to_string(i) + "]");
      ModelAdvert a;
      if (!mr.str("name", a.name) || !mr.str("sha256", a.sha256) || !mr.str("quantization", a.quantization, false) ||
          !mr.str("architecture", a.architecture, false) || !mr.integer("parameters", a.parameters, false) ||
          !mr.integer("context_length", a.context_length, false) || !mr.integer("ctx_per_slot", a.ctx_per_slot) ||
          !mr.integer("slots", a.slots)) {
        return mr.error();
      }
      if (auto* c = mr.object("capabilities", false)) {
        Reader cr(*c, mr.where() + ".capabilities");
        if (!cr.boolean("tools", a.capabilities.tools, false) ||
            !cr.boolean("parallel_tool_calls", a.capabilities.parallel_tool_calls, false) ||
            !cr.boolean("grammar", a.capabilities.grammar, false)) {
          return cr.error();
        }
      }
      if (!mr.ok()) return mr.error();
      h.models.push_back(std::move(a));
    }
    if (auto* hw = r.object("hardware", false)) {
      Reader hr(*hw, "frame.hardware");
      if (!hr.str("cpu", h.hardware.cpu, false) || !hr.integer("cores", h.hardware.cores, false) ||
          !hr.integer("memory_bytes", h.hardware.memory_bytes, false)) {
        return hr.error();
      }
      if (auto* g = hr.array("gpus", false)) {
        for (const auto& x : *g) {
          if (!x.is_string()) return bad("frame.hardware.gpus must hold strings");
          h.hardware.gpus.emplace_back(x.get_string().data(), x.get_string().size());
        }
      }
      if (!hr.ok()) return hr.error();
    }
    if (auto* a = r.array("agreements", false)) {
      if (a->size() > kMaxAgreements) return bad("frame.agreements has more than " + std::to_string(kMaxAgreements) + " entries");
      for (const auto& x : *a) {
        if (!x.is_string() || !is_digest(x.get_string())) {
          return bad("frame.agreements must hold SHA-256 digests (64 lower-case hex characters)");
        }
        h.agreements.emplace_back(x.get_string().data(), x.get_string().size());
      }
    }
    if (!r.str("identity_key", h.identity_key, false)) return r.error();
    if (!h.identity_key.empty() && !is_digest(h.identity_key)) {
      return bad("frame.identity_key must be an X25519 public key (64 lower-case hex characters)");
    }
    if (!r.str("attestation", h.attestation, false)) return r.error();
    if (!h.attestation.empty() && !is_attestation_kind(h.attestation)) {
      return bad("frame.attestation must be \"nvidia_cc\" or \"play_integrity\"");
    }
    if (!r.ok()) return r.error();
    return Message{std::move(h)};
  }
  if (type == "welcome") {
    Welcome w;
    if (!r.integer("protocol", w.protocol) || !r.str("provider_id", w.provider_id) ||
        !r.integer("heartbeat_ms", w.heartbeat_ms, false)) {
      return r.error();
    }
    if (auto* a = r.object("agreement", false)) {
      Reader ar(*a, "frame.agreement");
      if (!ar.integer("version", w.agreement_version) || !ar.str("sha256", w.agreement_sha256) ||
          !ar.boolean("accepted", w.agreement_accepted)) {
        return ar.error();
      }
    }
    if (!r.ok()) return r.error();
    return Message{std::move(w)};
  }
  if (type == "reject") {
    Reject j;
    if (!r.str("code", j.code) || !r.str("message", j.message)) return r.error();
    return Message{std::move(j)};
  }
  if (type == "drain") return Message{Drain{}};
  if (type == "agreement") {
    AgreementOffer a;
    if (!r.integer("version", a.version) || !r.str("sha256", a.sha256) || !r.str("text", a.text)) return r.error();
    return Message{std::move(a)};
  }
  if (type == "accept") {
    Accept a;
    if (!r.str("sha256", a.sha256)) return r.error();
    if (!is_digest(a.sha256)) return bad("frame.sha256 must be 64 lower-case hex characters");
    return Message{std::move(a)};
  }
  if (type == "challenge") {
    Challenge c;
    if (!r.str("nonce", c.nonce)) return r.error();
    if (!is_digest(c.nonce)) return bad("frame.nonce must be 64 lower-case hex characters");
    return Message{std::move(c)};
  }
  if (type == "evidence") {
    Evidence e;
    if (!r.str("nonce", e.nonce) || !r.str("kind", e.kind) || !r.str("evidence", e.evidence, false) ||
        !r.str("error", e.error, false)) {
      return r.error();
    }
    if (!is_digest(e.nonce)) return bad("frame.nonce must be 64 lower-case hex characters");
    if (!is_attestation_kind(e.kind)) return bad("frame.kind must be \"nvidia_cc\" or \"play_integrity\"");
    if (e.evidence.empty() == e.error.empty()) return bad("an evidence frame carries either evidence or an error");
    if (e.evidence.size() > kMaxEvidenceBytes) {
      return make_error(Errc::too_large, "protocol: evidence larger than " + std::to_string(kMaxEvidenceBytes) + " bytes");
    }
    if (e.error.size() > kMaxEvidenceErrorBytes) {
      return bad("frame.error is longer than " + std::to_string(kMaxEvidenceErrorBytes) + " bytes");
    }
    return Message{std::move(e)};
  }
  return bad("unknown frame type '" + type + "'");
}

bool is_attestation_kind(std::string_view kind) { return kind == "nvidia_cc" || kind == "play_integrity"; }

}  // namespace agora::protocol
