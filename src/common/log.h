// Structured logging on spdlog: one line per event, `event key=value ...`
// (logfmt), to stderr. Never pass prompts, completions or secrets as fields:
// the helpers here only take what the caller chose to log, and the engine's
// own log lines carry ids and counts only.
#pragma once

#include <spdlog/spdlog.h>

#include <string>
#include <string_view>

namespace agora {

enum class LogLevel { trace, debug, info, warn, error, off };

// Sets up the process-wide logger (stderr, timestamped, logfmt). Call once
// from main(); safe to call again to change the level.
void init_logging(LogLevel level);

// Parses "trace|debug|info|warn|error|off"; unknown names give info.
LogLevel parse_log_level(std::string_view name);

// Quotes a value for logfmt when it has spaces, quotes or '='.
std::string logfmt_value(std::string_view v);

}  // namespace agora
