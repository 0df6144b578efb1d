// Gateway configuration from, in order of precedence: command-line flags, a
// TOML file (--config), AGORA_* environment variables, built-in defaults.
// Every setting has one snake_case key, used the same way everywhere:
//   TOML:  queue_timeout_ms = 30000
//   env:   AGORA_QUEUE_TIMEOUT_MS=30000
//   flag:  --set queue_timeout_ms=30000 (common ones also have named flags)
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "gateway/gateway.h"

namespace agora::gateway {

struct SettingInfo {
  std::string key;
  std::string help;
};

// Every key, with a one-line description (for --help and docs).
const std::vector<SettingInfo>& settings();

// Sets one key from its text form. Errors: invalid_argument naming the key
// (unknown key, not a number, out of range).
Status apply_setting(GatewayConfig& config, std::string_view key, std::string_view value);

// Applies AGORA_<KEY> variables from `environ`-style lookup.
Status apply_environment(GatewayConfig& config, const std::function<const char*(const char*)>& getenv_fn);

// Applies a TOML file's top-level keys (and those under [gateway]).
// Errors: not_found, invalid_argument (syntax error with line, or a bad key).
Status apply_toml_file(GatewayConfig& config, const std::filesystem::path& path);

// The effective configuration as TOML (for `agora gateway --print-config`).
std::string to_toml(const GatewayConfig& config);

}  // namespace agora::gateway
