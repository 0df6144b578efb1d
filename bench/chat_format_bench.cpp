// What rendering a chat costs per request, on the synthesised models' Llama
// 3.2 template: llama.cpp's built-in C++ renderer (the engine's path before
// issue 18, kept here as the baseline) against ChatFormat (common's Jinja
// renderer) for a plain request, a request with two tools, and a
// json_schema request (the last two also build the grammar and parser).
#include <benchmark/benchmark.h>
#include <llama.h>

#include <fstream>
#include <sstream>

#include "engine/chat_format.h"

namespace {

using namespace agora::engine;

std::string llama32_template() {
  std::ifstream in(std::string(AGORA_LLAMA_SOURCE_DIR) + "/models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

GenerationRequest plain() {
  GenerationRequest r;
  r.messages = {{"system", "You are helpful."}, {"user", "Write a haiku about the sea, please, and make it good."}};
  return r;
}

void BM_ChatTemplateBuiltin(benchmark::State& state) {
  const std::string tmpl = llama32_template();
  const auto r = plain();
  std::vector<llama_chat_message> msgs;
  for (const auto& m : r.messages) msgs.push_back({m.role.c_str(), m.content.c_str()});
  std::string buf(4096, '\0');
  for (auto _ : state) {
    const int32_t n = llama_chat_apply_template(tmpl.c_str(), msgs.data(), msgs.size(), true, buf.data(),
                                                static_cast<int32_t>(buf.size()));
    benchmark::DoNotOptimize(n);
  }
}
BENCHMARK(BM_ChatTemplateBuiltin);

void run_plan(benchmark::State& state, const GenerationRequest& r) {
  auto f = ChatFormat::create(nullptr, llama32_template());
  if (!f) {
    state.SkipWithError(f.error().message.c_str());
    return;
  }
  for (auto _ : state) {
    auto plan = (*f)->plan(r);
    if (!plan) state.SkipWithError(plan.error().message.c_str());
    benchmark::DoNotOptimize(plan);
  }
}

void BM_ChatFormatPlain(benchmark::State& state) { run_plan(state, plain()); }
BENCHMARK(BM_ChatFormatPlain);

void BM_ChatFormatTools(benchmark::State& state) {
  auto r = plain();
  r.tools = {{"get_weather", "Current weather for a city",
              R"({"type":"object","properties":{"city":{"type":"string","maxLength":12}},"required":["city"]})", false},
             {"get_time", "The local time in a city", R"({"type":"object","properties":{"city":{"type":"string"}}})", false}};
  r.tool_choice = {ToolChoiceMode::required, ""};
  run_plan(state, r);
}
BENCHMARK(BM_ChatFormatTools);

void BM_ChatFormatJsonSchema(benchmark::State& state) {
  auto r = plain();
  r.response_format = {ResponseFormat::Type::json_schema, "person",
                       R"({"type":"object","properties":{"name":{"type":"string","maxLength":8},"age":{"type":"integer","minimum":0,"maximum":120}},"required":["name","age"]})",
                       true};
  run_plan(state, r);
}
BENCHMARK(BM_ChatFormatJsonSchema);

}  // namespace
