// What the operator's commands (keys, providers, audit) share: the data
// directory, the database and the master secret.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "crypto/master_secret.h"
#include "store/store.h"

namespace CLI {
class App;
}

namespace agora::cli {

int64_t now_ms();
// The master secret: --master-key, else $AGORA_MASTER_KEY, else
// DATA_DIR/master.key. `create` when the command may be the first to need
// it (creating a key or a provider). Fails the command when missing.
std::shared_ptr<const crypto::MasterSecret> load_master(const std::string& data_dir, const std::string& flag,
                                                        bool create);
// Opens DIR/agora.db. `create`: make it when missing (create/register);
// otherwise a missing database fails the command, so that a mistyped
// --data-dir does not silently show an empty list or leave a stray
// directory behind.
std::unique_ptr<store::Store> open_store(const std::string& data_dir, bool create);
// Signs the end of the audit trail (after an operator's change), so the
// change is covered by a checkpoint at once. A failure is a warning.
void sign_audit(store::Store& db, const crypto::MasterSecret& master);
// $AGORA_DATA_DIR, else ./agora-data
std::string default_data_dir();
void add_data_dir(CLI::App* cmd, std::string& dir);
void add_master_key(CLI::App* cmd, std::string& path);

}  // namespace agora::cli
