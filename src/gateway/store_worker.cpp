#include "gateway/store_worker.h"

#include <boost/asio/post.hpp>

#include "common/log.h"

namespace agora::gateway {

StoreWorker::StoreWorker(std::unique_ptr<store::Store> store, boost::asio::any_io_executor loop, Callbacks callbacks,
                         std::chrono::milliseconds poll_interval)
    : store_(std::move(store)), loop_(std::move(loop)), callbacks_(std::move(callbacks)), poll_interval_(poll_interval) {}

StoreWorker::~StoreWorker() { stop(); }

Status StoreWorker::start() {
  auto v = store_->data_version();
  if (!v) return v.error();
  data_version_ = *v;
  auto keys = store_->list_api_keys();
  if (!keys) return keys.error();
  auto providers = store_->list_providers();
  if (!providers) return providers.error();
  if (callbacks_.on_credentials) callbacks_.on_credentials(std::move(*keys), std::move(*providers));
  thread_ = std::thread([this] { run(); });
  return ok_status();
}

void StoreWorker::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void StoreWorker::record(store::GenerationRecord r) {
  std::lock_guard lock(mu_);
  pending_.push_back(std::move(r));
  if (pending_.size() >= 512) cv_.notify_one();
}

void StoreWorker::set_nodes(std::vector<store::NodeRecord> nodes) {
  std::lock_guard lock(mu_);
  nodes_ = std::move(nodes);
}

void StoreWorker::lookup_generation(std::string id, std::function<void(Result<store::GenerationRecord>)> done) {
  {
    std::lock_guard lock(mu_);
    tasks_.push_back([this, id = std::move(id), done = std::move(done)](store::Store& s) mutable {
      auto r = s.get_generation(id);
      boost::asio::post(loop_, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
    });
  }
  cv_.notify_one();
}

void StoreWorker::reload_credentials() {
  auto v = store_->data_version();
  if (!v) {
    spdlog::warn("store_poll_failed error={}", logfmt_value(v.error().to_string()));
    return;
  }
  if (*v == data_version_) return;
  data_version_ = *v;
  auto keys = store_->list_api_keys();
  auto providers = store_->list_providers();
  if (!keys || !providers) {
    spdlog::warn("credentials_reload_failed error={}",
              logfmt_value((!keys ? keys.error() : providers.error()).to_string()));
    return;
  }
  boost::asio::post(loop_, [cb = callbacks_.on_credentials, k = std::move(*keys), p = std::move(*providers)]() mutable {
    if (cb) cb(std::move(k), std::move(p));
  });
}

void StoreWorker::run() {
  for (;;) {
    std::vector<store::GenerationRecord> batch;
    std::optional<std::vector<store::NodeRecord>> nodes;
    std::deque<std::function<void(store::Store&)>> tasks;
    bool stopping;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, poll_interval_, [&] { return stopping_ || pending_.size() >= 512 || !tasks_.empty(); });
      batch.swap(pending_);
      nodes.swap(nodes_);
      tasks.swap(tasks_);
      stopping = stopping_;
    }
    if (!batch.empty()) {
      if (Status st = store_->insert_generations(batch); !st) {
        spdlog::error("generation_write_failed records={} error={}", batch.size(),
                   logfmt_value(st.error().to_string()));
      }
    }
    if (nodes) {
      if (Status st = store_->replace_nodes(*nodes); !st) {
        spdlog::warn("node_snapshot_failed error={}", logfmt_value(st.error().to_string()));
      }
    }
    for (auto& t : tasks) t(*store_);
    if (stopping) return;
    reload_credentials();
  }
}

}  // namespace agora::gateway
