#include "openai/api_error.h"

#include "common/json_text.h"

namespace agora::openai {

ApiError invalid_request(std::string param, std::string message) {
  ApiError e;
  e.status = 400;
  e.type = "invalid_request_error";
  e.code = "invalid_request";
  e.param = std::move(param);
  e.message = std::move(message);
  return e;
}

std::string error_body(const ApiError& e) {
  std::string out = "{\"error\":{\"message\":";
  append_json_string(out, e.message);
  out += ",\"type\":";
  append_json_string(out, e.type);
  out += ",\"param\":";
  if (e.param.empty()) out += "null";
  else append_json_string(out, e.param);
  out += ",\"code\":";
  if (e.code.empty()) out += "null";
  else append_json_string(out, e.code);
  out += "}}";
  return out;
}

ApiError provider_failure(std::string_view code, std::string_view message) {
  const std::string msg(message);
  if (code == "invalid_argument") return invalid_request("", "The provider rejected the request: " + msg);
  if (code == "too_large") {
    ApiError e = invalid_request("messages", "The request does not fit the model's context: " + msg);
    e.code = "context_length_exceeded";
    return e;
  }
  return ApiError{502, "server_error", code == "timeout" ? "provider_timeout" : "provider_failed", "",
                  "The provider failed: " + msg, 0};
}

}  // namespace agora::openai
