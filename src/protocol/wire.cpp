#include "protocol/wire.h"

namespace agora::protocol {

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

}  // namespace agora::protocol
