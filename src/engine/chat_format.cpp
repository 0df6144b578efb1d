#include "engine/chat_format.h"

#include <chat.h>
#include <common.h>
#include <llama.h>
#include <log.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <mutex>

#include "crypto/random.h"

namespace agora::engine {

// The parser state a stream needs: common's parser parameters with the
// template's PEG parser loaded.
class ToolCallParser {
 public:
  explicit ToolCallParser(const common_chat_params& p) : params(p) {
    params.reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;  // reasoning apart from content (dropped)
    if (!p.parser.empty()) params.parser.load(p.parser);
  }
  common_chat_parser_params params;
};

namespace {

constexpr size_t kNonceChars = 16;

std::string random_alnum(size_t n) { return crypto::random_base62(n); }

// Markers around message i's content. Letters and digits only, so JSON
// encoding (a template's tojson) leaves them intact.
struct Markers {
  std::string nonce;
  std::string open(size_t i) const { return "AgOrAo" + nonce + std::to_string(i) + "Q"; }
  std::string close(size_t i) const { return "AgOrAc" + nonce + std::to_string(i) + "Q"; }
  std::string_view prefix() const { return "AgOrA"; }
  // The message whose open marker starts at `at` in `s`, or n when none
  // does (read from the marker's digits: no scan over every message).
  size_t open_index(std::string_view s, size_t at, size_t n) const {
    const std::string head = "AgOrAo" + nonce;
    if (s.compare(at, head.size(), head) != 0) return n;
    size_t k = at + head.size(), value = 0;
    while (k < s.size() && k - at - head.size() < 7 && std::isdigit(static_cast<unsigned char>(s[k]))) {
      value = value * 10 + static_cast<size_t>(s[k] - '0');
      ++k;
    }
    if (value >= n) return n;
    const std::string mark = open(value);  // exact: no leading zeros, 'Q' after the digits
    return s.compare(at, mark.size(), mark) == 0 ? value : n;
  }
};

// "23 Jul 2024" (UTC), as Llama 3.x templates print it.
std::string date_string(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  const size_t n = std::strftime(buf, sizeof buf, "%d %b %Y", &tm);
  return std::string(buf, n);
}

Error invalid(const std::string& param, const std::string& what) {
  return make_error(Errc::invalid_argument, "'" + param + "' " + what);
}

common_chat_tool_choice to_common(ToolChoiceMode m) {
  switch (m) {
    case ToolChoiceMode::none: return COMMON_CHAT_TOOL_CHOICE_NONE;
    case ToolChoiceMode::required:
    case ToolChoiceMode::named: return COMMON_CHAT_TOOL_CHOICE_REQUIRED;
    case ToolChoiceMode::automatic: break;
  }
  return COMMON_CHAT_TOOL_CHOICE_AUTO;
}

std::vector<common_chat_msg> to_common(const std::vector<ChatMessage>& messages, const Markers* marks) {
  std::vector<common_chat_msg> out;
  out.reserve(messages.size());
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    common_chat_msg c;
    c.role = m.role;
    // Empty content stays empty: templates test it ("if message.content").
    c.content = marks && !m.content.empty() ? marks->open(i) + m.content + marks->close(i) : m.content;
    for (const auto& call : m.tool_calls) c.tool_calls.push_back({call.name, call.arguments, call.id});
    c.tool_call_id = m.tool_call_id;
    if (m.role == "tool") {
      // The name of the call answered (some templates print it).
      for (const auto& prev : messages) {
        for (const auto& call : prev.tool_calls) {
          if (call.id == m.tool_call_id) c.tool_name = call.name;
        }
      }
    }
    out.push_back(std::move(c));
  }
  return out;
}

// Strips the free text a "required" tool-call grammar lets the model write
// before the call (`until-N?` at the root): a forced call is the whole
// answer.
std::string forbid_text_before_call(std::string grammar) {
  const size_t root = grammar.find("\nroot ::= ");
  const size_t start = root == std::string::npos ? (grammar.rfind("root ::= ", 0) == 0 ? 0 : std::string::npos) : root + 1;
  if (start == std::string::npos) return grammar;
  const size_t end = grammar.find('\n', start);
  std::string line = grammar.substr(start, end == std::string::npos ? std::string::npos : end - start);
  for (size_t at = line.find(" until-"); at != std::string::npos; at = line.find(" until-", at + 1)) {
    size_t k = at + 7;
    while (k < line.size() && std::isdigit(static_cast<unsigned char>(line[k]))) ++k;
    if (k < line.size() && line[k] == '?' && k > at + 7) {
      line.erase(at, k + 1 - at);
      break;
    }
  }
  grammar.replace(start, end == std::string::npos ? std::string::npos : end - start, line);
  return grammar;
}

}  // namespace

