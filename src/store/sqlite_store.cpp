#include "store/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "crypto/random.h"
#include "store/audit.h"

namespace agora::store {
namespace {

namespace fs = std::filesystem;

// ---- RAII handles

struct DbCloser {
  // close_v2: safe even if a statement outlives the connection by mistake.
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// SQLITE_TRANSIENT without the old-style cast of the macro: SQLite copies the
// bound bytes.
const sqlite3_destructor_type kTransient =
    reinterpret_cast<sqlite3_destructor_type>(static_cast<intptr_t>(-1));

// ---- errors

Errc errc_for(int rc) {
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      return Errc::invalid_argument;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Errc::unavailable;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Errc::corrupt;
    case SQLITE_TOOBIG:
      return Errc::too_large;
    default:
      return Errc::io_error;
  }
}

// "<op>: <sqlite3_errmsg>" with the code chosen from the extended result code.
Error sql_error(sqlite3* db, std::string_view op) {
  const int rc = db ? sqlite3_extended_errcode(db) : SQLITE_ERROR;
  std::string msg(op);
  msg += ": ";
  msg += db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return make_error(errc_for(rc), std::move(msg));
}

// ---- statements

// A cached prepared statement in use by one call: bind, step, read columns.
// Resets the statement and clears its bindings when it goes out of scope, so
// the cache always holds idle statements. A failed bind is remembered and
// reported by the next step().
class Query {
 public:
  Query(sqlite3* db, sqlite3_stmt* stmt, std::string_view op) : db_(db), stmt_(stmt), op_(op) {}
  ~Query() {
    if (!stmt_) return;
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Query(Query&& o) noexcept
      : db_(o.db_),
        stmt_(std::exchange(o.stmt_, nullptr)),
        op_(o.op_),
        bind_failed_(o.bind_failed_) {}
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;
  Query& operator=(Query&&) = delete;

  Query& bind(int index, std::string_view text) {
    note(sqlite3_bind_text64(stmt_, index, text.data(), text.size(), kTransient, SQLITE_UTF8));
    return *this;
  }
  Query& bind(int index, int64_t v) {
    note(sqlite3_bind_int64(stmt_, index, v));
    return *this;
  }
  Query& bind(int index, double v) {
    note(sqlite3_bind_double(stmt_, index, v));
    return *this;
  }
  Query& bind(int index, std::optional<int64_t> v) {
    note(v ? sqlite3_bind_int64(stmt_, index, *v) : sqlite3_bind_null(stmt_, index));
    return *this;
  }
  Query& bind(int index, const std::string& text) { return bind(index, std::string_view(text)); }
  Query& blob(int index, std::string_view bytes) {
    note(sqlite3_bind_blob64(stmt_, index, bytes.data(), bytes.size(), kTransient));
    return *this;
  }
  Query& bind(int index, const char* text) { return bind(index, std::string_view(text)); }
  Query& bind(int index, const std::optional<std::string>& v) {
    if (v) return bind(index, std::string_view(*v));
    note(sqlite3_bind_null(stmt_, index));
    return *this;
  }

  // true: a row is ready; false: done. Errors: see sql_error().
  Result<bool> step() {
    if (bind_failed_) return sql_error(db_, op_);
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return sql_error(db_, op_);
  }
  // Steps a statement that returns no rows.
  Status run() {
    auto r = step();
    if (!r) return r.error();
    return ok_status();
  }

  std::string text(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    if (!p) return {};
    return std::string(reinterpret_cast<const char*>(p),
                       static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  int64_t int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string blob(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);
    if (!p) return {};
    return std::string(static_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  int32_t int32(int col) const { return sqlite3_column_int(stmt_, col); }
  double real(int col) const { return sqlite3_column_double(stmt_, col); }
  std::optional<int64_t> opt_int64(int col) const {
    if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) return std::nullopt;
    return int64(col);
  }
  std::optional<std::string> opt_text(int col) const {
    if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) return std::nullopt;
    return text(col);
  }

 private:
  void note(int rc) {
    if (rc != SQLITE_OK) bind_failed_ = true;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  std::string_view op_;
  bool bind_failed_ = false;
};

// ---- schema

// Migration i brings the schema from version i to i + 1. Append only: never
// edit a migration that has shipped.
constexpr const char* kMigrations[] = {
    // 1: keys, providers, generation records, the node snapshot.
    R"sql(
CREATE TABLE api_keys (
  id         TEXT PRIMARY KEY,
  name       TEXT NOT NULL,
  prefix     TEXT NOT NULL,
  hash       TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  revoked_ms INTEGER
) STRICT;
CREATE UNIQUE INDEX api_keys_hash ON api_keys(hash);

CREATE TABLE providers (
  id         TEXT PRIMARY KEY,
  name       TEXT NOT NULL,
  prefix     TEXT NOT NULL,
  hash       TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  revoked_ms INTEGER
) STRICT;
CREATE UNIQUE INDEX providers_hash ON providers(hash);
CREATE UNIQUE INDEX providers_name ON providers(name);

CREATE TABLE generations (
  id                   TEXT PRIMARY KEY,
  key_id               TEXT NOT NULL,
  provider_id          TEXT NOT NULL,
  node_id              TEXT NOT NULL,
  model                TEXT NOT NULL,
  model_sha256         TEXT NOT NULL,
  attestation          TEXT NOT NULL,
  finish_reason        TEXT NOT NULL,
  stream               INTEGER NOT NULL,
  prompt_tokens        INTEGER NOT NULL,
  completion_tokens    INTEGER NOT NULL,
  cached_prompt_tokens INTEGER NOT NULL,
  queued_ms            REAL NOT NULL,
  prompt_ms            REAL NOT NULL,
  decode_ms            REAL NOT NULL,
  total_ms             REAL NOT NULL,
  created_ms           INTEGER NOT NULL
) STRICT;
CREATE INDEX generations_key_created ON generations(key_id, created_ms);

CREATE TABLE nodes (
  node_id      TEXT PRIMARY KEY,
  provider_id  TEXT NOT NULL,
  region       TEXT NOT NULL,
  agent        TEXT NOT NULL,
  models_json  TEXT NOT NULL,
  slots        INTEGER NOT NULL,
  slots_busy   INTEGER NOT NULL,
  connected_ms INTEGER NOT NULL,
  updated_ms   INTEGER NOT NULL
) STRICT;
)sql",
    // 2: a counter that moves whenever keys or providers change, from any
    // connection. The gateway polls it (PRAGMA data_version would also move
    // on every batch of generation records its own writer commits).
    R"sql(
CREATE TABLE credentials_version (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  v  INTEGER NOT NULL
) STRICT;
INSERT INTO credentials_version (id, v) VALUES (1, 0);
CREATE TRIGGER api_keys_insert AFTER INSERT ON api_keys BEGIN UPDATE credentials_version SET v = v + 1; END;
CREATE TRIGGER api_keys_update AFTER UPDATE ON api_keys BEGIN UPDATE credentials_version SET v = v + 1; END;
CREATE TRIGGER api_keys_delete AFTER DELETE ON api_keys BEGIN UPDATE credentials_version SET v = v + 1; END;
CREATE TRIGGER providers_insert AFTER INSERT ON providers BEGIN UPDATE credentials_version SET v = v + 1; END;
CREATE TRIGGER providers_update AFTER UPDATE ON providers BEGIN UPDATE credentials_version SET v = v + 1; END;
CREATE TRIGGER providers_delete AFTER DELETE ON providers BEGIN UPDATE credentials_version SET v = v + 1; END;
)sql",
    // 3: keyed hashes (HMAC under the master secret; older rows keep their
    // plain SHA-256 and are marked so), admin tokens, per-key limits,
    // expiry, model allow-lists and rotation.
    R"sql(
ALTER TABLE api_keys ADD COLUMN hash_scheme TEXT NOT NULL DEFAULT 'sha256';
ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'client';
ALTER TABLE api_keys ADD COLUMN expires_ms INTEGER;
ALTER TABLE api_keys ADD COLUMN rpm INTEGER;
ALTER TABLE api_keys ADD COLUMN tpm INTEGER;
ALTER TABLE api_keys ADD COLUMN max_concurrent INTEGER;
ALTER TABLE api_keys ADD COLUMN models TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN lineage_id TEXT;
ALTER TABLE api_keys ADD COLUMN replaced_by TEXT;
ALTER TABLE providers ADD COLUMN hash_scheme TEXT NOT NULL DEFAULT 'sha256';
)sql",
    // 4: provider status (suspend / terminate), the provider agreement and
    // who accepted which version, the hash-chained audit trail and its
    // signed checkpoints.
    R"sql(
ALTER TABLE providers ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
ALTER TABLE nodes ADD COLUMN identity_key TEXT NOT NULL DEFAULT '';
ALTER TABLE providers ADD COLUMN status_ms INTEGER;

CREATE TABLE agreements (
  version      INTEGER PRIMARY KEY,
  sha256       TEXT NOT NULL,
  text         TEXT NOT NULL,
  published_ms INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX agreements_sha256 ON agreements(sha256);
CREATE TRIGGER agreements_insert AFTER INSERT ON agreements BEGIN UPDATE credentials_version SET v = v + 1; END;

CREATE TABLE agreement_acceptances (
  provider_id TEXT NOT NULL,
  node_id     TEXT NOT NULL,
  version     INTEGER NOT NULL,
  sha256      TEXT NOT NULL,
  accepted_ms INTEGER NOT NULL,
  PRIMARY KEY (provider_id, node_id, version)
) STRICT;

CREATE TABLE audit_log (
  seq         INTEGER PRIMARY KEY,
  time_ms     INTEGER NOT NULL,
  kind        TEXT NOT NULL,
  key_id      TEXT NOT NULL,
  provider_id TEXT NOT NULL,
  entry       TEXT NOT NULL,
  prev_hash   TEXT NOT NULL,
  hash        TEXT NOT NULL
) STRICT;
CREATE INDEX audit_log_time ON audit_log(time_ms);
CREATE INDEX audit_log_key ON audit_log(key_id, seq) WHERE key_id != '';
CREATE INDEX audit_log_provider ON audit_log(provider_id, seq) WHERE provider_id != '';

-- Opt-in conversation memory: AES-256-GCM ciphertext only (the key is
-- derived from the master secret per key lineage); the conversation id is
-- stored as a keyed hash, the owner as its key lineage.
CREATE TABLE conversations (
  owner      TEXT NOT NULL,
  id_mac     TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  expires_ms INTEGER,
  nonce      BLOB NOT NULL,
  ciphertext BLOB NOT NULL,
  PRIMARY KEY (owner, id_mac)
) STRICT;
CREATE INDEX conversations_expiry ON conversations(expires_ms) WHERE expires_ms IS NOT NULL;

CREATE TABLE audit_checkpoints (
  seq        INTEGER PRIMARY KEY,
  hash       TEXT NOT NULL,
  time_ms    INTEGER NOT NULL,
  public_key TEXT NOT NULL,
  signature  TEXT NOT NULL
) STRICT;
)sql",
    // 5: each connected node's attestation (level, verdict, expiry) as the
    // gateway last saw it, for `agora providers list`.
    R"sql(
ALTER TABLE nodes ADD COLUMN attestation TEXT NOT NULL DEFAULT '';
)sql",
};
static_assert(std::size(kMigrations) == kSqliteSchemaVersion, "one migration per schema version");

// ---- SQL (each literal is also its statement-cache key)

constexpr const char* kBegin = "BEGIN IMMEDIATE";
constexpr const char* kCommit = "COMMIT";
constexpr const char* kRollback = "ROLLBACK";

#define AGORA_KEY_COLUMNS                                                                          \
  "id, name, prefix, hash, created_ms, revoked_ms, hash_scheme, role, expires_ms, rpm, tpm, " \
  "max_concurrent, models, COALESCE(lineage_id, id), replaced_by"
constexpr const char* kInsertKey =
    "INSERT INTO api_keys (id, name, prefix, hash, created_ms, hash_scheme, role, expires_ms, rpm, tpm, "
    "max_concurrent, models, lineage_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
constexpr const char* kListKeys = "SELECT " AGORA_KEY_COLUMNS " FROM api_keys ORDER BY created_ms, rowid";
// id before hash; ids ("key_…") and hashes (64 hex) cannot collide anyway.
constexpr const char* kFindKey =
    "SELECT " AGORA_KEY_COLUMNS " FROM api_keys WHERE id = ?1 OR hash = ?1 ORDER BY id = ?1 DESC LIMIT 1";
constexpr const char* kRevokeKey =
    "UPDATE api_keys SET revoked_ms = COALESCE(revoked_ms, ?2) WHERE id = ("
    "  SELECT id FROM api_keys WHERE id = ?1 OR hash = ?1 ORDER BY id = ?1 DESC LIMIT 1)"
    " RETURNING " AGORA_KEY_COLUMNS;
constexpr const char* kRetireKey =
    "UPDATE api_keys SET expires_ms = MIN(COALESCE(expires_ms, ?2), ?2), replaced_by = ?3 WHERE id = ?1";
#undef AGORA_KEY_COLUMNS

constexpr const char* kInsertProvider =
    "INSERT INTO providers (id, name, prefix, hash, created_ms, hash_scheme) VALUES (?1, ?2, ?3, ?4, ?5, "
    "'hmac-sha256')";
#define AGORA_PROVIDER_COLUMNS "id, name, prefix, hash, created_ms, revoked_ms, hash_scheme, status, status_ms"
constexpr const char* kListProviders =
    "SELECT " AGORA_PROVIDER_COLUMNS " FROM providers ORDER BY created_ms, rowid";
constexpr const char* kFindProvider =
    "SELECT " AGORA_PROVIDER_COLUMNS " FROM providers WHERE id = ?1 OR name = ?1 OR hash = ?1"
    " ORDER BY CASE WHEN id = ?1 THEN 0 WHEN name = ?1 THEN 1 ELSE 2 END LIMIT 1";
constexpr const char* kSetProviderStatus =
    "UPDATE providers SET status = ?2, status_ms = ?3,"
    " revoked_ms = CASE WHEN ?2 = 'terminated' THEN COALESCE(revoked_ms, ?3) ELSE revoked_ms END WHERE id = ?1";
constexpr const char* kProviderTotals =
    "SELECT COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0) FROM generations"
    " WHERE provider_id = ?1";

constexpr const char* kInsertAgreement =
    "INSERT INTO agreements (version, sha256, text, published_ms) VALUES (?1, ?2, ?3, ?4)";
constexpr const char* kCurrentAgreement =
    "SELECT version, sha256, text, published_ms FROM agreements ORDER BY version DESC LIMIT 1";
constexpr const char* kGetAgreement = "SELECT version, sha256, text, published_ms FROM agreements WHERE version = ?1";
constexpr const char* kInsertAcceptance =
    "INSERT OR IGNORE INTO agreement_acceptances (provider_id, node_id, version, sha256, accepted_ms)"
    " VALUES (?1, ?2, ?3, ?4, ?5)";
constexpr const char* kListAcceptances =
    "SELECT provider_id, node_id, version, sha256, accepted_ms FROM agreement_acceptances"
    " ORDER BY accepted_ms, provider_id, node_id";

constexpr const char* kLastAudit = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";
constexpr const char* kInsertAudit =
    "INSERT INTO audit_log (seq, time_ms, kind, key_id, provider_id, entry, prev_hash, hash)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
constexpr const char* kScanAudit =
    "SELECT seq, time_ms, kind, key_id, provider_id, entry, prev_hash, hash FROM audit_log"
    " WHERE seq > ?1 AND (?2 IS NULL OR key_id = ?2) AND (?3 IS NULL OR provider_id = ?3)"
    " AND (?4 IS NULL OR kind = ?4) AND (?5 IS NULL OR time_ms >= ?5) AND (?6 IS NULL OR time_ms < ?6)"
    " ORDER BY seq LIMIT ?7";
constexpr const char* kLastCheckpoint = "SELECT MAX(seq) FROM audit_checkpoints";
constexpr const char* kInsertCheckpoint =
    "INSERT INTO audit_checkpoints (seq, hash, time_ms, public_key, signature) VALUES (?1, ?2, ?3, ?4, ?5)";
constexpr const char* kListCheckpoints =
    "SELECT seq, hash, time_ms, public_key, signature FROM audit_checkpoints ORDER BY seq";
// Exactly one provider: the one whose id matches, else whose name, else hash
// (a provider may be *named* like another's id).
constexpr const char* kRevokeProvider =
    "UPDATE providers SET revoked_ms = COALESCE(revoked_ms, ?2) WHERE id = ("
    "  SELECT id FROM providers WHERE id = ?1 OR name = ?1 OR hash = ?1"
    "  ORDER BY CASE WHEN id = ?1 THEN 0 WHEN name = ?1 THEN 1 ELSE 2 END LIMIT 1)"
    " RETURNING " AGORA_PROVIDER_COLUMNS;
#undef AGORA_PROVIDER_COLUMNS

constexpr const char* kInsertGeneration =
    "INSERT INTO generations (id, key_id, provider_id, node_id, model, model_sha256, attestation, "
    "finish_reason, stream, prompt_tokens, completion_tokens, cached_prompt_tokens, queued_ms, "
    "prompt_ms, "
    "decode_ms, total_ms, created_ms) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)";
constexpr const char* kGetGeneration =
    "SELECT id, key_id, provider_id, node_id, model, model_sha256, attestation, finish_reason, "
    "stream, "
    "prompt_tokens, completion_tokens, cached_prompt_tokens, queued_ms, prompt_ms, decode_ms, "
    "total_ms, "
    "created_ms FROM generations WHERE id = ?1";

constexpr const char* kDeleteNodes = "DELETE FROM nodes";
constexpr const char* kInsertNode =
    "INSERT INTO nodes (node_id, provider_id, region, agent, models_json, slots, slots_busy, "
    "connected_ms, updated_ms, identity_key, attestation) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
constexpr const char* kListNodes =
    "SELECT node_id, provider_id, region, agent, models_json, slots, slots_busy, connected_ms, "
    "updated_ms, identity_key, attestation "
    "FROM nodes ORDER BY provider_id, connected_ms, node_id";

constexpr const char* kGetConversation =
    "SELECT owner, id_mac, created_ms, updated_ms, expires_ms, nonce, ciphertext FROM conversations"
    " WHERE owner = ?1 AND id_mac = ?2";
constexpr const char* kPutConversation =
    "INSERT INTO conversations (owner, id_mac, created_ms, updated_ms, expires_ms, nonce, ciphertext)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (owner, id_mac) DO UPDATE SET updated_ms = excluded.updated_ms,"
    " expires_ms = excluded.expires_ms, nonce = excluded.nonce, ciphertext = excluded.ciphertext";
constexpr const char* kDeleteConversation = "DELETE FROM conversations WHERE owner = ?1 AND id_mac = ?2";
constexpr const char* kDeleteExpiredConversations =
    "DELETE FROM conversations WHERE expires_ms IS NOT NULL AND expires_ms <= ?1";
constexpr const char* kTruncateWal = "PRAGMA wal_checkpoint(TRUNCATE)";

constexpr const char* kCredentialsVersion = "SELECT v FROM credentials_version WHERE id = 1";

// Model allow-lists are stored one name per line (names hold no control
// characters).
std::string join_models(const std::vector<std::string>& models) {
  std::string out;
  for (const auto& m : models) {
    if (!out.empty()) out += '\n';
    out += m;
  }
  return out;
}
std::vector<std::string> split_models(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

ApiKeyRecord read_key(const Query& q) {
  ApiKeyRecord r;
  r.id = q.text(0);
  r.name = q.text(1);
  r.prefix = q.text(2);
  r.hash = q.text(3);
  r.created_ms = q.int64(4);
  r.revoked_ms = q.opt_int64(5);
  r.hash_scheme = q.text(6);
  r.role = q.text(7);
  r.expires_ms = q.opt_int64(8);
  r.rpm = q.opt_int64(9);
  r.tpm = q.opt_int64(10);
  r.max_concurrent = q.opt_int64(11);
  r.models = split_models(q.text(12));
  r.lineage_id = q.text(13);
  r.replaced_by = q.opt_text(14);
  return r;
}

ProviderRecord read_provider(const Query& q) {
  ProviderRecord r;
  r.id = q.text(0);
  r.name = q.text(1);
  r.prefix = q.text(2);
  r.hash = q.text(3);
  r.created_ms = q.int64(4);
  r.revoked_ms = q.opt_int64(5);
  r.hash_scheme = q.text(6);
  r.status = q.text(7);
  r.status_ms = q.opt_int64(8);
  return r;
}

AgreementRecord read_agreement(const Query& q) {
  AgreementRecord a;
  a.version = q.int32(0);
  a.sha256 = q.text(1);
  a.text = q.text(2);
  a.published_ms = q.int64(3);
  return a;
}

AcceptanceRecord read_acceptance(const Query& q) {
  AcceptanceRecord a;
  a.provider_id = q.text(0);
  a.node_id = q.text(1);
  a.version = q.int32(2);
  a.sha256 = q.text(3);
  a.accepted_ms = q.int64(4);
  return a;
}

AuditCheckpoint read_checkpoint(const Query& q) {
  AuditCheckpoint c;
  c.seq = q.int64(0);
  c.hash = q.text(1);
  c.time_ms = q.int64(2);
  c.public_key = q.text(3);
  c.signature = q.text(4);
  return c;
}

AuditEntry read_audit(const Query& q) {
  AuditEntry e;
  e.seq = q.int64(0);
  e.time_ms = q.int64(1);
  e.kind = q.text(2);
  e.key_id = q.text(3);
  e.provider_id = q.text(4);
  e.entry = q.text(5);
  e.prev_hash = q.text(6);
  e.hash = q.text(7);
  return e;
}

template <class Record>
Record read_credential(const Query& q) {
  if constexpr (std::is_same_v<Record, ApiKeyRecord>) {
    return read_key(q);
  } else {
    return read_provider(q);
  }
}

GenerationRecord read_generation(const Query& q) {
  GenerationRecord g;
  g.id = q.text(0);
  g.key_id = q.text(1);
  g.provider_id = q.text(2);
  g.node_id = q.text(3);
  g.model = q.text(4);
  g.model_sha256 = q.text(5);
  g.attestation = q.text(6);
  g.finish_reason = q.text(7);
  g.stream = q.int64(8) != 0;
  g.prompt_tokens = q.int32(9);
  g.completion_tokens = q.int32(10);
  g.cached_prompt_tokens = q.int32(11);
  g.queued_ms = q.real(12);
  g.prompt_ms = q.real(13);
  g.decode_ms = q.real(14);
  g.total_ms = q.real(15);
  g.created_ms = q.int64(16);
  return g;
}

NodeRecord read_node(const Query& q) {
  NodeRecord n;
  n.node_id = q.text(0);
  n.provider_id = q.text(1);
  n.region = q.text(2);
  n.agent = q.text(3);
  n.models_json = q.text(4);
  n.slots = q.int32(5);
  n.slots_busy = q.int32(6);
  n.connected_ms = q.int64(7);
  n.updated_ms = q.int64(8);
  n.identity_key = q.text(9);
  n.attestation_json = q.text(10);
  return n;
}

// True when a failed insert hit a UNIQUE/PRIMARY KEY constraint.
bool is_unique_violation(sqlite3* db) {
  const int rc = sqlite3_extended_errcode(db);
  return rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY;
}

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(DbPtr db) : db_(std::move(db)) {}

  // Pragmas and migrations; called once by open_sqlite_store().
  Status init();

  using Store::create_api_key;
  Result<ApiKeyRecord> create_api_key(const ApiKeyRecord& spec) override;
  Result<std::vector<ApiKeyRecord>> list_api_keys() override;
  Result<ApiKeyRecord> find_api_key(const std::string& id_or_hash) override;
  Result<ApiKeyRecord> revoke_api_key(const std::string& id_or_hash, int64_t now_ms) override;
  Result<std::pair<ApiKeyRecord, ApiKeyRecord>> rotate_api_key(const std::string& old_id,
                                                               const ApiKeyRecord& successor,
                                                               int64_t grace_until_ms) override;

  Result<ProviderRecord> create_provider(const std::string& name, const std::string& prefix,
                                         const std::string& hash, int64_t now_ms) override;
  Result<std::vector<ProviderRecord>> list_providers() override;
  Result<ProviderRecord> revoke_provider(const std::string& id_name_or_hash,
                                         int64_t now_ms) override;

  Result<ProviderRecord> find_provider(const std::string& id_name_or_hash) override;
  Result<ProviderRecord> set_provider_status(const std::string& id_name_or_hash, const std::string& status,
                                             int64_t now_ms, std::span<const AuditEvent> audit) override;
  Result<ProviderTotals> provider_totals(const std::string& provider_id) override;

  Status publish_agreement(const AgreementRecord& a, std::span<const AuditEvent> audit) override;
  Result<std::optional<AgreementRecord>> current_agreement() override;
  Result<AgreementRecord> get_agreement(int32_t version) override;
  Result<bool> record_acceptance(const AcceptanceRecord& a, std::span<const AuditEvent> audit) override;
  Result<std::vector<AcceptanceRecord>> list_acceptances() override;

  Status append_audit(std::span<const AuditEvent> events) override;
  Status scan_audit(const AuditFilter& filter, const std::function<bool(const AuditEntry&)>& each) override;
  Result<std::optional<AuditCheckpoint>> checkpoint_audit(const std::function<std::string(std::string_view)>& sign,
                                                          const std::string& public_key, int64_t now_ms) override;
  Result<std::vector<AuditCheckpoint>> list_audit_checkpoints() override;

  Status insert_generations(std::span<const GenerationRecord> records,
                            std::span<const AuditEvent> audit) override;
  Result<GenerationRecord> get_generation(const std::string& id) override;

  Status replace_nodes(std::span<const NodeRecord> nodes) override;
  Result<std::vector<NodeRecord>> list_nodes() override;

  Result<std::optional<ConversationRecord>> get_conversation(const std::string& owner,
                                                             const std::string& id_mac) override;
  Status put_conversation(const ConversationRecord& c) override;
  Result<bool> delete_conversation(const std::string& owner, const std::string& id_mac) override;
  Result<int64_t> delete_expired_conversations(int64_t now_ms) override;
  Status purge_deleted() override;

  Result<uint64_t> credentials_version() override;

 private:
  // An IMMEDIATE transaction that rolls back unless commit() succeeded.
  class Transaction {
   public:
    explicit Transaction(SqliteStore& s) : s_(s) {}
    ~Transaction() {
      if (!open_) return;
      if (auto q = s_.query(kRollback, "rollback")) (void)q->run();
    }
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;

    Status begin(std::string_view op) {
      auto q = s_.query(kBegin, op);
      if (!q) return q.error();
      if (auto st = q->run(); !st) return st;
      open_ = true;
      return ok_status();
    }
    Status commit(std::string_view op) {
      auto q = s_.query(kCommit, op);
      if (!q) return q.error();
      if (auto st = q->run(); !st) return st;
      open_ = false;
      return ok_status();
    }

   private:
    SqliteStore& s_;
    bool open_ = false;
  };

  // The cached statement for `sql` (a literal from above), prepared on first
  // use. Errors: the prepare error, named `op`.
  Result<Query> query(const char* sql, std::string_view op);

  template <class Record>
  Result<Record> create_credential(const char* sql, std::string_view op, std::string_view id_prefix,
                                   std::string_view what, const std::string& name,
                                   const std::string& prefix, const std::string& hash,
                                   int64_t now_ms);
  Result<ApiKeyRecord> insert_key(const ApiKeyRecord& spec, std::string_view op);
  // Inside a transaction: appends after the last entry.
  Status append_audit_locked(std::span<const AuditEvent> events, std::string_view op);
  // Every row of `sql` (no parameters), each made by `read`.
  template <class Read>
  auto collect(const char* sql, std::string_view op, Read read) -> Result<std::vector<decltype(read(
      std::declval<const Query&>()))>>;
  template <class Record>
  Result<Record> revoke_credential(const char* sql, std::string_view op, std::string_view what,
                                   const std::string& key, int64_t now_ms);

  DbPtr db_;
  // Destroyed before db_ (declared after it).
  std::unordered_map<const char*, StmtPtr> statements_;
};

Result<Query> SqliteStore::query(const char* sql, std::string_view op) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v3(db_.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr) !=
        SQLITE_OK) {
      sqlite3_finalize(raw);
      return sql_error(db_.get(), op);
    }
    it = statements_.emplace(sql, StmtPtr(raw)).first;
  }
  return Query(db_.get(), it->second.get(), op);
}

