// The subcommands of the `agora` binary. Each add_* registers its commands
// on the app; a failing command calls fail(), which prints the message and
// exits with status 1.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace agora::cli {

[[noreturn]] void fail(const std::string& message);

void add_model_commands(CLI::App& app);
void add_bench_commands(CLI::App& app);
// `agora bench grammar` under `bench` (bench_grammar.cpp).
void add_bench_grammar_command(CLI::App& bench);
void add_up_command(CLI::App& app);
void add_admin_commands(CLI::App& app);  // keys, providers
void add_audit_commands(CLI::App& app);  // audit verify, query, export, checkpoint
void add_gateway_command(CLI::App& app);
void add_node_command(CLI::App& app);
void add_proxy_command(CLI::App& app);

}  // namespace agora::cli
