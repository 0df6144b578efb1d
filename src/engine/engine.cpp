#include "engine/engine.h"

#include <cmath>
#include <future>

#include "common/generation_rules.h"

namespace agora::engine {
const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::cancelled: return "cancelled";
    case FinishReason::error: return "error";
    case FinishReason::tool_calls: return "tool_calls";
  }
  return "error";
}

Status validate_request(const GenerationRequest& r) { return check_generation_request(r); }

Result<Completion> generate(Engine& engine, GenerationRequest request,
                            std::function<void(const StreamEvent&)> on_event) {
  std::promise<Completion> done;
  auto fut = done.get_future();
  GenerationCallbacks cb;
  cb.on_event = std::move(on_event);
  cb.on_done = [&done](Completion c) { done.set_value(std::move(c)); };
  auto id = engine.submit(std::move(request), std::move(cb));
  if (!id) return id.error();
  return fut.get();
}

}  // namespace agora::engine
