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
};

}  // namespace agora::openai
