#include "engine/synth.h"

#include <gtest/gtest.h>

#include "crypto/sha256.h"
#include "engine/llama_engine.h"
#include "support/test_models.h"

namespace agora::engine {
namespace {

TEST(Synth, TinyLoadsWithTheExpectedShape) {
  auto info = read_model_info(testing::tiny_model());
  ASSERT_TRUE(info.ok()) << info.error().to_string();
  EXPECT_EQ(info->architecture, "llama");
  EXPECT_EQ(info->name, "agora-synth-tiny");
  EXPECT_EQ(info->quantization, "Q8_0");
  EXPECT_EQ(info->n_layer, 2);
  EXPECT_EQ(info->n_embd, 32);
  EXPECT_EQ(info->n_head, 4);
  EXPECT_EQ(info->n_head_kv, 2);
  EXPECT_EQ(info->n_ff, 96);
  EXPECT_EQ(info->n_vocab, 128256);
  EXPECT_EQ(info->context_length, 4096);
  EXPECT_TRUE(info->tied_embeddings);
  // 128256*32 embedding + 2 layers + final norm.
  const uint64_t layer = 32 * 32 * 2 + 32 * 16 * 2 + 32 * 96 * 3 + 32 * 2;
  EXPECT_EQ(info->parameters, 128256ull * 32 + 2 * layer + 32);
  EXPECT_NE(info->chat_template.find("<|start_header_id|>"), std::string::npos);
  EXPECT_LT(info->file_bytes, 16u << 20);
  // Tied: the whole embedding (Q8_0, 34 bytes per 32 values) is the output
  // layer, so a decode step reads all of it, plus the layers; never more
  // than the file.
  const uint64_t embd_q8 = 128256ull * 32 / 32 * 34;
  EXPECT_GT(info->weight_bytes_per_token, embd_q8);
  EXPECT_LT(info->weight_bytes_per_token, embd_q8 + 2 * layer * 34 / 32 * 2);
  EXPECT_LT(info->weight_bytes_per_token, info->file_bytes);
}

TEST(Synth, SameSeedGivesAByteIdenticalFileAndAnotherSeedDoesNot) {
  const auto dir = testing::temp_dir();
  auto make = [&](const char* name, uint64_t seed, Quant q) {
    SynthOptions o;
    o.preset = "tiny";
    o.out = dir / name;
    o.seed = seed;
    o.quant = q;
    auto r = synthesize_model(o);
    EXPECT_TRUE(r.ok()) << (r ? "" : r.error().to_string());
    return *crypto::sha256_file_hex(dir / name);
  };
  EXPECT_EQ(make("a.gguf", 7, Quant::q8_0), make("b.gguf", 7, Quant::q8_0));
  EXPECT_NE(make("a.gguf", 7, Quant::q8_0), make("c.gguf", 8, Quant::q8_0));
  EXPECT_EQ(make("d.gguf", 7, Quant::f16), make("e.gguf", 7, Quant::f16));
  // No temporary files are left behind.
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) n += e.path().extension() == ".gguf";
  EXPECT_EQ(n, 5u);
  auto f16 = read_model_info(dir / "d.gguf");
  ASSERT_TRUE(f16.ok());
  EXPECT_EQ(f16->quantization, "F16");
}

TEST(Synth, ReportsProgressInOrder) {
  SynthOptions o;
  o.out = testing::temp_dir() / "p.gguf";
  std::vector<std::string> stages;
  uint64_t last_done = 0;
  o.progress = [&](const SynthProgress& p) {
    if (stages.empty() || stages.back() != p.stage) {
      stages.push_back(p.stage);
      last_done = 0;
    }
    EXPECT_GE(p.done, last_done);
    EXPECT_LE(p.done, p.total);
    last_done = p.done;
  };
  ASSERT_TRUE(synthesize_model(o).ok());
  EXPECT_EQ(stages, (std::vector<std::string>{"generate", "quantize"}));
}

TEST(Synth, ClearErrors) {
  SynthOptions o;
  o.out = testing::temp_dir() / "x.gguf";
  o.preset = "huge";
  auto r = synthesize_model(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  o.preset = "tiny";
  o.vocab = testing::temp_dir() / "missing-vocab.gguf";
  r = synthesize_model(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::not_found);
  EXPECT_FALSE(std::filesystem::exists(o.out));
}

}  // namespace
}  // namespace agora::engine
