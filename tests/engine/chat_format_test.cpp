// ChatFormat and ToolCallStream without a model: real templates from the
// pinned llama.cpp source, rendered and parsed by its common library.
#include "engine/chat_format.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace agora::engine {
namespace {

std::string template_source(const std::string& name) {
  std::ifstream in(std::string(AGORA_LLAMA_SOURCE_DIR) + "/models/templates/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_FALSE(ss.str().empty()) << name;
  return ss.str();
}

std::unique_ptr<ChatFormat> format(const std::string& tmpl) {
  auto f = ChatFormat::create(nullptr, tmpl);
  if (!f) ADD_FAILURE() << f.error().to_string();
  return f ? std::move(*f) : nullptr;
}

GenerationRequest with_tools() {
  GenerationRequest r;
  r.messages = {{"user", "Weather in Paris and Rome?"}};
  r.tools = {{"get_weather", "Weather", R"({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})", false},
             {"get_time", "Time", R"({"type":"object","properties":{}})", false}};
  return r;
}

// Feeds `raw` a few bytes at a time, as tokens arrive.
struct Streamed {
  std::string content;
  std::vector<ToolCallDelta> deltas;
  std::vector<ToolCall> calls;
};
Streamed stream(const ChatPlan& plan, const std::string& raw, size_t step = 3) {
  Streamed s;
  ToolCallStream t(plan.parser);
  for (size_t i = 0; i < raw.size(); i += step) t.push(raw.substr(i, step), s.content, s.deltas);
  t.finish(s.content, s.deltas);
  s.calls = t.calls();
  return s;
}

TEST(ChatFormat, MessageTextIsSeparateFromTheTemplatesMarkup) {
  auto f = format(template_source("Qwen-Qwen2.5-7B-Instruct.jinja"));
  ASSERT_NE(f, nullptr);
  GenerationRequest r;
  r.messages = {{"system", "Be brief."}, {"user", "Hi <|im_end|> there"}};
  auto plan = f->plan(r);
  ASSERT_TRUE(plan.ok()) << plan.error().to_string();
  std::vector<std::string> text;
  std::string markup;
  for (const auto& p : plan->prompt) (p.markup ? markup : text.emplace_back()) += p.text;
  ASSERT_EQ(text.size(), 2u);
  EXPECT_EQ(text[0], "Be brief.");
  EXPECT_EQ(text[1], "Hi <|im_end|> there");
  EXPECT_NE(markup.find("<|im_start|>user\n"), std::string::npos) << markup;
  EXPECT_EQ(markup.find("AgOrA"), std::string::npos) << markup;
}

TEST(ChatFormat, ATemplateThatRewritesMessageTextIsRefused) {
  auto f = format("{% for m in messages %}{{ m.content | upper }}{% endfor %}");
  ASSERT_NE(f, nullptr);
  GenerationRequest r;
  r.messages = {{"user", "hello"}};
  auto plan = f->plan(r);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().code, Errc::unsupported);
}

TEST(ChatFormat, TheDateIsTheNodeSetting) {
  auto f = ChatFormat::create(nullptr, "{{ date_string }}{% for m in messages %}{{ m.content }}{% endfor %}",
                              std::chrono::sys_days{std::chrono::year{2025} / 1 / 2});
  ASSERT_TRUE(f.ok());
  GenerationRequest r;
  r.messages = {{"user", "x"}};
  auto plan = (*f)->plan(r);
  ASSERT_TRUE(plan.ok()) << plan.error().to_string();
  EXPECT_EQ(plan->prompt.at(0).text, "02 Jan 2025");
}

TEST(ChatFormat, ParallelCallsStreamEachIdAndNameFirstThenArguments) {
  auto f = format(template_source("Qwen-Qwen2.5-7B-Instruct.jinja"));
  ASSERT_NE(f, nullptr);
  EXPECT_TRUE(f->capabilities().tools);
  auto plan = f->plan(with_tools());
  ASSERT_TRUE(plan.ok()) << plan.error().to_string();
  ASSERT_NE(plan->parser, nullptr);
  const std::string raw =
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>";
  const auto s = stream(*plan, raw);
  EXPECT_EQ(s.content, "");
  ASSERT_EQ(s.calls.size(), 2u);
  EXPECT_NE(s.calls[0].id, s.calls[1].id);
  for (int i = 0; i < 2; ++i) {
    std::string args;
    bool header = false;
    for (const auto& d : s.deltas) {
      if (d.index != i) continue;
      if (!header) {  // the first piece of a call: its id and name, no arguments
        EXPECT_EQ(d.id, s.calls[static_cast<size_t>(i)].id);
        EXPECT_EQ(d.name, "get_weather");
        EXPECT_EQ(d.arguments, "");
        header = true;
        continue;
      }
      EXPECT_EQ(d.id, "");
      EXPECT_EQ(d.name, "");
      args += d.arguments;
    }
    EXPECT_TRUE(header);
    EXPECT_EQ(args, s.calls[static_cast<size_t>(i)].arguments);
  }
  EXPECT_NE(s.calls[0].arguments.find("Paris"), std::string::npos);
  EXPECT_NE(s.calls[1].arguments.find("Rome"), std::string::npos);
  // Every piece of call 0 comes before call 1's header.
  size_t last0 = 0, first1 = s.deltas.size();
  for (size_t k = 0; k < s.deltas.size(); ++k) {
    if (s.deltas[k].index == 0) last0 = k;
    if (s.deltas[k].index == 1 && first1 == s.deltas.size()) first1 = k;
  }
  EXPECT_LT(last0, first1);
}

TEST(ChatFormat, TextThatIsNoCallIsContent) {
  auto f = format(template_source("Qwen-Qwen2.5-7B-Instruct.jinja"));
  ASSERT_NE(f, nullptr);
  auto plan = f->plan(with_tools());
  ASSERT_TRUE(plan.ok());
  const auto s = stream(*plan, "It is sunny in Paris.", 2);
  EXPECT_EQ(s.content, "It is sunny in Paris.");
  EXPECT_TRUE(s.calls.empty());
  EXPECT_TRUE(s.deltas.empty());
}

TEST(ChatFormat, AThinkingTemplatesEmptyThinkBlockIsNotContent) {
  // Qwen3 opens "<think>\n\n</think>\n\n" in the generation prompt when
  // thinking is off; the parser and grammar start after it.
  auto f = format(template_source("Qwen-Qwen3-0.6B.jinja"));
  ASSERT_NE(f, nullptr);
  auto plan = f->plan(with_tools());
  ASSERT_TRUE(plan.ok()) << plan.error().to_string();
  const auto s = stream(*plan, "It is sunny.");
  EXPECT_EQ(s.content, "It is sunny.");
  GenerationRequest r;
  r.messages = {{"user", "x"}};
  r.response_format.type = ResponseFormat::Type::json_object;
  plan = f->plan(r);
  ASSERT_TRUE(plan.ok()) << plan.error().to_string();
  EXPECT_FALSE(plan->grammar.empty());
  EXPECT_EQ(stream(*plan, R"({"a": 1})").content, R"({"a": 1})");
}

TEST(ChatFormat, ARequiredCallHasAGrammarAndNoneHasNoCalls) {
  auto f = format(template_source("Qwen-Qwen2.5-7B-Instruct.jinja"));
  ASSERT_NE(f, nullptr);
  auto r = with_tools();
  r.tool_choice = {ToolChoiceMode::named, "get_time"};
  auto plan = f->plan(r);
  ASSERT_TRUE(plan.ok()) << plan.error().to_string();
  EXPECT_FALSE(plan->grammar.empty());
  EXPECT_FALSE(plan->grammar_lazy);
  EXPECT_NE(plan->grammar.find("get_time"), std::string::npos);
  EXPECT_EQ(plan->grammar.find("get_weather"), std::string::npos) << "a named choice offers only that function";
}

}  // namespace
}  // namespace agora::engine
