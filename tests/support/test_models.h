// Test models, synthesised on first use into the build tree and shared by
// every test process (a file lock makes parallel CTest runs safe).
#pragma once

#include <filesystem>

namespace agora::testing {

// The `tiny` preset at its default quantisation, seed 1.
const std::filesystem::path& tiny_model();

// A fresh, empty temporary directory, removed at process exit.
std::filesystem::path temp_dir();

}  // namespace agora::testing
