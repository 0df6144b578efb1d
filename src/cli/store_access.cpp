#include "cli/store_access.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "cli/commands.h"
#include "common/clock.h"
#include "store/audit.h"
#include "store/sqlite_store.h"

namespace agora::cli {

int64_t now_ms() {
  return SystemClock::instance().unix_millis();
}

std::shared_ptr<const crypto::MasterSecret> load_master(const std::string& data_dir, const std::string& flag,
                                                        bool create) {
  std::filesystem::path path = flag;
  if (path.empty()) {
    const char* env = std::getenv("AGORA_MASTER_KEY");
    path = env && *env ? std::filesystem::path(env) : crypto::default_master_secret_path(data_dir);
  }
  auto m = crypto::MasterSecret::load(path, create);
  if (!m) {
    if (m.error().code == Errc::not_found) {
      fail("not_found: no master secret at " + path.string() +
           " (the file next to the database that keys are hashed with; pass --master-key if it lives elsewhere)");
    }
    fail(m.error().to_string());
  }
  return *m;
}

std::unique_ptr<store::Store> open_store(const std::string& data_dir, bool create) {
  const auto path = store::database_path(data_dir);
  std::error_code ec;
  if (!create && !std::filesystem::exists(path, ec)) {
    fail(fmt::format("not_found: no Agora database at {} (check --data-dir or $AGORA_DATA_DIR)",
                     path.string()));
  }
  auto s = store::open_sqlite_store(path);
  if (!s) fail(s.error().to_string());
  return std::move(s).value();
}

void sign_audit(store::Store& db, const crypto::MasterSecret& master) {
  auto signer = store::audit_signer(master);
  if (!signer) {
    std::fprintf(stderr, "warning: cannot sign the audit trail: %s\n", signer.error().to_string().c_str());
    return;
  }
  if (auto c = store::checkpoint_audit(db, **signer, now_ms()); !c) {
    std::fprintf(stderr, "warning: cannot sign the audit trail: %s\n", c.error().to_string().c_str());
  }
}

std::string default_data_dir() {
  const char* env = std::getenv("AGORA_DATA_DIR");
  return env && *env ? env : "./agora-data";
}

void add_data_dir(CLI::App* cmd, std::string& dir) {
  dir = default_data_dir();
  cmd->add_option("--data-dir", dir,
                  "Data directory holding the database (agora.db); default: $AGORA_DATA_DIR, else "
                  "./agora-data")
      ->capture_default_str();
}

void add_master_key(CLI::App* cmd, std::string& path) {
  cmd->add_option("--master-key", path,
                  "The gateway's master secret, which key hashes are keyed with (default: $AGORA_MASTER_KEY, "
                  "else DATA_DIR/master.key; created with mode 0600 when a first credential is made)");
}

}  // namespace agora::cli
