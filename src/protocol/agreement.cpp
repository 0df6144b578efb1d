#include "protocol/agreement.h"

#include <charconv>

#include "crypto/sha256.h"

namespace agora::protocol {

// Defined in the generated agreement_text.cpp (from docs/PROVIDER_AGREEMENT.md).
extern const std::string_view kBuiltinAgreementText;

Result<Agreement> parse_agreement(std::string text) {
  constexpr size_t kMaxBytes = 1u << 20;
  if (text.empty()) return make_error(Errc::invalid_argument, "the agreement is empty");
  if (text.size() > kMaxBytes) return make_error(Errc::invalid_argument, "the agreement is larger than 1 MiB");
  constexpr std::string_view kTag = "Version:";
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    if (line.starts_with(kTag)) {
      line.remove_prefix(kTag.size());
      while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
      int32_t v = 0;
      auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), v);
      if (ec != std::errc{} || p != line.data() + line.size() || v < 1) {
        return make_error(Errc::invalid_argument, "the agreement's \"Version:\" line must hold a positive integer");
      }
      Agreement a;
      a.version = v;
      a.sha256 = crypto::sha256_hex(text);
      a.text = std::move(text);
      return a;
    }
    pos = end + 1;
  }
  return make_error(Errc::invalid_argument, "the agreement has no \"Version: N\" line");
}

const Agreement& builtin_agreement() {
  static const Agreement a = [] {
    auto r = parse_agreement(std::string(kBuiltinAgreementText));
    // The build embeds docs/PROVIDER_AGREEMENT.md; a test checks it parses.
    return r ? std::move(*r) : Agreement{};
  }();
  return a;
}

}  // namespace agora::protocol
