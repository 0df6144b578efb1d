// StoreWorker: the gateway's only user of its Store, on a thread of its own,
// so nothing on the request path waits on the disk. It
//  - writes generation records in batches (one transaction per batch);
//  - writes the connected-node snapshot (for `agora providers list`);
//  - polls the database's data_version and, when the CLI changed keys or
//    providers, reloads them and hands the new sets to the event loop;
//  - runs occasional lookups (GET /v1/generations/{id}) and posts the
//    answer back to the event loop.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "store/store.h"

namespace agora::gateway {

class StoreWorker {
 public:
  struct Callbacks {
    // Run on `loop` with the full current sets, at start and after changes.
    std::function<void(std::vector<store::ApiKeyRecord>, std::vector<store::ProviderRecord>)> on_credentials;
  };

  StoreWorker(std::unique_ptr<store::Store> store, boost::asio::any_io_executor loop, Callbacks callbacks,
              std::chrono::milliseconds poll_interval = std::chrono::milliseconds(200));
  ~StoreWorker();  // stops, flushing what is queued

  // Loads the credentials once on the calling thread (before serving), then
  // starts the thread.
  Status start();
  void stop();

  // Thread-safe; cheap (appends to a vector).
  void record(store::GenerationRecord r);
  void set_nodes(std::vector<store::NodeRecord> nodes);
  // `done` runs on the loop.
  void lookup_generation(std::string id, std::function<void(Result<store::GenerationRecord>)> done);

 private:
  void run();
  void reload_credentials();

  std::unique_ptr<store::Store> store_;
  boost::asio::any_io_executor loop_;
  Callbacks callbacks_;
  std::chrono::milliseconds poll_interval_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::vector<store::GenerationRecord> pending_;
  std::optional<std::vector<store::NodeRecord>> nodes_;
  std::deque<std::function<void(store::Store&)>> tasks_;
  uint64_t data_version_ = 0;
  std::thread thread_;
};

}  // namespace agora::gateway