Status SqliteStore::init() {
  sqlite3* db = db_.get();
  if (sqlite3_busy_timeout(db, 5000) != SQLITE_OK) return sql_error(db, "set busy_timeout");
  auto exec = [db](const char* sql, std::string_view op) -> Status {
    if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return sql_error(db, op);
    return ok_status();
  };
  {
    // journal_mode answers with the mode it ended up in (it stays "delete"
    // on file systems without shared memory).
    auto q = query("PRAGMA journal_mode = WAL", "set journal_mode=WAL");
    if (!q) return q.error();
    auto row = q->step();
    if (!row) return row.error();
    const std::string mode = *row ? q->text(0) : "";
    if (mode != "wal")
      return make_error(Errc::unsupported,
                        "set journal_mode=WAL: the database stayed in '" + mode + "'");
  }
  if (auto st = exec("PRAGMA synchronous = NORMAL", "set synchronous=NORMAL"); !st) return st;
  if (auto st = exec("PRAGMA foreign_keys = ON", "set foreign_keys=ON"); !st) return st;
  // Deleted rows (conversations) are overwritten with zeros, not just
  // unlinked; purge_deleted() then clears the WAL's older copies.
  if (auto st = exec("PRAGMA secure_delete = ON", "set secure_delete=ON"); !st) return st;

  Transaction tx(*this);
  if (auto st = tx.begin("begin schema migration"); !st) return st;
  int version = 0;
  {
    auto q = query("PRAGMA user_version", "read schema version");
    if (!q) return q.error();
    auto row = q->step();
    if (!row) return row.error();
    if (*row) version = q->int32(0);
  }
  if (version > kSqliteSchemaVersion || version < 0) {
    return make_error(Errc::unsupported,
                      "the database has schema version " + std::to_string(version) +
                          ", newer than this build's " + std::to_string(kSqliteSchemaVersion));
  }
  if (version == kSqliteSchemaVersion)
    return ok_status();  // nothing written: the rollback is a no-op
  for (int v = version; v < kSqliteSchemaVersion; ++v) {
    const std::string op = "migrate schema to version " + std::to_string(v + 1);
    if (auto st = exec(kMigrations[v], op); !st) return st;
  }
  const std::string set_version = "PRAGMA user_version = " + std::to_string(kSqliteSchemaVersion);
  if (auto st = exec(set_version.c_str(), "set schema version"); !st) return st;
  return tx.commit("commit schema migration");
}

