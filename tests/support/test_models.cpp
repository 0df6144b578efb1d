#include "support/test_models.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>

#include "engine/synth.h"

namespace agora::testing {
namespace fs = std::filesystem;

const fs::path& tiny_model() {
  static const fs::path path = [] {
    const fs::path dir = AGORA_TEST_MODELS_DIR;
    fs::create_directories(dir);
    const fs::path model = dir / "tiny.gguf";
    const int lock = ::open((dir / ".lock").c_str(), O_CREAT | O_RDWR, 0644);
    if (lock < 0) throw std::runtime_error("cannot open the test model lock");
    ::flock(lock, LOCK_EX);
    if (!fs::exists(model)) {
      engine::SynthOptions o;
      o.preset = "tiny";
      o.out = model;
      o.seed = 1;
      auto r = engine::synthesize_model(o);
      if (!r) {
        ::close(lock);
        throw std::runtime_error("cannot synthesise the tiny test model: " + r.error().to_string());
      }
    }
    ::close(lock);
    return model;
  }();
  return path;
}

fs::path temp_dir() {
  static std::mutex mu;
  std::lock_guard lock(mu);
  std::string tmpl = (fs::temp_directory_path() / "agora-test-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  static std::vector<fs::path> dirs;
  static const bool registered = [] {
    std::atexit([] {
      std::error_code ec;
      for (auto& d : dirs) fs::remove_all(d, ec);
    });
    return true;
  }();
  (void)registered;
  dirs.emplace_back(tmpl);
  return tmpl;
}

}  // namespace agora::testing