struct ChatFormat::Impl {
  common_chat_templates_ptr templates;
  std::optional<std::chrono::system_clock::time_point> date;
  std::vector<std::string> control_texts;  // of the model's control tokens
  ChatCapabilities caps;

  // The first control token's text found in `s`, or empty.
  std::string_view control_text_in(std::string_view s) const {
    if (s.find('<') == std::string_view::npos && s.find('[') == std::string_view::npos) {
      // Nearly every control token is <…> or […]; check the rest only.
      for (const auto& t : control_texts) {
        if (!t.empty() && t[0] != '<' && t[0] != '[' && s.find(t) != std::string_view::npos) return t;
      }
      return {};
    }
    for (const auto& t : control_texts) {
      if (!t.empty() && s.find(t) != std::string_view::npos) return t;
    }
    return {};
  }

  // The first control token's text in `json_text` once decoded (a JSON
  // escape such as \u003c must not hide one), in any key or string.
  // Errors: the text is not JSON.
  Result<std::string_view> control_text_in_json(const std::string& json_text) const {
    const common_json v = common_json::parse_no_throw(json_text);
    if (v.is_discarded()) return make_error(Errc::invalid_argument, "is not valid JSON");
    std::string_view found;
    bool too_deep = false;
    auto walk = [&](auto&& self, const common_json& x, unsigned depth) -> void {
      if (!found.empty() || too_deep) return;
      if (depth > 64) {
        too_deep = true;
      } else if (x.is_string()) {
        found = control_text_in(x.get<std::string>());
      } else if (x.is_object()) {
        for (const auto& [key, val] : x.items()) {
          if (found.empty()) found = control_text_in(key);
          self(self, val, depth + 1);
        }
      } else if (x.is_array()) {
        for (auto it = x.begin(); it != x.end(); ++it) self(self, *it, depth + 1);
      }
    };
    walk(walk, v, 0);
    if (too_deep) return make_error(Errc::invalid_argument, "nests deeper than 64 levels");
    return found;
  }

  Status check_no_control_text(const GenerationRequest& r) const {
    auto refuse = [](const std::string& where, std::string_view tok) {
      return invalid(where, "contains the text of the model's control token '" + std::string(tok) +
                                "', which tool definitions and calls may not");
    };
    auto check_json = [&](const std::string& where, const std::string& text) -> Status {
      if (text.empty()) return ok_status();
      auto tok = control_text_in_json(text);
      if (!tok) return invalid(where, tok.error().message);
      if (!tok->empty()) return refuse(where, *tok);
      return ok_status();
    };
    for (size_t i = 0; i < r.tools.size(); ++i) {
      const auto& t = r.tools[i];
      const std::string where = "tools[" + std::to_string(i) + "].function";
      if (auto tok = control_text_in(t.description); !tok.empty()) return refuse(where + ".description", tok);
      if (auto st = check_json(where + ".parameters", t.parameters); !st) return st;
    }
    for (size_t i = 0; i < r.messages.size(); ++i) {
      for (size_t k = 0; k < r.messages[i].tool_calls.size(); ++k) {
        const auto& c = r.messages[i].tool_calls[k];
        const std::string where = "messages[" + std::to_string(i) + "].tool_calls[" + std::to_string(k) + "]";
        if (auto st = check_json(where + ".function.arguments", c.arguments); !st) return st;
        if (auto tok = control_text_in(c.id); !tok.empty()) return refuse(where + ".id", tok);
      }
    }
    if (r.response_format.type == ResponseFormat::Type::json_schema) {
      if (auto st = check_json("response_format.json_schema.schema", r.response_format.schema); !st) return st;
    }
    return ok_status();
  }