template <class Record>
Result<Record> SqliteStore::create_credential(const char* sql, std::string_view op,
                                              std::string_view id_prefix, std::string_view what,
                                              const std::string& name, const std::string& prefix,
                                              const std::string& hash, int64_t now_ms) {
  if (name.empty())
    return make_error(Errc::invalid_argument, std::string(op) + ": the name is empty");
  if (hash.empty())
    return make_error(Errc::invalid_argument, std::string(op) + ": the hash is empty");
  Record r;
  r.id = std::string(id_prefix) + crypto::random_base62(16);
  r.name = name;
  r.prefix = prefix;
  r.hash = hash;
  r.created_ms = now_ms;
  auto q = query(sql, op);
  if (!q) return q.error();
  q->bind(1, r.id).bind(2, r.name).bind(3, r.prefix).bind(4, r.hash).bind(5, r.created_ms);
  if (auto st = q->run(); !st) {
    if (!is_unique_violation(db_.get())) return st.error();
    // Which one: the name (providers only) or the hash.
    const std::string detail = sqlite3_errmsg(db_.get());
    if (detail.find(".name") != std::string::npos) {
      return make_error(Errc::invalid_argument, std::string(op) + ": a " + std::string(what) +
                                                    " named '" + name + "' already exists");
    }
    return make_error(Errc::invalid_argument, std::string(op) + ": a " + std::string(what) +
                                                  " with that hash already exists (" + detail +
                                                  ")");
  }
  return r;
}

