// Bad model files give clear errors, never a crash.
#include "engine/model_file.h"

#include <gtest/gtest.h>

#include <fstream>

#include "engine/llama_engine.h"
#include "support/test_models.h"

namespace agora::engine {
namespace {
namespace fs = std::filesystem;

Error open_error(const fs::path& p) {
  EngineOptions o;
  o.model_path = p;
  auto e = open_llama_engine(o);
  EXPECT_FALSE(e.ok()) << p;
  return e ? Error{Errc::internal, "opened"} : e.error();
}

void write(const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; }

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(ModelFile, MissingFile) {
  const auto e = open_error(testing::temp_dir() / "nope.gguf");
  EXPECT_EQ(e.code, Errc::not_found);
  EXPECT_NE(e.message.find("nope.gguf"), std::string::npos);
}

TEST(ModelFile, NotAGgufFile) {
  const auto p = testing::temp_dir() / "text.gguf";
  write(p, "this is not a model\n");
  EXPECT_EQ(open_error(p).code, Errc::corrupt);
  write(p, "");
  EXPECT_EQ(open_error(p).code, Errc::corrupt);
  EXPECT_EQ(open_error(testing::temp_dir()).code, Errc::invalid_argument);  // a directory
}

TEST(ModelFile, CorruptMetadata) {
  const auto p = testing::temp_dir() / "corrupt.gguf";
  std::string bytes = read(testing::tiny_model());
  // Keep the magic and version; scramble the counts and the first keys.
  for (size_t i = 8; i < 4096; ++i) bytes[i] = static_cast<char>(0xA5 ^ (i * 13));
  write(p, bytes);
  EXPECT_EQ(open_error(p).code, Errc::corrupt);
}

TEST(ModelFile, TruncatedFile) {
  const std::string bytes = read(testing::tiny_model());
  for (double frac : {0.001, 0.5, 0.99}) {
    const auto p = testing::temp_dir() / "truncated.gguf";
    write(p, bytes.substr(0, static_cast<size_t>(static_cast<double>(bytes.size()) * frac)));
    const auto e = open_error(p);
    EXPECT_EQ(e.code, Errc::corrupt) << frac << ": " << e.message;
  }
}

TEST(ModelFile, Sha256IsCachedBesideTheFileAndRefreshedWhenItChanges) {
  const auto dir = testing::temp_dir();
  const auto p = dir / "m.gguf";
  fs::copy_file(testing::tiny_model(), p);
  int calls = 0;
  auto count = [&](uint64_t, uint64_t) { ++calls; };
  auto a = model_sha256(p, count);
  ASSERT_TRUE(a.ok());
  EXPECT_GT(calls, 0);
  EXPECT_TRUE(fs::exists(dir / "m.gguf.sha256"));
  calls = 0;
  auto b = model_sha256(p, count);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(calls, 0);  // from the cache
  // Changing the file (size and time) invalidates the cache.
  std::ofstream(p, std::ios::binary | std::ios::app) << "x";
  auto c = model_sha256(p, count);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(*a, *c);
  EXPECT_GT(calls, 0);
}

}  // namespace
}  // namespace agora::engine