  common_chat_templates_inputs inputs(const GenerationRequest& r, const Markers* marks, bool only_named) const {
    common_chat_templates_inputs in;
    // Without tools or a response format there is nothing to parse: the
    // template's plain render (about a tenth of the time of the full path,
    // which analyses the template for its tool-call format on every call).
    in.force_pure_content = r.tools.empty() && r.response_format.type == ResponseFormat::Type::text;
    in.messages = to_common(r.messages, marks);
    in.now = date ? *date : std::chrono::system_clock::now();
    // The pinned common's strftime_now() reads the wall clock itself, so the
    // date reaches Llama 3.x templates as their `date_string` variable.
    in.chat_template_kwargs["date_string"] = "\"" + date_string(in.now) + "\"";
    in.add_generation_prompt = true;
    in.enable_thinking = false;
    // Thinking templates (Qwen3, GLM, DeepSeek) open an empty think block in
    // the generation prompt; the parser and grammar must expect it. Any
    // reasoning the model writes is dropped, not returned as content.
    in.reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;
    if (r.tool_choice.mode != ToolChoiceMode::none || marks) {
      for (const auto& t : r.tools) {
        if (only_named && t.name != r.tool_choice.name) continue;
        in.tools.push_back({t.name, t.description, t.parameters.empty() ? "{}" : t.parameters});
      }
    }
    in.tool_choice = to_common(r.tool_choice.mode);
    // Several calls only where the template can render them (the next
    // turn must show them) and the request allows it.
    in.parallel_tool_calls = r.parallel_tool_calls && caps.parallel_tool_calls && r.tool_choice.mode != ToolChoiceMode::named;
    using Type = ResponseFormat::Type;
    if (r.response_format.type == Type::json_schema) in.json_schema = r.response_format.schema;
    if (r.response_format.type == Type::json_object) in.json_schema = R"({"type":"object"})";
    return in;
  }

  // Splits the marked render into markup and message text.
  Result<std::vector<PromptPiece>> split(const std::string& rendered, const Markers& marks, size_t n) const {
    std::vector<PromptPiece> out;
    size_t pos = 0;
    auto lowered = [](std::string_view t) {
      std::string l(t);
      std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return std::tolower(c); });
      return l;
    };
    const std::string nonce = lowered(marks.nonce);
    auto markup = [&](std::string_view text) -> Status {
      // A marker a template changed (case, slicing) would hide message text here.
      if (lowered(text).find(nonce) != std::string::npos) {
        return make_error(Errc::unsupported, "the model's chat template transforms message text in a way that "
                                             "cannot be tokenised safely");
      }
      if (!text.empty()) out.push_back({std::string(text), true});
      return ok_status();
    };
    while (pos < rendered.size()) {
      const size_t at = rendered.find(marks.prefix(), pos);
      if (at == std::string::npos) break;
      const size_t idx = marks.open_index(rendered, at, n);
      if (idx == n) {  // the prefix by chance, or a close without an open
        if (rendered.find(marks.nonce, at) == at + marks.prefix().size() + 1) {
          return make_error(Errc::unsupported, "the model's chat template splits message text");
        }
        if (auto st = markup(std::string_view(rendered).substr(pos, at + 1 - pos)); !st) return st.error();
        pos = at + 1;
        continue;
      }
      if (auto st = markup(std::string_view(rendered).substr(pos, at - pos)); !st) return st.error();
      const std::string close = marks.close(idx);
      const size_t body = at + marks.open(idx).size();
      const size_t end = rendered.find(close, body);
      if (end == std::string::npos) return make_error(Errc::unsupported, "the model's chat template splits message text");
      const std::string_view text = std::string_view(rendered).substr(body, end - body);
      if (text.find(marks.nonce) != std::string_view::npos) {
        return make_error(Errc::unsupported, "the model's chat template nests message text");
      }
      out.push_back({std::string(text), false});
      pos = end + close.size();
    }
    if (auto st = markup(std::string_view(rendered).substr(std::min(pos, rendered.size()))); !st) return st.error();
    return out;
  }
};

