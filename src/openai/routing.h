// What a client may ask of routing (DESIGN.md, "Routing preferences"),
// as the OpenAI codec parses it and the gateway's router honours it.
#pragma once

#include <string>
#include <vector>

namespace agora::openai {

// What a client may ask of routing (DESIGN.md, "Routing preferences").
struct RoutingPreferences {
  std::string privacy_level = "standard";  // "standard" | "verified"
  std::vector<std::string> regions;        // empty: anywhere
  bool confidential = false;
  std::vector<std::string> node_ids;       // a sealed request's recipients; empty: any node
  // Not client fields: what the request needs of a node's model, set by the
  // codec from a plain request (tools or tool messages; a JSON
  // response_format). A sealed request's client picks capable recipients.
  bool needs_tools = false;
  bool needs_grammar = false;
};

}  // namespace agora::openai
