#include "client/sealed_answer.h"

#include <boost/json.hpp>

#include "crypto/encoding.h"
#include "crypto/aead.h"
#include "protocol/messages.h"

namespace agora::client {
namespace json = boost::json;
using openai::ApiError;
namespace sealed = protocol::sealed;

namespace {

// The HPKE context of the node that answered (nullptr: not one it was sealed to).
const crypto::hpke::Context* context_for(const sealed::ClientSeal& seal, std::string_view node) {
  for (const auto& [id, c] : seal.contexts) {
    if (id == node) return &c;
  }
  return nullptr;
}

std::string str_of(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

// One opened chunk: a delta, or the final done or failed.
struct Opened {
  std::optional<protocol::Delta> delta;
  std::optional<protocol::Done> done;
  std::optional<protocol::Failed> failed;
};

Result<Opened> open_chunk(sealed::ResponseOpener& opener, const json::value& value) {
  const json::object* chunk = value.if_object();
  const auto* seq = chunk ? chunk->if_contains("seq") : nullptr;
  const auto* fin = chunk ? chunk->if_contains("final") : nullptr;
  const auto* ct = chunk ? chunk->if_contains("ciphertext") : nullptr;
  if (!seq || !seq->is_int64() || seq->get_int64() < 0 || !fin || !fin->is_bool() || !ct || !ct->is_string()) {
    return make_error(Errc::corrupt, "a malformed sealed chunk");
  }
  auto raw = crypto::from_base64(ct->get_string());
  if (!raw) return make_error(Errc::corrupt, "a sealed chunk that is not base64");
  auto pt = opener.open(static_cast<uint64_t>(seq->get_int64()), fin->get_bool(), *raw);
  if (!pt) return pt.error();
  auto m = protocol::decode(*pt);
  crypto::secure_wipe(*pt);
  if (!m) return make_error(Errc::corrupt, "a sealed chunk that does not decode: " + m.error().message);
  Opened o;
  const bool final = fin->get_bool();
  if (auto* d = std::get_if<protocol::Delta>(&*m); d && !final) o.delta = std::move(*d);
  else if (auto* dn = std::get_if<protocol::Done>(&*m); dn && final) o.done = std::move(*dn);
  else if (auto* f = std::get_if<protocol::Failed>(&*m); f && final) o.failed = std::move(*f);
  else return make_error(Errc::corrupt, "a sealed chunk of the wrong kind");
  return o;
}

openai::Provenance provenance_of(const json::object& o, std::string_view node) {
  openai::Provenance p;
  if (const auto* a = o.if_contains("agora"); a && a->is_object()) {
    const auto& ao = a->get_object();
    p.provider_id = str_of(ao, "provider_id");
    p.model_sha256 = str_of(ao, "model_sha256");
    p.generation_id = str_of(ao, "generation_id");
    p.attestation = str_of(ao, "attestation");
  }
  p.node_id = std::string(node);
  return p;
}

// The node's sealed refusal, as the client sees it.
ApiError node_error(const protocol::Failed& f) { return openai::provider_failure(f.code, f.message); }

}  // namespace

std::variant<std::string, ApiError, Refused> open_unary(const sealed::ClientSeal& seal, const AnswerShape& shape,
                                                        std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return Refused{"not JSON"};
  const auto& o = v.get_object();
  const auto* box = o.if_contains("agora_sealed");
  const auto* agora = o.if_contains("agora");
  const json::value* node = agora && agora->is_object() ? agora->get_object().if_contains("node_id") : nullptr;
  if (!box || !box->is_object() || !node || !node->is_string()) return Refused{"no sealed chunks"};
  const auto* ctx = context_for(seal, node->get_string());
  if (!ctx) return Refused{"answered by a node it was not sealed to"};
  const auto* chunks = box->get_object().if_contains("chunks");
  if (!chunks || !chunks->is_array()) return Refused{"no sealed chunks"};
  sealed::ResponseOpener opener(*ctx);
  openai::CompletionResult result;
  result.logprobs_requested = shape.logprobs;
  std::optional<ApiError> failed;
  for (const auto& c : chunks->get_array()) {
    auto opened = open_chunk(opener, c);
    if (!opened) return Refused{opened.error().message};
    if (opened->delta) {
      result.text += opened->delta->text;
      for (auto& lp : opened->delta->logprobs) result.logprobs.push_back(std::move(lp));
      openai::add_tool_call_deltas(result.tool_calls, opened->delta->tool_calls);
      crypto::secure_wipe(opened->delta->text);
    } else if (opened->done) {
      result.finish = opened->done->finish;
      result.usage = opened->done->usage;
    } else {
      failed = node_error(*opened->failed);
    }
  }
  if (!opener.finished()) return Refused{"it ends without its final chunk (truncated)"};
  if (failed) {
    crypto::secure_wipe(result.text);
    return *failed;
  }
  int64_t created = 0;
  if (const auto* x = o.if_contains("created"); x && x->is_int64()) created = x->get_int64();
  std::string out = openai::completion_body(str_of(o, "id"), created, shape.model, result,
                                            provenance_of(o, node->get_string()));
  crypto::secure_wipe(result.text);
  return out;
}

std::optional<std::variant<ApiError, Refused>> open_error(const sealed::ClientSeal& seal, std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const auto* box = v.get_object().if_contains("agora_sealed");
  if (!box) return std::nullopt;
  const json::object* bo = box->if_object();
  const auto* node = bo ? bo->if_contains("node_id") : nullptr;
  const auto* chunks = bo ? bo->if_contains("chunks") : nullptr;
  if (!node || !node->is_string() || !chunks || !chunks->is_array()) return Refused{"a malformed sealed error"};
  const auto* ctx = context_for(seal, node->get_string());
  if (!ctx) return Refused{"answered by a node it was not sealed to"};
  sealed::ResponseOpener opener(*ctx);
  std::optional<ApiError> failed;
  for (const auto& c : chunks->get_array()) {
    auto opened = open_chunk(opener, c);
    if (!opened) return Refused{opened.error().message};
    if (opened->delta) crypto::secure_wipe(opened->delta->text);
    if (opened->failed) failed = node_error(*opened->failed);
  }
  if (!opener.finished() || !failed) return Refused{"a sealed error that does not end with the node's failure"};
  return *failed;
}

// ------------------------------------------------------------------ stream

SealedStream::SealedStream(const sealed::ClientSeal& seal, AnswerShape shape) : seal_(seal), shape_(std::move(shape)) {}

SealedStream::Step SealedStream::refuse(std::string why, std::string& out) {
  why_ = std::move(why);
  openai::ChunkWriter::error(
      out, ApiError{502, "server_error", "sealed_response_invalid", "", "The sealed answer is not valid: " + why_, 0});
  return Step::failed;
}

SealedStream::Step SealedStream::event(std::string_view data, std::string& out) {
  if (data == "[DONE]") {
    if (!opener_ || !opener_->finished() || !done_) return refuse("it ends without its final chunk (truncated)", out);
    if (!finish_written_) {
      // The gateway left out its finish chunk: the client still gets one.
      static const std::vector<protocol::TokenLogprob> kNone;
      writer_->finish(out, "", kNone, done_->finish, provenance_of(json::object{}, node_));
      finish_written_ = true;
    }
    openai::ChunkWriter::done(out);
    return Step::done;
  }
  boost::system::error_code ec;
  json::value v = json::parse(data, ec);
  if (ec || !v.is_object()) return refuse("an event that is not JSON", out);
  const auto& o = v.get_object();
  if (o.contains("error")) return on_error(o, out);
  if (!writer_) {
    int64_t created = 0;
    if (const auto* x = o.if_contains("created"); x && x->is_int64()) created = x->get_int64();
    writer_.emplace(str_of(o, "id"), created, shape_.model, shape_.include_usage, shape_.logprobs);
  }
  if (const auto* sc = o.if_contains("agora_sealed")) {
    if (!sc->is_object()) return refuse("a malformed sealed chunk", out);
    return on_sealed(sc->get_object(), out);
  }
  return on_plain(o, out);
}

// The first chunk binds the stream to its node's context; later ones must
// come from the same node. Why not, or nullptr.
const char* SealedStream::bind(std::string_view node) {
  if (!opener_) {
    const auto* ctx = context_for(seal_, node);
    if (!ctx) return "answered by a node it was not sealed to";
    opener_.emplace(*ctx);
    node_ = std::string(node);
    return nullptr;
  }
  return node == node_ ? nullptr : "chunks from two nodes";
}

SealedStream::Step SealedStream::on_sealed(const json::object& chunk, std::string& out) {
  const auto* n = chunk.if_contains("node_id");
  if (!n || !n->is_string()) return refuse("a sealed chunk without its node", out);
  if (auto why = bind(n->get_string())) return refuse(why, out);
  if (opener_->finished()) return refuse("a chunk after the final one", out);
  auto opened = open_chunk(*opener_, json::value(chunk));
  if (!opened) return refuse(opened.error().message, out);
  if (opened->failed) return refuse("a failure outside an error event", out);
  if (opened->done) {
    done_ = std::move(opened->done);
    return Step::more;
  }
  auto& d = *opened->delta;
  if (!d.text.empty() || d.tool_calls.empty()) writer_->content(out, d.text, d.logprobs);
  if (!d.tool_calls.empty()) writer_->tool_calls(out, d.tool_calls);
  crypto::secure_wipe(d.text);
  return Step::more;
}

// The gateway's error event: its own (a failed provider) is relayed; one
// with the node's sealed failure becomes that failure.
SealedStream::Step SealedStream::on_error(const json::object& event, std::string& out) {
  const auto* box = event.if_contains("agora_sealed");
  if (!box) {
    why_ = "the gateway's error event";
    out += "data: " + json::serialize(json::object{{"error", event.at("error")}}) + "\n\n";
    return Step::failed;
  }
  const json::object* bo = box->if_object();
  const auto* node = bo ? bo->if_contains("node_id") : nullptr;
  const auto* chunks = bo ? bo->if_contains("chunks") : nullptr;
  if (!node || !node->is_string() || !chunks || !chunks->is_array()) return refuse("a malformed sealed error", out);
  if (auto why = bind(node->get_string())) return refuse(why, out);
  std::optional<protocol::Failed> failed;
  for (const auto& c : chunks->get_array()) {
    auto opened = open_chunk(*opener_, c);
    if (!opened) return refuse(opened.error().message, out);
    if (!opened->failed) return refuse("a sealed error that does not end with the node's failure", out);
    failed = std::move(opened->failed);
  }
  if (!failed) return refuse("a sealed error that does not end with the node's failure", out);
  why_ = "the node failed: " + failed->code;
  openai::ChunkWriter::error(out, node_error(*failed));
  return Step::failed;
}

// The gateway's plaintext chunks: the finish chunk (provenance) and, with
// include_usage, the usage chunk. The finish reason and usage come from the
// sealed final chunk, not from them.
SealedStream::Step SealedStream::on_plain(const json::object& o, std::string& out) {
  const auto* choices = o.if_contains("choices");
  const bool has_choices = choices && choices->is_array() && !choices->get_array().empty();
  if (has_choices) {
    if (!done_) return refuse("the end of the answer came before its sealed final chunk", out);
    if (finish_written_) return refuse("a second finish chunk", out);
    static const std::vector<protocol::TokenLogprob> kNone;
    writer_->finish(out, "", kNone, done_->finish, provenance_of(o, node_));
    finish_written_ = true;
  } else if (o.contains("usage") && shape_.include_usage) {
    if (!done_) return refuse("usage came before the sealed final chunk", out);
    writer_->usage(out, done_->usage, provenance_of(o, node_));
  }
  return Step::more;
}

void SealedStream::cut_off(std::string_view why, std::string& out) {
  refuse(why.empty() ? std::string("the stream ended before its final chunk (truncated)")
                     : "the stream broke: " + std::string(why),
         out);
}

}  // namespace agora::client