template <class Read>
auto SqliteStore::collect(const char* sql, std::string_view op, Read read)
    -> Result<std::vector<decltype(read(std::declval<const Query&>()))>> {
  auto q = query(sql, op);
  if (!q) return q.error();
  std::vector<decltype(read(std::declval<const Query&>()))> out;
  for (;;) {
    auto row = q->step();
    if (!row) return row.error();
    if (!*row) break;
    out.push_back(read(*q));
  }
  return out;
}

template <class Record>
Result<Record> SqliteStore::revoke_credential(const char* sql, std::string_view op,
                                              std::string_view what, const std::string& key,
                                              int64_t now_ms) {
  auto q = query(sql, op);
  if (!q) return q.error();
  q->bind(1, key).bind(2, now_ms);
  auto row = q->step();  // the first step makes the change
  if (!row) return row.error();
  if (!*row)
    return make_error(Errc::not_found,
                      std::string(op) + ": no " + std::string(what) + " '" + key + "'");
  Record r = read_credential<Record>(*q);
  // Drain the RETURNING rows (one at most) so the statement completes.
  for (;;) {
    auto more = q->step();
    if (!more) return more.error();
    if (!*more) break;
  }
  return r;
}

Result<ApiKeyRecord> SqliteStore::insert_key(const ApiKeyRecord& spec, std::string_view op) {
  if (spec.name.empty()) return make_error(Errc::invalid_argument, std::string(op) + ": the name is empty");
  if (spec.hash.empty()) return make_error(Errc::invalid_argument, std::string(op) + ": the hash is empty");
  ApiKeyRecord r = spec;
  r.id = "key_" + crypto::random_base62(16);
  if (r.lineage_id.empty()) r.lineage_id = r.id;
  r.revoked_ms.reset();
  r.replaced_by.reset();
  auto q = query(kInsertKey, op);
  if (!q) return q.error();
  q->bind(1, r.id)
      .bind(2, r.name)
      .bind(3, r.prefix)
      .bind(4, r.hash)
      .bind(5, r.created_ms)
      .bind(6, r.hash_scheme)
      .bind(7, r.role)
      .bind(8, r.expires_ms)
      .bind(9, r.rpm)
      .bind(10, r.tpm)
      .bind(11, r.max_concurrent)
      .bind(12, join_models(r.models))
      .bind(13, r.lineage_id);
  if (auto st = q->run(); !st) {
    if (!is_unique_violation(db_.get())) return st.error();
    return make_error(Errc::invalid_argument, std::string(op) + ": a key with that hash already exists");
  }
  return r;
}

