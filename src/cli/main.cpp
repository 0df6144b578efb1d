// agora: one binary, many subcommands.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>

#include "cli/commands.h"
#include "common/log.h"

namespace agora::cli {

void fail(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  std::fflush(stderr);
  std::exit(1);
}

}  // namespace agora::cli

int main(int argc, char** argv) {
  CLI::App app{"Agora: a peer-to-peer AI inference marketplace (gateway, provider nodes, OpenAI-compatible API)",
               "agora"};
  app.set_version_flag("--version", "agora 0.1.0");
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
  app.require_subcommand(1);
  app.parse_complete_callback([&] { agora::init_logging(agora::parse_log_level(log_level)); });

  agora::cli::add_model_commands(app);
  agora::cli::add_bench_commands(app);
  agora::cli::add_up_command(app);
  agora::cli::add_admin_commands(app);
  agora::cli::add_audit_commands(app);
  agora::cli::add_proxy_command(app);
  agora::cli::add_gateway_command(app);
  agora::cli::add_node_command(app);

  CLI11_PARSE(app, argc, argv);
  return 0;
}
