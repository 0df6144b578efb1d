// Per-token text handling cost: UTF-8 decoding and stop-sequence matching run
// once per generated token for every stream, so they must stay in the
// nanoseconds.
#include <benchmark/benchmark.h>

#include "engine/text_stream.h"

namespace {

const char* kPieces[] = {" The", " market", " \xE2\x82", "\xAC", "42", " tokens", ",", " and", " \xE6\x97\xA5",
                         "\xE6\x9C\xAC", " more", "."};

void BM_TokenTextStream(benchmark::State& state) {
  std::vector<std::string> stops;
  for (int i = 0; i < state.range(0); ++i) stops.push_back("<|stop" + std::to_string(i) + "|>");
  for (auto _ : state) {
    agora::engine::TokenTextStream s(stops);
    bool stopped = false;
    for (int i = 0; i < 256; ++i) {
      auto ev = s.push(kPieces[i % 12], {}, false, stopped);
      benchmark::DoNotOptimize(ev);
    }
  }
  state.SetItemsProcessed(state.iterations() * 256);
}
BENCHMARK(BM_TokenTextStream)->Arg(0)->Arg(1)->Arg(4);

}  // namespace
