// The SQLite Store: one database file per gateway data directory, shared by
// a running gateway and the `agora keys` / `agora providers` commands.
//
// - The file (and its -wal/-shm companions, which SQLite creates with the
//   same mode) is created with mode 0600; missing parent directories are
//   created (the innermost one 0700).
// - WAL journal (readers never block the writer), synchronous=NORMAL (a
//   commit survives a process crash; a power cut may lose the last few),
//   foreign_keys on, busy_timeout 5 s (a second process waiting on a write
//   lock retries for up to 5 s before failing with `unavailable`).
// - Schema version in PRAGMA user_version; migrations run at open, in one
//   IMMEDIATE transaction, so two processes opening a fresh file at once are
//   safe. A file from a newer build is refused (`unsupported`).
//
// Errors name the operation and carry sqlite3_errmsg: constraint violations
// → invalid_argument, busy/locked → unavailable, not a database/corrupt →
// corrupt, anything else → io_error.
#pragma once

#include <filesystem>
#include <memory>

#include "common/result.h"
#include "store/store.h"

namespace agora::store {

// The schema version this build writes (PRAGMA user_version).
inline constexpr int kSqliteSchemaVersion = 5;

// The database file inside a data directory: data_dir / "agora.db".
std::filesystem::path database_path(const std::filesystem::path& data_dir);

// Opens (creating when missing) the database at `db_path` and brings its
// schema up to date. Errors: io_error (cannot create the directory or file,
// cannot open), corrupt (not an SQLite database), unsupported (schema newer
// than this build), unavailable (locked by another process for > 5 s).
// The returned Store follows store.h's threading rule: one thread at a time.
Result<std::unique_ptr<Store>> open_sqlite_store(const std::filesystem::path& db_path);

}  // namespace agora::store
