// JSON Schemas from requests (protocol::check_schema): any input gives a
// verdict, never a crash; a schema accepted once is accepted again, and an
// error names the parameter.
#include "fuzz_check.h"
#include "protocol/schema_rules.h"

using namespace agora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = fuzz::as_text(data, size);
  const auto st = protocol::check_schema(text, "tools[0].function.parameters");
  if (!st) {
    FUZZ_CHECK(st.error().code == Errc::invalid_argument, "a refused schema is invalid_argument");
    FUZZ_CHECK(st.error().message.find("tools[0].function.parameters") != std::string::npos,
               "the error names the parameter");
  } else {
    FUZZ_CHECK(protocol::check_schema(text, "x").ok(), "the verdict is stable");
  }
  return 0;
}
