// The scheduler's view of a connected node: where it sends work. The node's
// WebSocket session implements it (gateway.cpp, NodeConn); tests use an
// in-process fake (tests/fakes/fake_link.h). What the node answers comes
// back through the Scheduler's on_delta / on_done / on_failed. Nothing above
// the link knows about frames, WebSockets or TLS.
#pragma once

#include <string>

#include "protocol/messages.h"

namespace agora::gateway {

class ProviderLink {
 public:
  virtual ~ProviderLink() = default;
  virtual void send_job(const protocol::Job& job) = 0;
  virtual void send_cancel(protocol::JobId job) = 0;
  // An attestation challenge: the node answers with evidence for `nonce`.
  virtual void send_challenge(const std::string& nonce) = 0;
  // false once the session is closing: nothing sent now would arrive.
  virtual bool open() const = 0;
};

}  // namespace agora::gateway