ChatFormat::ChatFormat(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChatFormat::~ChatFormat() = default;

Result<std::unique_ptr<ChatFormat>> ChatFormat::create(const llama_model* model, const std::string& template_override,
                                                       std::optional<std::chrono::system_clock::time_point> date) {
  static std::once_flag quiet;
  // common's own log prints to stderr (a line per request on some paths):
  // off, as llama.cpp's log is routed to ours at debug level.
  std::call_once(quiet, [] { common_log_pause(common_log_main()); });
  auto impl = std::make_unique<Impl>();
  impl->date = date;
  try {
    impl->templates = common_chat_templates_init(model, template_override);
  } catch (const std::exception& e) {
    return make_error(Errc::unsupported, std::string("the model's chat template does not parse: ") + e.what());
  }
  if (model) {
    const llama_vocab* vocab = llama_model_get_vocab(model);
    const int32_t n = llama_vocab_n_tokens(vocab);
    for (llama_token t = 0; t < n; ++t) {
      if (!(llama_vocab_get_attr(vocab, t) & LLAMA_TOKEN_ATTR_CONTROL)) continue;
      std::string text = common_token_to_piece(vocab, t, true);
      if (!text.empty()) impl->control_texts.push_back(std::move(text));
    }
  }
  const auto caps = common_chat_templates_get_caps(impl->templates.get());
  auto cap = [&](const char* k) {
    auto it = caps.find(k);
    return it != caps.end() && it->second;
  };
  impl->caps.tools = cap("supports_tool_calls");
  impl->caps.parallel_tool_calls = cap("supports_parallel_tool_calls");
  return std::unique_ptr<ChatFormat>(new ChatFormat(std::move(impl)));
}

ChatCapabilities ChatFormat::capabilities() const { return impl_->caps; }

Result<ChatPlan> ChatFormat::plan(const GenerationRequest& r) const {
  if (r.messages.empty()) return invalid("messages", "must not be empty");
  if (auto st = impl_->check_no_control_text(r); !st) return st.error();
  Markers marks;
  for (;;) {  // a nonce that no input contains
    marks.nonce = random_alnum(kNonceChars);
    bool clash = false;
    for (const auto& m : r.messages) clash = clash || m.content.find(marks.nonce) != std::string::npos;
    if (!clash) break;
  }
  const bool constrained = !r.tools.empty() || r.response_format.type != ResponseFormat::Type::text;
  ChatPlan plan;
  try {
    const auto marked = common_chat_templates_apply(impl_->templates.get(), impl_->inputs(r, &marks, false));
    auto pieces = impl_->split(marked.prompt, marks, r.messages.size());
    if (!pieces) return pieces.error();
    plan.prompt = std::move(*pieces);
    plan.stops = marked.additional_stops;
    if (!constrained) return plan;
    // Grammar and parser from the real text (never the markers); a named
    // choice offers only that function to the grammar.
    const bool named = r.tool_choice.mode == ToolChoiceMode::named;
    const auto real = common_chat_templates_apply(impl_->templates.get(), impl_->inputs(r, nullptr, named));
    plan.grammar = real.grammar;
    if (!plan.grammar.empty() && (named || r.tool_choice.mode == ToolChoiceMode::required) && !r.tools.empty()) {
      plan.grammar = forbid_text_before_call(std::move(plan.grammar));
    }
    plan.grammar_lazy = real.grammar_lazy;
    if (!real.grammar_lazy) plan.grammar_prefill = real.generation_prompt;
    for (const auto& t : real.grammar_triggers) {
      switch (t.type) {
        case COMMON_GRAMMAR_TRIGGER_TYPE_TOKEN: plan.trigger_tokens.push_back(t.token); break;
        case COMMON_GRAMMAR_TRIGGER_TYPE_WORD: plan.trigger_patterns.push_back(regex_escape(t.value)); break;
        case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN: plan.trigger_patterns.push_back(t.value); break;
        case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN_FULL: {
          std::string p = t.value;
          if (p.empty() || p.front() != '^') p.insert(0, "^");
          if (p.back() != '$') p += "$";
          plan.trigger_patterns.push_back(std::move(p));
          break;
        }
      }
    }
    plan.preserved_tokens = real.preserved_tokens;
    for (const auto& s : real.additional_stops) {
      if (std::find(plan.stops.begin(), plan.stops.end(), s) == plan.stops.end()) plan.stops.push_back(s);
    }
    plan.parser = std::make_shared<const ToolCallParser>(real);
  } catch (const std::exception& e) {
    // common throws for schemas it cannot convert and templates that fail.
    const std::string what = e.what();
    if (what.find("schema") != std::string::npos || what.find("JSON") != std::string::npos ||
        what.find("json") != std::string::npos) {
      return invalid(r.tools.empty() ? "response_format" : "tools", "has a schema that cannot be enforced: " + what);
    }
    return make_error(Errc::unsupported, "the model's chat template cannot render this request: " + what);
  }
  return plan;
}

// ---------------------------------------------------------------- streaming

ToolCallStream::ToolCallStream(std::shared_ptr<const ToolCallParser> parser) : parser_(std::move(parser)) {}
ToolCallStream::~ToolCallStream() = default;

void ToolCallStream::push(std::string_view raw, std::string& content, std::vector<ToolCallDelta>& calls) {
  if (raw.empty()) return;
  raw_ += raw;
  release(false, content, calls);
}

void ToolCallStream::finish(std::string& content, std::vector<ToolCallDelta>& calls) { release(true, content, calls); }

void ToolCallStream::release(bool final, std::string& content, std::vector<ToolCallDelta>& out) {
  common_chat_msg msg;
  try {
    msg = common_chat_parse(raw_, /*is_partial=*/!final, parser_->params);
  } catch (const std::exception&) {
    if (!final) return;  // not yet decidable
    msg = common_chat_msg{};
    msg.content = raw_;  // not a call after all: the whole text is content
    if (!calls_.empty()) msg.content.clear();
  }
  if (msg.content.size() > content_sent_.size() && msg.content.compare(0, content_sent_.size(), content_sent_) == 0) {
    content.append(msg.content, content_sent_.size());
    content_sent_ = msg.content;
  }
  // At most kMaxToolCallsPerMessage calls (what a request may send back):
  // calls beyond them are not released, so indexes stay bounded.
  const size_t n_calls = std::min(msg.tool_calls.size(), kMaxToolCallsPerMessage);
  for (size_t i = 0; i < n_calls; ++i) {
    const auto& c = msg.tool_calls[i];
    if (i == calls_.size()) {
      calls_.push_back({c.id.empty() ? new_tool_call_id() : c.id, "", ""});
      header_sent_.push_back(false);
    }
    ToolCall& mine = calls_[i];
    // A name is certain once its arguments began, a later call exists, or the output ended.
    const bool name_done = final || !c.arguments.empty() || i + 1 < msg.tool_calls.size();  // (all parsed calls)
    if (!header_sent_[i]) {
      if (!name_done || c.name.empty()) break;
      mine.name = c.name;
      out.push_back({static_cast<int32_t>(i), mine.id, mine.name, ""});
      header_sent_[i] = true;
    }
    if (c.arguments.size() > mine.arguments.size() && c.arguments.compare(0, mine.arguments.size(), mine.arguments) == 0) {
      out.push_back({static_cast<int32_t>(i), "", "", c.arguments.substr(mine.arguments.size())});
      mine.arguments = c.arguments;
    }
  }
  if (!final) return;
  // The answer's calls are the final parse's (ids as streamed); a call that
  // never got a name is no call.
  std::vector<ToolCall> done;
  for (size_t i = 0; i < n_calls && i < calls_.size(); ++i) {
    if (!header_sent_[i]) continue;
    done.push_back({calls_[i].id, calls_[i].name, msg.tool_calls[i].arguments});
  }
  calls_ = std::move(done);
}

bool ToolCallStream::calls_complete() const {
  if (calls_.empty()) return false;
  for (const auto& c : calls_) {
    if (common_json::parse_no_throw(c.arguments).is_discarded()) return false;
  }
  return true;
}

std::string new_tool_call_id() { return "call_" + random_alnum(24); }

}  // namespace agora::engine