Result<ApiKeyRecord> SqliteStore::create_api_key(const ApiKeyRecord& spec) {
  return insert_key(spec, "create_api_key");
}

Result<ApiKeyRecord> SqliteStore::find_api_key(const std::string& id_or_hash) {
  auto q = query(kFindKey, "find_api_key");
  if (!q) return q.error();
  q->bind(1, id_or_hash);
  auto row = q->step();
  if (!row) return row.error();
  if (!*row) return make_error(Errc::not_found, "find_api_key: no API key '" + id_or_hash + "'");
  return read_key(*q);
}

Result<std::pair<ApiKeyRecord, ApiKeyRecord>> SqliteStore::rotate_api_key(const std::string& old_id,
                                                                          const ApiKeyRecord& successor,
                                                                          int64_t grace_until_ms) {
  constexpr std::string_view kOp = "rotate_api_key";
  Transaction tx(*this);
  if (auto st = tx.begin(kOp); !st) return st.error();
  auto old = find_api_key(old_id);
  if (!old) return old.error();
  if (old->revoked_ms) return make_error(Errc::invalid_argument, "rotate_api_key: " + old->id + " is revoked");
  if (old->expires_ms && *old->expires_ms <= successor.created_ms) {
    return make_error(Errc::invalid_argument, "rotate_api_key: " + old->id + " has expired");
  }
  if (old->replaced_by) {
    return make_error(Errc::invalid_argument,
                      "rotate_api_key: " + old->id + " was already rotated to " + *old->replaced_by);
  }
  ApiKeyRecord spec = successor;
  spec.lineage_id = old->lineage_id;
  auto fresh = insert_key(spec, kOp);
  if (!fresh) return fresh.error();
  {
    auto q = query(kRetireKey, kOp);
    if (!q) return q.error();
    q->bind(1, old->id).bind(2, grace_until_ms).bind(3, fresh->id);
    if (auto st = q->run(); !st) return st.error();
  }
  auto updated = find_api_key(old->id);
  if (!updated) return updated.error();
  if (auto st = tx.commit(kOp); !st) return st.error();
  return std::make_pair(std::move(*updated), std::move(*fresh));
}

