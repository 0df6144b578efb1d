#include "gateway/listings.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/json_text.h"

namespace agora::gateway {

namespace {

// "supported_parameters":[…] as OpenRouter lists them: the sampling
// parameters every node honours, then what the model's nodes announce.
void append_supported_parameters(std::string& body, const protocol::ModelCapabilities& caps) {
  body += "\"supported_parameters\":[\"max_tokens\",\"temperature\",\"top_p\",\"top_k\",\"min_p\",\"stop\","
          "\"seed\",\"presence_penalty\",\"frequency_penalty\",\"logit_bias\",\"logprobs\",\"top_logprobs\"";
  if (caps.tools) body += ",\"tools\",\"tool_choice\"";
  if (caps.tools && caps.parallel_tool_calls) body += ",\"parallel_tool_calls\"";
  if (caps.grammar) body += ",\"response_format\",\"structured_outputs\"";
  body += ']';
}

}  // namespace

std::string models_body(const std::vector<ModelSummary>& models) {
  std::string body = "{\"object\":\"list\",\"data\":[";
  bool first = true;
  for (const auto& m : models) {
    if (!first) body += ',';
    first = false;
    body += "{\"id\":";
    append_json_string(body, m.name);
    body += ",\"object\":\"model\",\"created\":";
    append_json_number(body, m.created_ms / 1000);
    body += ",\"owned_by\":\"agora\",";
    append_supported_parameters(body, m.capabilities);
    body += ",\"agora\":{\"sha256\":[";
    for (size_t i = 0; i < m.sha256.size(); ++i) {
      if (i) body += ',';
      append_json_string(body, m.sha256[i]);
    }
    body += fmt::format("],\"nodes\":{},\"slots\":{},\"slots_busy\":{},\"slots_free\":{},\"context_length\":{}",
                        m.nodes, m.slots, m.busy, m.slots - m.busy, m.ctx_per_slot);
    // Capacity by attestation level: nodes at that level or above.
    body += ",\"capacity\":{";
    for (size_t l = 0; l < kLevels; ++l) {
      const Capacity& c = m.by_level[l];
      body += fmt::format("{}\"{}\":{{\"nodes\":{},\"slots\":{},\"slots_busy\":{},\"slots_free\":{}}}", l ? "," : "",
                          level_name(static_cast<Level>(l)), c.nodes, c.slots, c.busy, c.slots - c.busy);
    }
    body += "}}}";
  }
  body += "]}";
  return body;
}

namespace {

// A node's attestation for clients: the level it serves at, and with a
// live verdict the evidence and the gateway nonce it answers, so a client
// can verify it itself (agora proxy --confidential does) and bind the
// node's identity key: evidence nonce = SHA-256(nonce ‖ identity key).
void append_attestation(std::string& body, const NodeInfo& n) {
  const NodeAttestation& a = n.attestation;
  body += "{\"level\":";
  append_json_string(body, level_name(n.level));
  body += ",\"status\":";
  append_json_string(body, a.status);
  if (a.kind.empty()) {
    body += ",\"kind\":null";
  } else {
    body += ",\"kind\":";
    append_json_string(body, a.kind);
  }
  if (n.level == Level::standard) {
    body += ",\"evidence\":null}";
    return;
  }
  body += fmt::format(",\"verified_at\":{},\"expires_at\":{},\"verified_ms\":{},\"expires_ms\":{},\"nonce\":",
                      a.verified_ms / 1000, a.expires_ms / 1000, a.verified_ms, a.expires_ms);
  append_json_string(body, a.nonce);
  body += ",\"evidence\":";
  append_json_string(body, a.evidence);
  body += '}';
}

}  // namespace

// GET /v1/providers?model=…&privacyLevel=…&region=a,b&confidential=…: the
// nodes a client could seal a request to now — serving the model, taking
// jobs (not held or draining), with an identity key, matching the
// constraints — so the client can choose and check candidates itself.
// Each listed node may carry up to 128 KiB of evidence: the listing is
// bounded (providers_query.h) and built on the loop. Nodes that support
// tools and grammars come first, then those with one of them, so a client
// that needs them (and filters
// by "capabilities" itself: the query never says what a request holds)
// finds them within the limit.
std::string providers_body(const std::unordered_map<ConnId, NodeInfo>& nodes, const ProvidersQuery& q) {
  const std::string& model = q.model;
  const RoutingPreferences& wanted = q.routing;
  const size_t limit = q.limit;
  std::string body = "{\"object\":\"list\",\"data\":[";
  const Level need = required_level(wanted);
  const auto& regions = wanted.regions;
  size_t listed = 0;
  // Three passes: nodes with tools and grammars, then with one of them, then the rest.
  for (int pass = 0; pass < 3; ++pass) {
    for (const auto& [conn, n] : nodes) {
      if (listed == limit) break;
      if (n.level < need || n.held || n.draining || n.identity_key.empty()) continue;
      if (!regions.empty() && std::find(regions.begin(), regions.end(), n.region) == regions.end()) continue;
      const protocol::ModelAdvert* m = nullptr;
      for (const auto& nm : n.models) {
        if (nm.advert.name == model) m = &nm.advert;
      }
      if (!m) continue;
      if (2 - int{m->capabilities.tools} - int{m->capabilities.grammar} != pass) continue;
      body += listed++ ? ",{\"id\":" : "{\"id\":";
      append_json_string(body, n.node_id);
      body += ",\"object\":\"provider.node\",\"provider_id\":";
      append_json_string(body, n.provider_id);
      body += ",\"identity_key\":";
      append_json_string(body, n.identity_key);
      body += ",\"region\":";
      append_json_string(body, n.region);
      body += ",\"model\":";
      append_json_string(body, m->name);
      body += ",\"model_sha256\":";
      append_json_string(body, m->sha256);
      body += fmt::format(",\"ctx_per_slot\":{},\"slots\":{},\"protocol\":{}", m->ctx_per_slot, m->slots, n.protocol);
      body += fmt::format(",\"capabilities\":{{\"tools\":{},\"parallel_tool_calls\":{},\"structured_outputs\":{}}},",
                          m->capabilities.tools, m->capabilities.parallel_tool_calls, m->capabilities.grammar);
      append_supported_parameters(body, m->capabilities);
      body += ",\"attestation\":";
      append_attestation(body, n);
      body += '}';
    }
  }
  body += "]}";
  return body;
}

std::string generation_json(const store::GenerationRecord& r) {
  std::string b = "{\"id\":";
  append_json_string(b, r.id);
  b += ",\"object\":\"generation\",\"created\":";
  append_json_number(b, r.created_ms / 1000);
  b += ",\"model\":";
  append_json_string(b, r.model);
  b += ",\"provider_id\":";
  append_json_string(b, r.provider_id);
  b += ",\"node_id\":";
  append_json_string(b, r.node_id);
  b += ",\"model_sha256\":";
  append_json_string(b, r.model_sha256);
  b += ",\"attestation\":";
  append_json_string(b, r.attestation);
  b += ",\"finish_reason\":";
  append_json_string(b, r.finish_reason);
  b += r.stream ? ",\"stream\":true" : ",\"stream\":false";
  protocol::Usage u{r.prompt_tokens, r.completion_tokens, r.cached_prompt_tokens};
  b += ",\"usage\":" + usage_json(u);
  b += ",\"timings\":{\"queued_ms\":";
  append_json_number(b, r.queued_ms);
  b += ",\"prompt_ms\":";
  append_json_number(b, r.prompt_ms);
  b += ",\"decode_ms\":";
  append_json_number(b, r.decode_ms);
  b += ",\"total_ms\":";
  append_json_number(b, r.total_ms);
  b += "}}";
  return b;
}

}  // namespace agora::gateway
