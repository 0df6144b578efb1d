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

}  // namespace agora::openai