Result<std::vector<ApiKeyRecord>> SqliteStore::list_api_keys() {
  return collect(kListKeys, "list_api_keys", read_key);
}

Result<ApiKeyRecord> SqliteStore::revoke_api_key(const std::string& id_or_hash, int64_t now_ms) {
  return revoke_credential<ApiKeyRecord>(kRevokeKey, "revoke_api_key", "API key", id_or_hash,
                                         now_ms);
}

Result<ProviderRecord> SqliteStore::create_provider(const std::string& name,
                                                    const std::string& prefix,
                                                    const std::string& hash, int64_t now_ms) {
  return create_credential<ProviderRecord>(kInsertProvider, "create_provider", "prov_", "provider",
                                           name, prefix, hash, now_ms);
}

Result<std::vector<ProviderRecord>> SqliteStore::list_providers() {
  return collect(kListProviders, "list_providers", read_provider);
}

Result<ProviderRecord> SqliteStore::revoke_provider(const std::string& id_name_or_hash,
                                                    int64_t now_ms) {
  return revoke_credential<ProviderRecord>(kRevokeProvider, "revoke_provider", "provider",
                                           id_name_or_hash, now_ms);
}

Status SqliteStore::insert_generations(std::span<const GenerationRecord> records,
                                       std::span<const AuditEvent> audit) {
  if (records.empty() && audit.empty()) return ok_status();
  constexpr std::string_view kOp = "insert_generations";
  Transaction tx(*this);
  if (auto st = tx.begin(kOp); !st) return st;
  if (auto st = append_audit_locked(audit, kOp); !st) return st;
  for (const auto& g : records) {
    auto q = query(kInsertGeneration, kOp);
    if (!q) return q.error();
    q->bind(1, g.id)
        .bind(2, g.key_id)
        .bind(3, g.provider_id)
        .bind(4, g.node_id)
        .bind(5, g.model)
        .bind(6, g.model_sha256)
        .bind(7, g.attestation)
        .bind(8, g.finish_reason)
        .bind(9, int64_t{g.stream ? 1 : 0})
        .bind(10, int64_t{g.prompt_tokens})
        .bind(11, int64_t{g.completion_tokens})
        .bind(12, int64_t{g.cached_prompt_tokens})
        .bind(13, g.queued_ms)
        .bind(14, g.prompt_ms)
        .bind(15, g.decode_ms)
        .bind(16, g.total_ms)
        .bind(17, g.created_ms);
    if (auto st = q->run(); !st) return st;
  }
  return tx.commit(kOp);
}

Result<GenerationRecord> SqliteStore::get_generation(const std::string& id) {
  auto q = query(kGetGeneration, "get_generation");
  if (!q) return q.error();
  q->bind(1, id);
  auto row = q->step();
  if (!row) return row.error();
  if (!*row) return make_error(Errc::not_found, "get_generation: no generation '" + id + "'");
  return read_generation(*q);
}

Result<ProviderRecord> SqliteStore::find_provider(const std::string& id_name_or_hash) {
  auto q = query(kFindProvider, "find_provider");
  if (!q) return q.error();
  q->bind(1, id_name_or_hash);
  auto row = q->step();
  if (!row) return row.error();
  if (!*row) return make_error(Errc::not_found, "find_provider: no provider '" + id_name_or_hash + "'");
  return read_provider(*q);
}

Result<ProviderRecord> SqliteStore::set_provider_status(const std::string& id_name_or_hash, const std::string& status,
                                                        int64_t now_ms, std::span<const AuditEvent> audit) {
  constexpr std::string_view kOp = "set_provider_status";
  if (status != kProviderActive && status != kProviderSuspended && status != kProviderTerminated) {
    return make_error(Errc::invalid_argument, "set_provider_status: unknown status '" + status + "'");
  }
  Transaction tx(*this);
  if (auto st = tx.begin(kOp); !st) return st.error();
  auto p = find_provider(id_name_or_hash);
  if (!p) return p.error();
  if (p->status == kProviderTerminated) {
    return make_error(Errc::invalid_argument, "provider " + p->id + " was terminated (final)");
  }
  if (p->revoked_ms && status != kProviderTerminated) {
    return make_error(Errc::invalid_argument, "provider " + p->id + " is revoked");
  }
  {
    auto q = query(kSetProviderStatus, kOp);
    if (!q) return q.error();
    q->bind(1, p->id).bind(2, status).bind(3, now_ms);
    if (auto st = q->run(); !st) return st.error();
  }
  if (auto st = append_audit_locked(audit, kOp); !st) return st.error();
  auto updated = find_provider(p->id);
  if (!updated) return updated.error();
  if (auto st = tx.commit(kOp); !st) return st.error();
  return updated;
}

Result<ProviderTotals> SqliteStore::provider_totals(const std::string& provider_id) {
  auto q = query(kProviderTotals, "provider_totals");
  if (!q) return q.error();
  q->bind(1, provider_id);
  auto row = q->step();
  if (!row) return row.error();
  ProviderTotals t;
  if (*row) {
    t.jobs = q->int64(0);
    t.prompt_tokens = q->int64(1);
    t.completion_tokens = q->int64(2);
  }
  return t;
}

