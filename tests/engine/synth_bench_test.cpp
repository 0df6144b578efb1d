// The bench-1b preset (slow: ~1.2 B parameters to generate and quantise).
#include <gtest/gtest.h>

#include "engine/llama_engine.h"
#include "engine/synth.h"
#include "support/test_models.h"

namespace agora::engine {
namespace {

TEST(SynthBench1b, HasTheExactShapeOfLlama32_1B) {
  SynthOptions o;
  o.preset = "bench-1b";
  o.out = testing::temp_dir() / "bench-1b.gguf";
  auto r = synthesize_model(o);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  auto info = read_model_info(o.out);
  ASSERT_TRUE(info.ok()) << info.error().to_string();
  EXPECT_EQ(info->architecture, "llama");
  EXPECT_EQ(info->quantization, "Q4_K_M");
  EXPECT_EQ(info->n_layer, 16);
  EXPECT_EQ(info->n_embd, 2048);
  EXPECT_EQ(info->n_head, 32);
  EXPECT_EQ(info->n_head_kv, 8);
  EXPECT_EQ(info->n_ff, 8192);
  EXPECT_EQ(info->n_vocab, 128256);
  EXPECT_TRUE(info->tied_embeddings);
  EXPECT_EQ(info->parameters, 1235814400ull);  // Llama-3.2-1B's count
  EXPECT_GT(info->file_bytes, 700ull << 20);
  EXPECT_LT(info->file_bytes, 900ull << 20);
  // It generates.
  EngineOptions eo;
  eo.model_path = o.out;
  eo.ctx_per_slot = 256;
  auto e = open_llama_engine(eo);
  ASSERT_TRUE(e.ok());
  GenerationRequest req;
  req.messages = {{"user", "hello"}};
  req.max_tokens = 4;
  req.ignore_eos = true;
  auto c = generate(**e, req);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->usage.completion_tokens, 4);
}

}  // namespace
}  // namespace agora::engine
