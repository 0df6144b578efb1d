// Errors in OpenAI's shape, shared by every HTTP surface of the gateway
// (the OpenAI-compatible API, the admin API, the request reader). Pure.
#pragma once

#include <string>
#include <string_view>

namespace agora::openai {

// An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int status = 400;
  std::string type = "invalid_request_error";
  std::string code;     // may be empty (-> null)
  std::string param;    // may be empty (-> null)
  std::string message;
  int retry_after_s = 0;  // > 0: send a retry-after header
};

std::string error_body(const ApiError& e);
ApiError invalid_request(std::string param, std::string message);
// A provider node's failure (its Errc name and message, docs/PROTOCOL.md
// "failed") as the client sees it: the gateway for plain requests, agora
// proxy for the reason a sealed answer carries.
ApiError provider_failure(std::string_view code, std::string_view message);

}  // namespace agora::openai