Status SqliteStore::publish_agreement(const AgreementRecord& a, std::span<const AuditEvent> audit) {
  constexpr std::string_view kOp = "publish_agreement";
  Transaction tx(*this);
  if (auto st = tx.begin(kOp); !st) return st;
  auto current = current_agreement();
  if (!current) return current.error();
  if (*current && (*current)->version >= a.version) {
    return make_error(Errc::invalid_argument, "publish_agreement: version " + std::to_string(a.version) +
                                                  " is not above the current version " +
                                                  std::to_string((*current)->version));
  }
  auto q = query(kInsertAgreement, kOp);
  if (!q) return q.error();
  q->bind(1, int64_t{a.version}).bind(2, a.sha256).bind(3, a.text).bind(4, a.published_ms);
  if (auto st = q->run(); !st) {
    if (is_unique_violation(db_.get())) {
      return make_error(Errc::invalid_argument, "publish_agreement: this text is already published");
    }
    return st;
  }
  if (auto st = append_audit_locked(audit, kOp); !st) return st;
  return tx.commit(kOp);
}

Result<std::optional<AgreementRecord>> SqliteStore::current_agreement() {
  auto q = query(kCurrentAgreement, "current_agreement");
  if (!q) return q.error();
  auto row = q->step();
  if (!row) return row.error();
  if (!*row) return std::optional<AgreementRecord>();
  return std::optional<AgreementRecord>(read_agreement(*q));
}

Result<AgreementRecord> SqliteStore::get_agreement(int32_t version) {
  auto q = query(kGetAgreement, "get_agreement");
  if (!q) return q.error();
  q->bind(1, int64_t{version});
  auto row = q->step();
  if (!row) return row.error();
  if (!*row) return make_error(Errc::not_found, "no agreement version " + std::to_string(version));
  return read_agreement(*q);
}

Result<bool> SqliteStore::record_acceptance(const AcceptanceRecord& a, std::span<const AuditEvent> audit) {
  constexpr std::string_view kOp = "record_acceptance";
  Transaction tx(*this);
  if (auto st = tx.begin(kOp); !st) return st.error();
  {
    auto q = query(kInsertAcceptance, kOp);
    if (!q) return q.error();
    q->bind(1, a.provider_id).bind(2, a.node_id).bind(3, int64_t{a.version}).bind(4, a.sha256).bind(5, a.accepted_ms);
    if (auto st = q->run(); !st) return st.error();
  }
  const bool fresh = sqlite3_changes(db_.get()) > 0;
  if (fresh) {
    if (auto st = append_audit_locked(audit, kOp); !st) return st.error();
  }
  if (auto st = tx.commit(kOp); !st) return st.error();
  return fresh;
}

Result<std::vector<AcceptanceRecord>> SqliteStore::list_acceptances() {
  return collect(kListAcceptances, "list_acceptances", read_acceptance);
}

Status SqliteStore::append_audit_locked(std::span<const AuditEvent> events, std::string_view op) {
  if (events.empty()) return ok_status();
  int64_t seq = 0;
  std::string prev(kAuditGenesisHash);
  {
    auto q = query(kLastAudit, op);
    if (!q) return q.error();
    auto row = q->step();
    if (!row) return row.error();
    if (*row) {
      seq = q->int64(0);
      prev = q->text(1);
    }
  }
  for (const auto& e : events) {
    ++seq;
    const std::string entry = audit_entry_text(seq, e);
    std::string hash = audit_hash(prev, entry);
    auto q = query(kInsertAudit, op);
    if (!q) return q.error();
    q->bind(1, seq)
        .bind(2, e.time_ms)
        .bind(3, e.kind)
        .bind(4, e.key_id)
        .bind(5, e.provider_id)
        .bind(6, entry)
        .bind(7, prev)
        .bind(8, hash);
    if (auto st = q->run(); !st) return st;
    prev = std::move(hash);
  }
  return ok_status();
}

Status SqliteStore::append_audit(std::span<const AuditEvent> events) {
  if (events.empty()) return ok_status();
  constexpr std::string_view kOp = "append_audit";
  Transaction tx(*this);
  if (auto st = tx.begin(kOp); !st) return st;
  if (auto st = append_audit_locked(events, kOp); !st) return st;
  return tx.commit(kOp);
}

Status SqliteStore::scan_audit(const AuditFilter& f, const std::function<bool(const AuditEntry&)>& each) {
  // Pages of 1,024 rows, each its own statement run, so a scan of a long
  // log holds no read transaction open while `each` works.
  constexpr int64_t kPage = 1024;
  int64_t after = f.after_seq;
  size_t seen = 0;
  for (;;) {
    int64_t page = kPage;
    if (f.limit) page = std::min<int64_t>(page, static_cast<int64_t>(f.limit - seen));
    if (page <= 0) return ok_status();
    std::vector<AuditEntry> rows;
    {
      auto q = query(kScanAudit, "scan_audit");
      if (!q) return q.error();
      q->bind(1, after).bind(2, f.key_id).bind(3, f.provider_id).bind(4, f.kind).bind(5, f.since_ms).bind(6, f.until_ms)
          .bind(7, page);
      for (;;) {
        auto row = q->step();
        if (!row) return row.error();
        if (!*row) break;
        rows.push_back(read_audit(*q));
      }
    }
    for (const auto& r : rows) {
      ++seen;
      if (!each(r)) return ok_status();
    }
    if (static_cast<int64_t>(rows.size()) < page) return ok_status();
    after = rows.back().seq;
  }
}

Result<std::optional<AuditCheckpoint>> SqliteStore::checkpoint_audit(
    const std::function<std::string(std::string_view)>& sign, const std::string& public_key, int64_t now_ms) {
  constexpr std::string_view kOp = "checkpoint_audit";
  Transaction tx(*this);
  if (auto st = tx.begin(kOp); !st) return st.error();
  AuditCheckpoint c;
  {
    auto q = query(kLastAudit, kOp);
    if (!q) return q.error();
    auto row = q->step();
    if (!row) return row.error();
    if (!*row) return std::optional<AuditCheckpoint>();
    c.seq = q->int64(0);
    c.hash = q->text(1);
  }
  {
    auto q = query(kLastCheckpoint, kOp);
    if (!q) return q.error();
    auto row = q->step();
    if (!row) return row.error();
    if (*row && q->opt_int64(0) && *q->opt_int64(0) >= c.seq) return std::optional<AuditCheckpoint>();
  }
  c.time_ms = now_ms;
  c.public_key = public_key;
  c.signature = sign(audit_checkpoint_message(c.seq, c.hash, c.time_ms));
  {
    auto q = query(kInsertCheckpoint, kOp);
    if (!q) return q.error();
    q->bind(1, c.seq).bind(2, c.hash).bind(3, c.time_ms).bind(4, c.public_key).bind(5, c.signature);
    if (auto st = q->run(); !st) return st.error();
  }
  if (auto st = tx.commit(kOp); !st) return st.error();
  return std::optional<AuditCheckpoint>(std::move(c));
}

Result<std::vector<AuditCheckpoint>> SqliteStore::list_audit_checkpoints() {
  return collect(kListCheckpoints, "list_audit_checkpoints", read_checkpoint);
}

