// Errors in OpenAI's shape, shared by every HTTP surface of the gateway
// (the OpenAI-compatible API, the admin API, the request reader). Pure.
#pragma once

#include <string>

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

}  // namespace agora::openai