Result<std::optional<ConversationRecord>> SqliteStore::get_conversation(const std::string& owner,
                                                                        const std::string& id_mac) {
  auto q = query(kGetConversation, "get_conversation");
  if (!q) return q.error();
  q->bind(1, owner).bind(2, id_mac);
  auto row = q->step();
  if (!row) return row.error();
  if (!*row) return std::optional<ConversationRecord>();
  ConversationRecord c;
  c.owner = q->text(0);
  c.id_mac = q->text(1);
  c.created_ms = q->int64(2);
  c.updated_ms = q->int64(3);
  c.expires_ms = q->opt_int64(4);
  c.nonce = q->blob(5);
  c.ciphertext = q->blob(6);
  return std::optional<ConversationRecord>(std::move(c));
}

Status SqliteStore::put_conversation(const ConversationRecord& c) {
  auto q = query(kPutConversation, "put_conversation");
  if (!q) return q.error();
  q->bind(1, c.owner).bind(2, c.id_mac).bind(3, c.created_ms).bind(4, c.updated_ms).bind(5, c.expires_ms);
  q->blob(6, c.nonce).blob(7, c.ciphertext);
  return q->run();
}

Result<bool> SqliteStore::delete_conversation(const std::string& owner, const std::string& id_mac) {
  auto q = query(kDeleteConversation, "delete_conversation");
  if (!q) return q.error();
  q->bind(1, owner).bind(2, id_mac);
  if (auto st = q->run(); !st) return st.error();
  return sqlite3_changes(db_.get()) > 0;
}

Result<int64_t> SqliteStore::delete_expired_conversations(int64_t now_ms) {
  auto q = query(kDeleteExpiredConversations, "delete_expired_conversations");
  if (!q) return q.error();
  q->bind(1, now_ms);
  if (auto st = q->run(); !st) return st.error();
  return static_cast<int64_t>(sqlite3_changes(db_.get()));
}

Status SqliteStore::purge_deleted() {
  // secure_delete (set on every connection) zeroed the deleted cells in the
  // pages written to the WAL; the checkpoint copies those pages over the
  // old ones in the database file, and TRUNCATE empties the WAL, where
  // earlier versions of the pages (with the old bytes) still were.
  // Never waits: with the busy handler a checkpoint would sit on the write
  // lock while it waits for readers (seconds), holding up the gateway's
  // writer and this connection's thread. Busy now: the caller retries.
  sqlite3_busy_timeout(db_.get(), 0);
  struct RestoreTimeout {
    sqlite3* db;
    ~RestoreTimeout() { sqlite3_busy_timeout(db, 5000); }
  } restore{db_.get()};
  auto q = query(kTruncateWal, "purge_deleted");
  if (!q) return q.error();
  auto row = q->step();
  if (!row) {
    if (row.error().code == Errc::unavailable) {
      return make_error(Errc::unavailable, "purge_deleted: the database is busy; retry");
    }
    return row.error();
  }
  // One row: busy (1 when another connection kept the checkpoint from
  // finishing), WAL frames, frames checkpointed.
  const bool busy = *row && q->int64(0) != 0;
  while (*row) {
    row = q->step();
    if (!row) return row.error();
  }
  if (busy) return make_error(Errc::unavailable, "purge_deleted: a reader kept the WAL from being emptied; retry");
  return ok_status();
}

Status SqliteStore::replace_nodes(std::span<const NodeRecord> nodes) {
  constexpr std::string_view kOp = "replace_nodes";
  Transaction tx(*this);
  if (auto st = tx.begin(kOp); !st) return st;
  {
    auto q = query(kDeleteNodes, kOp);
    if (!q) return q.error();
    if (auto st = q->run(); !st) return st;
  }
  for (const auto& n : nodes) {
    auto q = query(kInsertNode, kOp);
    if (!q) return q.error();
    q->bind(1, n.node_id)
        .bind(2, n.provider_id)
        .bind(3, n.region)
        .bind(4, n.agent)
        .bind(5, n.models_json)
        .bind(6, int64_t{n.slots})
        .bind(7, int64_t{n.slots_busy})
        .bind(8, n.connected_ms)
        .bind(9, n.updated_ms)
        .bind(10, n.identity_key)
        .bind(11, n.attestation_json);
    if (auto st = q->run(); !st) return st;
  }
  return tx.commit(kOp);
}

Result<std::vector<NodeRecord>> SqliteStore::list_nodes() {
  return collect(kListNodes, "list_nodes", read_node);
}

Result<uint64_t> SqliteStore::credentials_version() {
  auto q = query(kCredentialsVersion, "credentials_version");
  if (!q) return q.error();
  auto row = q->step();
  if (!row) return row.error();
  if (!*row) return make_error(Errc::internal, "credentials_version: the counter row is missing");
  return static_cast<uint64_t>(q->int64(0));
}

// Creates the parent directories (the innermost 0700 when we create it) and
// the file itself with mode 0600 when missing.
Status prepare_file(const fs::path& db_path) {
  const fs::path parent = db_path.parent_path();
  std::error_code ec;
  if (!parent.empty() && !fs::exists(parent, ec)) {
    fs::create_directories(parent, ec);
    if (ec)
      return make_error(Errc::io_error,
                        "create directory " + parent.string() + ": " + ec.message());
    fs::permissions(parent, fs::perms::owner_all, fs::perm_options::replace, ec);
    if (ec)
      return make_error(Errc::io_error, "chmod 0700 " + parent.string() + ": " + ec.message());
  }
  // Never open() an existing database file (O_EXCL): closing that
  // descriptor would drop every POSIX lock this process holds on the file,
  // including those of connections already open here (the gateway opens
  // two), and another process could then take itself for the last user,
  // checkpoint and delete the WAL under them (they then read a stale
  // snapshot for ever).
  // Regression test: SqliteStore.TwoConnectionsInOneProcessSeeAnotherProcessesWrites.
  const int fd = ::open(db_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    if (err == EEXIST) return ok_status();  // it exists: SQLite opens it
    return make_error(Errc::io_error, "create " + db_path.string() + ": " + std::strerror(err));
  }
  ::close(fd);
  return ok_status();
}

}  // namespace

fs::path database_path(const fs::path& data_dir) {
  return data_dir / "agora.db";
}

Result<std::unique_ptr<Store>> open_sqlite_store(const fs::path& db_path) {
  if (db_path.empty()) return make_error(Errc::invalid_argument, "open_sqlite_store: empty path");
  if (auto st = prepare_file(db_path); !st) return st.error();
  sqlite3* raw = nullptr;
  const int rc =
      sqlite3_open_v2(db_path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  DbPtr db(raw);  // owns the handle even when the open failed
  if (rc != SQLITE_OK) {
    auto e = sql_error(db.get(), "open " + db_path.string());
    if (e.code != Errc::corrupt) e.code = Errc::io_error;
    return e;
  }
  sqlite3_extended_result_codes(db.get(), 1);
  auto store = std::make_unique<SqliteStore>(std::move(db));
  if (auto st = store->init(); !st) {
    auto e = st.error();
    e.message = db_path.string() + ": " + e.message;
    return e;
  }
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace agora::store
