// The gateway <-> node codec: every message survives encode -> decode
// unchanged, and malformed frames come back as errors that name the problem.
#include "protocol/messages.h"

#include <fstream>
#include <iterator>

#include "crypto/sha256.h"
#include "protocol/agreement.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

namespace agora::protocol {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;

// Encodes `msg`, decodes the frame and returns the alternative it came back
// as (a default T, after a recorded failure, when it did not).
template <class T>
T round_trip(const T& msg) {
  const std::string frame = encode(Message{msg});
  auto r = decode(frame);
  EXPECT_TRUE(r.ok()) << frame << "\n-> " << (r.ok() ? std::string() : r.error().message);
  if (!r.ok()) return T{};
  EXPECT_TRUE(std::holds_alternative<T>(*r)) << frame << "\n-> decoded as " << message_type(*r);
  if (!std::holds_alternative<T>(*r)) return T{};
  return std::get<T>(*r);
}

// Decodes a frame that must fail with `code`; returns the error message.
std::string decode_error(std::string_view frame, Errc code = Errc::invalid_argument) {
  auto r = decode(frame);
  EXPECT_FALSE(r.ok()) << "decoded without error: " << frame;
  if (r.ok()) return {};
  EXPECT_EQ(r.error().code, code) << r.error().message;
  return r.error().message;
}

void expect_same_logprobs(const std::vector<protocol::TokenLogprob>& got,
                          const std::vector<protocol::TokenLogprob>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE("logprobs[" + std::to_string(i) + "]");
    EXPECT_EQ(got[i].token, want[i].token);
    EXPECT_EQ(got[i].text, want[i].text);
    EXPECT_FLOAT_EQ(got[i].logprob, want[i].logprob);
    ASSERT_EQ(got[i].top.size(), want[i].top.size());
    for (size_t k = 0; k < want[i].top.size(); ++k) {
      EXPECT_EQ(got[i].top[k].token, want[i].top[k].token);
      EXPECT_EQ(got[i].top[k].text, want[i].top[k].text);
      EXPECT_FLOAT_EQ(got[i].top[k].logprob, want[i].top[k].logprob);
    }
  }
}

// Tokens whose bytes are pieces of characters, as byte-level BPE produces.
std::vector<protocol::TokenLogprob> fragment_logprobs() {
  protocol::TokenLogprob a;
  a.token = 1234;
  a.text = "\xE2\x82";  // the first two bytes of U+20AC
  a.logprob = -0.125f;
  a.top = {{1234, "\xE2\x82", -0.125f}, {99, std::string("\xFF\x00", 2), -2.75f}, {7, "\"\\\n", -9.5f}};
  protocol::TokenLogprob b;
  b.token = 5;
  b.text = "\xAC";  // its last byte
  b.logprob = -1.0e-6f;
  protocol::TokenLogprob c;
  c.token = 0;
  c.text = "";
  c.logprob = 0.0f;
  return {a, b, c};
}

TEST(Messages, TypeNamesMatchTheFrameTypeField) {
  const std::vector<std::pair<Message, std::string_view>> cases = {
      {Hello{}, "hello"}, {Welcome{}, "welcome"}, {Reject{}, "reject"}, {Job{}, "job"},   {Cancel{}, "cancel"},
      {Delta{}, "delta"}, {Done{}, "done"},       {Failed{}, "failed"}, {Drain{}, "drain"},
      {AgreementOffer{}, "agreement"}, {Accept{}, "accept"}, {Challenge{}, "challenge"}, {Evidence{}, "evidence"},
  };
  for (const auto& [m, name] : cases) {
    EXPECT_EQ(message_type(m), name);
    const std::string frame = encode(m);
    boost::system::error_code ec;
    json::value v = json::parse(frame, ec);
    ASSERT_FALSE(ec) << frame;
    ASSERT_TRUE(v.is_object()) << frame;
    ASSERT_TRUE(v.get_object().contains("type")) << frame;
    EXPECT_EQ(v.get_object().at("type"), json::value(std::string(name))) << frame;
  }
}

TEST(Messages, HelloRoundTrips) {
  Hello h;
  h.protocol = kProtocolVersion;
  h.node_id = "node-\xC3\xA9-1";
  h.agent = "agora/0.1.0";
  h.region = "eu-west";
  ModelAdvert a;
  a.name = "llama-3-8b";
  a.sha256 = std::string(64, 'a');
  a.quantization = "Q4_K_M";
  a.architecture = "llama";
  a.parameters = 8'030'261'248ull;
  a.context_length = 8192;
  a.ctx_per_slot = 4096;
  a.slots = 4;
  ModelAdvert b;
  b.name = "tiny";
  b.sha256 = std::string(64, 'b');
  b.ctx_per_slot = 256;
  b.slots = 1;
  h.models = {a, b};
  h.hardware.cpu = "AMD EPYC \"Genoa\"";
  h.hardware.cores = 96;
  h.hardware.memory_bytes = 1ull << 40;
  h.hardware.gpus = {"H100", "H100"};
  h.agreements = {std::string(64, 'd'), std::string(64, 'e')};
  h.identity_key = std::string(64, '7');

  const Hello got = round_trip(h);
  EXPECT_EQ(got.protocol, h.protocol);
  EXPECT_EQ(got.node_id, h.node_id);
  EXPECT_EQ(got.agent, h.agent);
  EXPECT_EQ(got.region, h.region);
  ASSERT_EQ(got.models.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(got.models[i].name, h.models[i].name);
    EXPECT_EQ(got.models[i].sha256, h.models[i].sha256);
    EXPECT_EQ(got.models[i].quantization, h.models[i].quantization);
    EXPECT_EQ(got.models[i].architecture, h.models[i].architecture);
    EXPECT_EQ(got.models[i].parameters, h.models[i].parameters);
    EXPECT_EQ(got.models[i].context_length, h.models[i].context_length);
    EXPECT_EQ(got.models[i].ctx_per_slot, h.models[i].ctx_per_slot);
    EXPECT_EQ(got.models[i].slots, h.models[i].slots);
  }
  EXPECT_EQ(got.hardware.cpu, h.hardware.cpu);
  EXPECT_EQ(got.hardware.cores, h.hardware.cores);
  EXPECT_EQ(got.hardware.memory_bytes, h.hardware.memory_bytes);
  EXPECT_EQ(got.hardware.gpus, h.hardware.gpus);
  EXPECT_EQ(got.agreements, h.agreements);
  EXPECT_EQ(got.identity_key, h.identity_key);
}

TEST(Messages, HelloWithoutModelsOrHardwareRoundTrips) {
  Hello h;
  h.protocol = 7;
  h.node_id = "n";
  const Hello got = round_trip(h);
  EXPECT_EQ(got.protocol, 7);
  EXPECT_EQ(got.node_id, "n");
  EXPECT_TRUE(got.models.empty());
  EXPECT_TRUE(got.hardware.gpus.empty());
}

TEST(Messages, WelcomeRoundTrips) {
  Welcome w;
  w.protocol = 3;
  w.provider_id = "prov_123";
  w.heartbeat_ms = 7500;
  w.agreement_version = 4;
  w.agreement_sha256 = std::string(64, 'f');
  w.agreement_accepted = true;
  const Welcome got = round_trip(w);
  EXPECT_EQ(got.protocol, 3);
  EXPECT_EQ(got.provider_id, "prov_123");
  EXPECT_EQ(got.heartbeat_ms, 7500);
  EXPECT_EQ(got.agreement_version, 4);
  EXPECT_EQ(got.agreement_sha256, w.agreement_sha256);
  EXPECT_TRUE(got.agreement_accepted);
}

TEST(Messages, SealedJobDeltaAndDoneRoundTripTheirBytes) {
  Job j;
  j.job = 3;
  j.model = "tiny";
  j.request.max_tokens = 16;
  SealedJob sj;
  sj.issued_ms = 1'796'000'000'000;
  sj.stream = true;
  sj.recipients = {"n1", "n2"};
  sj.enc = std::string("\x00\x01\xfe\xff", 4) + std::string(28, 'e');
  sj.key = std::string(48, '\x9c');
  sj.ciphertext = std::string("\x00sealed\"\n", 9);
  j.sealed = sj;
  const Job gj = round_trip(j);
  ASSERT_TRUE(gj.sealed);
  EXPECT_EQ(gj.sealed->issued_ms, sj.issued_ms);
  EXPECT_TRUE(gj.sealed->stream);
  EXPECT_EQ(gj.sealed->recipients, sj.recipients);
  EXPECT_EQ(gj.sealed->enc, sj.enc);
  EXPECT_EQ(gj.sealed->key, sj.key);
  EXPECT_EQ(gj.sealed->ciphertext, sj.ciphertext);
  EXPECT_FALSE(round_trip(Job{}).sealed);

  Delta d;
  d.job = 3;
  d.sealed = SealedChunk{5, false, std::string("\x01\x02\x00", 3)};
  const Delta gd = round_trip(d);
  ASSERT_TRUE(gd.sealed);
  EXPECT_EQ(gd.sealed->seq, 5u);
  EXPECT_FALSE(gd.sealed->final);
  EXPECT_EQ(gd.sealed->ciphertext, d.sealed->ciphertext);
  Done done;
  done.job = 3;
  done.sealed = SealedChunk{6, true, "x"};
  const Done gdone = round_trip(done);
  ASSERT_TRUE(gdone.sealed);
  EXPECT_TRUE(gdone.sealed->final);
  EXPECT_FALSE(decode(R"({"type":"delta","job":1,"text":"","sealed":{"seq":0,"final":false,"ciphertext":"not base64!"}})"));
  EXPECT_FALSE(decode(R"({"type":"job","job":1,"model":"m","request":{"messages":[{"role":"user","content":"x"}]},"sealed":{"issued_ms":1,"stream":false,"recipients":[],"enc":"","key":"","ciphertext":""}})"));
}

TEST(Messages, AgreementOfferAndAcceptRoundTrip) {
  AgreementOffer o{2, std::string(64, 'a'), "# Agreement\n\nVersion: 2\n\"quoted\"\n"};
  const AgreementOffer got = round_trip(o);
  EXPECT_EQ(got.version, 2);
  EXPECT_EQ(got.sha256, o.sha256);
  EXPECT_EQ(got.text, o.text);
  EXPECT_EQ(round_trip(Accept{std::string(64, 'b')}).sha256, std::string(64, 'b'));
}

TEST(Messages, ChallengeAndEvidenceRoundTrip) {
  const std::string nonce(64, 'c');
  EXPECT_EQ(round_trip(Challenge{nonce}).nonce, nonce);
  Evidence e{nonce, "nvidia_cc", R"([["JWT","a.b.c"],{"GPU-0":"d.e.f"}])", ""};
  const Evidence got = round_trip(e);
  EXPECT_EQ(got.nonce, nonce);
  EXPECT_EQ(got.kind, "nvidia_cc");
  EXPECT_EQ(got.evidence, e.evidence);
  EXPECT_TRUE(got.error.empty());
  const Evidence failed = round_trip(Evidence{nonce, "play_integrity", "", "the device said no"});
  EXPECT_EQ(failed.error, "the device said no");
  Hello h;
  h.node_id = "n";
  h.identity_key = std::string(64, 'd');
  h.attestation = "nvidia_cc";
  EXPECT_EQ(round_trip(h).attestation, "nvidia_cc");
}

TEST(MessagesDecode, ChallengeAndEvidenceAreBounded) {
  const std::string n(64, 'a');
  EXPECT_FALSE(decode(R"({"type":"challenge","nonce":"short"})"));
  EXPECT_FALSE(decode(R"({"type":"evidence","nonce":")" + n + R"(","kind":"tpm","evidence":"x"})"));  // unknown kind
  EXPECT_FALSE(decode(R"({"type":"evidence","nonce":")" + n + R"(","kind":"nvidia_cc"})"));  // neither
  EXPECT_FALSE(decode(R"({"type":"evidence","nonce":")" + n + R"(","kind":"nvidia_cc","evidence":"x","error":"y"})"));
  const std::string huge = R"({"type":"evidence","nonce":")" + n + R"(","kind":"nvidia_cc","evidence":")" +
                           std::string(kMaxEvidenceBytes + 1, 'x') + "\"}";
  EXPECT_NE(decode_error(huge, Errc::too_large), "");
  EXPECT_FALSE(decode(R"({"type":"evidence","nonce":")" + n + R"(","kind":"nvidia_cc","error":")" +
                      std::string(kMaxEvidenceErrorBytes + 1, 'x') + "\"}"));
  EXPECT_FALSE(decode(R"({"type":"hello","protocol":1,"node_id":"n","models":[],"attestation":"sgx"})"));
  EXPECT_TRUE(decode(R"({"type":"evidence","nonce":")" + n + R"(","kind":"play_integrity","evidence":"a.b.c.d.e"})"));
}

TEST(MessagesDecode, AgreementDigestsMustBeDigests) {
  EXPECT_FALSE(decode(R"({"type":"accept","sha256":"abc"})"));
  EXPECT_FALSE(decode(R"({"type":"accept","sha256":")" + std::string(63, 'a') + "\\n\"}"));  // no log injection
  EXPECT_FALSE(decode(R"({"type":"accept","sha256":")" + std::string(64, 'A') + "\"}"));
  EXPECT_TRUE(decode(R"({"type":"accept","sha256":")" + std::string(64, 'a') + "\"}"));
  EXPECT_FALSE(decode(R"({"type":"hello","protocol":1,"node_id":"n","models":[],"agreements":["short"]})"));
  EXPECT_FALSE(decode(R"({"type":"hello","protocol":1,"node_id":"n","models":[],"agreements":[7]})"));
  EXPECT_FALSE(decode(R"({"type":"hello","protocol":1,"node_id":"n","models":[],"identity_key":"xyz"})"));
  std::string many = R"({"type":"hello","protocol":1,"node_id":"n","models":[],"agreements":[)";
  for (size_t i = 0; i <= kMaxAgreements; ++i) many += (i ? ",\"" : "\"") + std::string(64, 'a') + "\"";
  many += "]}";
  auto r = decode(many);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("more than"), std::string::npos) << r.error().message;
}

TEST(Messages, RejectRoundTrips) {
  Reject r;
  r.code = "protocol_version";
  r.message = "this gateway speaks protocol 1,\nnot \"2\"";
  const Reject got = round_trip(r);
  EXPECT_EQ(got.code, r.code);
  EXPECT_EQ(got.message, r.message);
}

TEST(Messages, JobWithChatMessagesAndEveryFieldRoundTrips) {
  Job j;
  j.job = 9'007'199'254'740'993ull;  // not representable as a double
  j.model = "llama-3-8b";
  auto& r = j.request;
  r.messages = {{"system", "Be terse."}, {"user", "Quote: \"\\\" \xE2\x82\xAC\n\ttab"}, {"assistant", ""}};
  r.max_tokens = 1234;
  r.sampling.temperature = 0.7f;
  r.sampling.top_p = 0.9f;
  r.sampling.top_k = 40;
  r.sampling.min_p = 0.05f;
  r.sampling.seed = std::numeric_limits<uint32_t>::max();
  r.sampling.presence_penalty = -1.5f;
  r.sampling.frequency_penalty = 0.25f;
  r.sampling.logit_bias = {{0, -100.0f}, {50256, 2.5f}, {17, 100.0f}};
  r.stop = {"\n\n", "END", "\xE2\x82\xAC"};
  r.logprobs = true;
  r.top_logprobs = 20;
  r.ignore_eos = true;

  const Job got = round_trip(j);
  EXPECT_EQ(got.job, j.job);
  EXPECT_EQ(got.model, j.model);
  const auto& g = got.request;
  EXPECT_FALSE(g.prompt.has_value());
  ASSERT_EQ(g.messages.size(), r.messages.size());
  for (size_t i = 0; i < r.messages.size(); ++i) {
    EXPECT_EQ(g.messages[i].role, r.messages[i].role);
    EXPECT_EQ(g.messages[i].content, r.messages[i].content);
  }
  EXPECT_EQ(g.max_tokens, 1234);
  EXPECT_FLOAT_EQ(g.sampling.temperature, 0.7f);
  EXPECT_FLOAT_EQ(g.sampling.top_p, 0.9f);
  EXPECT_EQ(g.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(g.sampling.min_p, 0.05f);
  EXPECT_EQ(g.sampling.seed, std::optional<uint32_t>(std::numeric_limits<uint32_t>::max()));
  EXPECT_FLOAT_EQ(g.sampling.presence_penalty, -1.5f);
  EXPECT_FLOAT_EQ(g.sampling.frequency_penalty, 0.25f);
  ASSERT_EQ(g.sampling.logit_bias.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(g.sampling.logit_bias[i].first, r.sampling.logit_bias[i].first);
    EXPECT_FLOAT_EQ(g.sampling.logit_bias[i].second, r.sampling.logit_bias[i].second);
  }
  EXPECT_EQ(g.stop, r.stop);
  EXPECT_TRUE(g.logprobs);
  EXPECT_EQ(g.top_logprobs, 20);
  EXPECT_TRUE(g.ignore_eos);
}

TEST(Messages, JobWithRawPromptAndDefaultsRoundTrips) {
  Job j;
  j.job = 1;
  j.model = "tiny";
  j.request.prompt = "Once upon a time";
  const Job got = round_trip(j);
  EXPECT_EQ(got.job, 1u);
  ASSERT_TRUE(got.request.prompt.has_value());
  EXPECT_EQ(*got.request.prompt, "Once upon a time");
  EXPECT_TRUE(got.request.messages.empty());
  const protocol::GenerationRequest defaults;
  EXPECT_EQ(got.request.max_tokens, defaults.max_tokens);
  EXPECT_FLOAT_EQ(got.request.sampling.temperature, defaults.sampling.temperature);
  EXPECT_FLOAT_EQ(got.request.sampling.top_p, defaults.sampling.top_p);
  EXPECT_EQ(got.request.sampling.top_k, 0);
  EXPECT_FLOAT_EQ(got.request.sampling.min_p, 0.0f);
  EXPECT_FALSE(got.request.sampling.seed.has_value());
  EXPECT_FLOAT_EQ(got.request.sampling.presence_penalty, 0.0f);
  EXPECT_FLOAT_EQ(got.request.sampling.frequency_penalty, 0.0f);
  EXPECT_TRUE(got.request.sampling.logit_bias.empty());
  EXPECT_TRUE(got.request.stop.empty());
  EXPECT_FALSE(got.request.logprobs);
  EXPECT_EQ(got.request.top_logprobs, 0);
  EXPECT_FALSE(got.request.ignore_eos);
}

TEST(Messages, JobWithEmptyPromptStaysAPrompt) {
  Job j;
  j.job = 2;
  j.request.prompt = "";
  const Job got = round_trip(j);
  ASSERT_TRUE(got.request.prompt.has_value());
  EXPECT_EQ(*got.request.prompt, "");
}

TEST(Messages, CancelAndDrainRoundTrip) {
  Cancel c;
  c.job = 42;
  EXPECT_EQ(round_trip(c).job, 42u);
  auto r = decode(encode(Message{Drain{}}));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(std::holds_alternative<Drain>(*r));
}

TEST(Messages, DeltaWithFragmentLogprobsRoundTripsByteForByte) {
  Delta d;
  d.job = 77;
  d.text = "\xE2\x82\xAC \"quoted\"\n\\ \xF0\x9F\x98\x80";
  d.logprobs = fragment_logprobs();
  const Delta got = round_trip(d);
  EXPECT_EQ(got.job, 77u);
  EXPECT_EQ(got.text, d.text);
  expect_same_logprobs(got.logprobs, d.logprobs);
}

TEST(Messages, DeltaWithControlCharactersRoundTrips) {
  Delta d;
  d.job = 1;
  d.text = std::string("nul\x00 bell\x07 esc\x1b", 15);
  const Delta got = round_trip(d);
  EXPECT_EQ(got.text, d.text);
  EXPECT_TRUE(got.logprobs.empty());
}

TEST(Messages, EncodeDeltaEqualsEncodeAndAppends) {
  Delta plain;
  plain.job = 3;
  plain.text = "hi";
  Delta with_lp = plain;
  with_lp.logprobs = fragment_logprobs();
  for (const Delta& d : {plain, with_lp, Delta{}}) {
    std::string out;
    encode_delta(out, d);
    EXPECT_EQ(out, encode(Message{d}));
    std::string appended = "prefix|";
    encode_delta(appended, d);
    EXPECT_EQ(appended, "prefix|" + out);
  }
}

TEST(Messages, DoneRoundTripsEveryFinishReasonWithUsageAndTimings) {
  for (auto reason : {protocol::FinishReason::stop, protocol::FinishReason::length, protocol::FinishReason::cancelled,
                      protocol::FinishReason::error}) {
    SCOPED_TRACE(protocol::finish_reason_name(reason));
    Done d;
    d.job = 123456789;
    d.finish = reason;
    d.usage = {1000, 256, 512};
    d.timings = {0.125, 12.345, 6789.0625};
    const Done got = round_trip(d);
    EXPECT_EQ(got.job, d.job);
    EXPECT_EQ(got.finish, reason);
    EXPECT_EQ(got.usage.prompt_tokens, 1000);
    EXPECT_EQ(got.usage.completion_tokens, 256);
    EXPECT_EQ(got.usage.cached_prompt_tokens, 512);
    EXPECT_DOUBLE_EQ(got.timings.queued_ms, 0.125);
    EXPECT_DOUBLE_EQ(got.timings.prompt_ms, 12.345);
    EXPECT_DOUBLE_EQ(got.timings.decode_ms, 6789.0625);
  }
}

TEST(Messages, DoneWithoutTimingsOrCachedTokensDecodes) {
  auto r = decode(R"({"type":"done","job":4,"finish_reason":"length","usage":{"prompt_tokens":3,"completion_tokens":2}})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_TRUE(std::holds_alternative<Done>(*r));
  const auto& d = std::get<Done>(*r);
  EXPECT_EQ(d.finish, protocol::FinishReason::length);
  EXPECT_EQ(d.usage.prompt_tokens, 3);
  EXPECT_EQ(d.usage.completion_tokens, 2);
  EXPECT_EQ(d.usage.cached_prompt_tokens, 0);
  EXPECT_EQ(d.timings.queued_ms, 0.0);
}

TEST(Messages, FailedRoundTrips) {
  Failed f;
  f.job = 5;
  f.code = "unavailable";
  f.message = "out of memory";
  f.retryable = true;
  const Failed got = round_trip(f);
  EXPECT_EQ(got.job, 5u);
  EXPECT_EQ(got.code, "unavailable");
  EXPECT_EQ(got.message, "out of memory");
  EXPECT_TRUE(got.retryable);
  f.retryable = false;
  EXPECT_FALSE(round_trip(f).retryable);
}

TEST(Messages, UnknownFieldsAreIgnored) {
  auto r = decode(R"({"type":"cancel","job":8,"future":{"x":[1,2,3]},"also":null})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_TRUE(std::holds_alternative<Cancel>(*r));
  EXPECT_EQ(std::get<Cancel>(*r).job, 8u);
}

TEST(Messages, ParseFinishReason) {
  bool ok = false;
  EXPECT_EQ(parse_finish_reason("stop", &ok), protocol::FinishReason::stop);
  EXPECT_TRUE(ok);
  EXPECT_EQ(parse_finish_reason("length", &ok), protocol::FinishReason::length);
  EXPECT_TRUE(ok);
  EXPECT_EQ(parse_finish_reason("cancelled", &ok), protocol::FinishReason::cancelled);
  EXPECT_TRUE(ok);
  EXPECT_EQ(parse_finish_reason("error", &ok), protocol::FinishReason::error);
  EXPECT_TRUE(ok);
  parse_finish_reason("Stop", &ok);
  EXPECT_FALSE(ok);
  ok = true;
  parse_finish_reason("", &ok);
  EXPECT_FALSE(ok);
}

// ---- decode errors ----

TEST(MessagesDecode, RejectsTextThatIsNotJson) {
  for (std::string_view frame : {"", "{", "hello", "{\"type\":\"drain\"", "{\"type\":\"drain\"}}", "{'type':'drain'}"}) {
    EXPECT_THAT(decode_error(frame), HasSubstr("not valid JSON")) << frame;
  }
}

TEST(MessagesDecode, RejectsInvalidUtf8InsideJson) {
  EXPECT_THAT(decode_error("{\"type\":\"delta\",\"job\":1,\"text\":\"\xFF\"}"), HasSubstr("not valid JSON"));
}

TEST(MessagesDecode, RejectsJsonThatIsNotAnObject) {
  for (std::string_view frame : {"[]", "[{\"type\":\"drain\"}]", "\"drain\"", "42", "null", "true"}) {
    EXPECT_THAT(decode_error(frame), HasSubstr("must be a JSON object")) << frame;
  }
}

TEST(MessagesDecode, RejectsMissingOrMistypedType) {
  EXPECT_THAT(decode_error(R"({"job":1})"), HasSubstr("type is missing"));
  EXPECT_THAT(decode_error(R"({"type":5})"), HasSubstr("type must be a string"));
  EXPECT_THAT(decode_error(R"({"type":null})"), HasSubstr("type must be a string"));
}

TEST(MessagesDecode, RejectsUnknownType) {
  const std::string msg = decode_error(R"({"type":"teleport","job":1})");
  EXPECT_THAT(msg, HasSubstr("unknown"));
  EXPECT_THAT(msg, HasSubstr("teleport"));
  EXPECT_THAT(decode_error(R"({"type":"Delta","job":1,"text":""})"), HasSubstr("unknown"));
}

TEST(MessagesDecode, MissingFieldsAreNamed) {
  struct Case {
    std::string_view frame;
    std::string_view field;
  };
  const Case cases[] = {
      {R"({"type":"cancel"})", "job"},
      {R"({"type":"delta","job":1})", "text"},
      {R"({"type":"delta","text":"x"})", "job"},
      {R"({"type":"done","job":1,"usage":{"prompt_tokens":1,"completion_tokens":1}})", "finish_reason"},
      {R"({"type":"done","job":1,"finish_reason":"stop"})", "usage"},
      {R"({"type":"done","job":1,"finish_reason":"stop","usage":{"prompt_tokens":1}})", "completion_tokens"},
      {R"({"type":"failed","job":1,"code":"internal"})", "message"},
      {R"({"type":"failed","job":1,"message":"m"})", "code"},
      {R"({"type":"reject","code":"bad_hello"})", "message"},
      {R"({"type":"welcome","protocol":1})", "provider_id"},
      {R"({"type":"welcome","provider_id":"p"})", "protocol"},
      {R"({"type":"hello","protocol":1,"models":[]})", "node_id"},
      {R"({"type":"hello","protocol":1,"node_id":"n"})", "models"},
      {R"({"type":"hello","protocol":1,"node_id":"n","models":[{"name":"m","sha256":"s","ctx_per_slot":1}]})",
       "models[0].slots"},
      {R"({"type":"hello","protocol":1,"node_id":"n","models":[{"sha256":"s","ctx_per_slot":1,"slots":1}]})",
       "models[0].name"},
      {R"({"type":"job","job":1,"request":{"prompt":"p","max_tokens":1}})", "model"},
      {R"({"type":"job","job":1,"model":"m"})", "request"},
      {R"({"type":"job","job":1,"model":"m","request":{"prompt":"p"}})", "max_tokens"},
      {R"({"type":"job","job":1,"model":"m","request":{"max_tokens":1}})", "messages"},
      {R"({"type":"job","job":1,"model":"m","request":{"max_tokens":1,"messages":[{"role":"user"}]}})", "content"},
      {R"({"type":"delta","job":1,"text":"","logprobs":[{"id":1,"logprob":-1}]})", "bytes"},
      {R"({"type":"delta","job":1,"text":"","logprobs":[{"id":1,"bytes":[]}]})", "logprob"},
  };
  for (const auto& c : cases) {
    const std::string msg = decode_error(c.frame);
    EXPECT_THAT(msg, HasSubstr(std::string(c.field))) << c.frame;
    EXPECT_THAT(msg, HasSubstr("missing")) << c.frame;
  }
}

TEST(MessagesDecode, MistypedFieldsAreNamed) {
  struct Case {
    std::string_view frame;
    std::string_view field;
  };
  const Case cases[] = {
      {R"({"type":"cancel","job":"1"})", "job must be an integer"},
      {R"({"type":"cancel","job":1.5})", "job must be an integer"},
      {R"({"type":"cancel","job":true})", "job must be an integer"},
      {R"({"type":"delta","job":1,"text":5})", "text must be a string"},
      {R"({"type":"delta","job":1,"text":"","logprobs":[1]})", "logprobs"},
      {R"({"type":"delta","job":1,"text":"","logprobs":[{"id":1,"bytes":[256],"logprob":0}]})", "bytes"},
      {R"({"type":"delta","job":1,"text":"","logprobs":[{"id":1,"bytes":[-1],"logprob":0}]})", "bytes"},
      {R"({"type":"delta","job":1,"text":"","logprobs":[{"id":1,"bytes":"ab","logprob":0}]})", "bytes"},
      {R"({"type":"delta","job":1,"text":"","logprobs":[{"id":1,"bytes":[],"logprob":"x"}]})", "logprob"},
      {R"({"type":"delta","job":1,"text":"","logprobs":[{"id":1,"bytes":[],"logprob":0,"top":[3]}]})", "top"},
      {R"({"type":"done","job":1,"finish_reason":"finished","usage":{"prompt_tokens":1,"completion_tokens":1}})",
       "finish_reason"},
      {R"({"type":"done","job":1,"finish_reason":"stop","usage":[]})", "usage must be an object"},
      {R"({"type":"done","job":1,"finish_reason":"stop","usage":{"prompt_tokens":"1","completion_tokens":1}})",
       "prompt_tokens must be an integer"},
      {R"({"type":"done","job":1,"finish_reason":"stop","usage":{"prompt_tokens":1,"completion_tokens":1},"timings":{"decode_ms":"fast"}})",
       "decode_ms must be a number"},
      {R"({"type":"failed","job":1,"code":"c","message":"m","retryable":"yes"})", "retryable must be a boolean"},
      {R"({"type":"reject","code":1,"message":"m"})", "code must be a string"},
      {R"({"type":"welcome","protocol":1,"provider_id":"p","heartbeat_ms":"5s"})", "heartbeat_ms must be an integer"},
      {R"({"type":"hello","protocol":"1","node_id":"n","models":[]})", "protocol must be an integer"},
      {R"({"type":"hello","protocol":1,"node_id":"n","models":{}})", "models must be an array"},
      {R"({"type":"hello","protocol":1,"node_id":"n","models":["m"]})", "models[0]"},
      {R"({"type":"hello","protocol":1,"node_id":"n","models":[],"hardware":{"cores":"8"}})",
       "cores must be an integer"},
      {R"({"type":"job","job":1,"model":"m","request":"hi"})", "request must be an object"},
      {R"({"type":"job","job":1,"model":"m","request":{"prompt":5,"max_tokens":1}})", "prompt must be a string"},
      {R"({"type":"job","job":1,"model":"m","request":{"messages":"hi","max_tokens":1}})", "messages must be an array"},
      {R"({"type":"job","job":1,"model":"m","request":{"messages":["hi"],"max_tokens":1}})", "messages"},
      {R"({"type":"job","job":1,"model":"m","request":{"prompt":"p","max_tokens":1,"temperature":"hot"}})",
       "temperature must be a number"},
      {R"({"type":"job","job":1,"model":"m","request":{"prompt":"p","max_tokens":1,"logprobs":1}})",
       "logprobs must be a boolean"},
      {R"({"type":"job","job":1,"model":"m","request":{"prompt":"p","max_tokens":1,"stop":[1]}})", "stop"},
      {R"({"type":"job","job":1,"model":"m","request":{"prompt":"p","max_tokens":1,"stop":"END"}})",
       "stop must be an array"},
      {R"({"type":"job","job":1,"model":"m","request":{"prompt":"p","max_tokens":1,"logit_bias":[[1]]}})",
       "logit_bias"},
      {R"({"type":"job","job":1,"model":"m","request":{"prompt":"p","max_tokens":1,"logit_bias":{"1":2}}})",
       "logit_bias must be an array"},
      {R"({"type":"job","job":1,"model":"m","request":{"prompt":"p","max_tokens":1,"seed":"s"}})",
       "seed must be an integer"},
  };
  for (const auto& c : cases) {
    EXPECT_THAT(decode_error(c.frame), HasSubstr(std::string(c.field))) << c.frame;
  }
}

// Optional containers of the wrong type are mistyped fields too: they must
// not be silently dropped.
TEST(MessagesDecode, MistypedOptionalContainersAreErrors) {
  EXPECT_THAT(decode_error(R"({"type":"delta","job":1,"text":"a","logprobs":"none"})"),
              HasSubstr("logprobs must be an array"));
  EXPECT_THAT(decode_error(R"({"type":"delta","job":1,"text":"","logprobs":[{"id":1,"bytes":[],"logprob":0,"top":{}}]})"),
              HasSubstr("top must be an array"));
  EXPECT_THAT(decode_error(R"({"type":"done","job":1,"finish_reason":"stop","usage":{"prompt_tokens":1,"completion_tokens":1},"timings":7})"),
              HasSubstr("timings must be an object"));
  EXPECT_THAT(decode_error(R"({"type":"hello","protocol":1,"node_id":"n","models":[],"hardware":"big"})"),
              HasSubstr("hardware must be an object"));
  EXPECT_THAT(decode_error(R"({"type":"hello","protocol":1,"node_id":"n","models":[],"hardware":{"gpus":"H100"}})"),
              HasSubstr("gpus must be an array"));
  EXPECT_THAT(decode_error(R"({"type":"hello","protocol":1,"node_id":"n","models":[],"hardware":{"gpus":["H100",1]}})"),
              HasSubstr("gpus"));
}

TEST(MessagesDecode, RejectsNegativeJobIds) {
  for (std::string_view type : {"cancel", "delta", "failed"}) {
    std::string frame = R"({"type":")" + std::string(type) + R"(","job":-1,"text":"","code":"c","message":"m"})";
    EXPECT_THAT(decode_error(frame), HasSubstr("job must not be negative")) << frame;
  }
  EXPECT_THAT(decode_error(R"({"type":"done","job":-5,"finish_reason":"stop","usage":{"prompt_tokens":1,"completion_tokens":1}})"),
              HasSubstr("job must not be negative"));
  EXPECT_THAT(decode_error(R"({"type":"job","job":-9223372036854775808,"model":"m","request":{"prompt":"p","max_tokens":1}})"),
              HasSubstr("job must not be negative"));
}

TEST(MessagesDecode, RejectsOutOfRangeIntegers) {
  struct Case {
    std::string_view frame;
    std::string_view want;
  };
  const Case cases[] = {
      {R"({"type":"welcome","protocol":2147483648,"provider_id":"p"})", "protocol is out of range"},
      {R"({"type":"welcome","protocol":1,"provider_id":"p","heartbeat_ms":-2147483649})", "heartbeat_ms is out of range"},
      {R"({"type":"hello","protocol":1,"node_id":"n","models":[{"name":"m","sha256":"s","ctx_per_slot":1,"slots":4294967296}]})",
       "slots is out of range"},
      {R"({"type":"hello","protocol":1,"node_id":"n","models":[{"name":"m","sha256":"s","parameters":-1,"ctx_per_slot":1,"slots":1}]})",
       "parameters must not be negative"},
      {R"({"type":"done","job":1,"finish_reason":"stop","usage":{"prompt_tokens":2147483648,"completion_tokens":1}})",
       "prompt_tokens is out of range"},
      {R"({"type":"job","job":1,"model":"m","request":{"prompt":"p","max_tokens":2147483648}})", "max_tokens is out of range"},
      {R"({"type":"job","job":1,"model":"m","request":{"prompt":"p","max_tokens":1,"seed":4294967296}})", "seed is out of range"},
      {R"({"type":"job","job":1,"model":"m","request":{"prompt":"p","max_tokens":1,"seed":-1}})", "seed must not be negative"},
      // Beyond int64: not representable by any field.
      {R"({"type":"cancel","job":18446744073709551615})", "job must be an integer"},
  };
  for (const auto& c : cases) {
    EXPECT_THAT(decode_error(c.frame), HasSubstr(std::string(c.want))) << c.frame;
  }
}

// Found by fuzzing (tests/fuzz/corpus/node_frame/regress_overflowing_number.json,
// regress_float_overflow.json): an overflowing literal (1E40000) decoded as an
// infinity that encode() wrote as the non-JSON "Infinity", a double beyond
// float's range was converted to float (undefined behaviour), and logit_bias
// took any int64 as a token id.
TEST(MessagesDecode, NumbersMustBeFiniteAndFitTheirType) {
  auto job = [](const std::string& extra) {
    return R"({"type":"job","job":1,"model":"m","request":{"messages":[{"role":"user","content":"x"}],"max_tokens":4)" +
           extra + "}}";
  };
  EXPECT_TRUE(decode(job(R"(,"temperature":0.5,"logit_bias":[[5,-100]])")));
  EXPECT_FALSE(decode(job(R"(,"temperature":1E40000)")));
  EXPECT_FALSE(decode(job(R"(,"temperature":-1E40000)")));
  EXPECT_FALSE(decode(job(R"(,"top_p":1e300)")));
  EXPECT_FALSE(decode(job(R"(,"logit_bias":[[5,1e300]])")));
  EXPECT_FALSE(decode(job(R"(,"logit_bias":[[-1,1]])")));
  EXPECT_FALSE(decode(job(R"(,"logit_bias":[[4294967296,1]])")));
  const std::string done = R"({"type":"done","job":1,"finish_reason":"stop","usage":{"prompt_tokens":1,"completion_tokens":1})";
  EXPECT_TRUE(decode(done + R"(,"timings":{"queued_ms":0,"prompt_ms":1.5,"decode_ms":1e10}})"));
  EXPECT_THAT(decode_error(done + R"(,"timings":{"prompt_ms":1E400}})"), HasSubstr("prompt_ms"));
  // Found in review: a node's negative or huge timings overflowed the
  // gateway's overhead in microseconds (double -> int64, undefined).
  EXPECT_THAT(decode_error(done + R"(,"timings":{"prompt_ms":-1e300}})"), HasSubstr("timings"));
  EXPECT_THAT(decode_error(done + R"(,"timings":{"decode_ms":1e11}})"), HasSubstr("timings"));
  EXPECT_THAT(decode_error(R"({"type":"done","job":1,"finish_reason":"stop","usage":{"prompt_tokens":-1,"completion_tokens":1}})"),
              HasSubstr("usage"));
  // Whatever decodes, encodes to JSON that decodes again.
  auto m = decode(job(R"(,"temperature":3.4e38)"));
  ASSERT_TRUE(m);
  EXPECT_TRUE(decode(encode(*m)));
}

TEST(MessagesDecode, AcceptsIntegersAtTheirLimits) {
  auto r = decode(R"({"type":"welcome","protocol":2147483647,"provider_id":"p","heartbeat_ms":-2147483648})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_TRUE(std::holds_alternative<Welcome>(*r));
  EXPECT_EQ(std::get<Welcome>(*r).protocol, std::numeric_limits<int32_t>::max());
  EXPECT_EQ(std::get<Welcome>(*r).heartbeat_ms, std::numeric_limits<int32_t>::min());
  auto c = decode(R"({"type":"cancel","job":9223372036854775807})");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(std::get<Cancel>(*c).job, static_cast<JobId>(std::numeric_limits<int64_t>::max()));
}

std::string nested_cancel(unsigned depth) {
  // The frame object itself is one level; `x` adds depth - 1 arrays.
  std::string frame = R"({"type":"cancel","job":1,"x":)";
  frame += std::string(depth - 1, '[');
  frame += std::string(depth - 1, ']');
  frame += '}';
  return frame;
}

TEST(MessagesDecode, AcceptsNestingUpToTheLimit) {
  auto r = decode(nested_cancel(kMaxJsonDepth));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(std::holds_alternative<Cancel>(*r));
}

TEST(MessagesDecode, RejectsNestingBeyondTheLimit) {
  EXPECT_THAT(decode_error(nested_cancel(kMaxJsonDepth + 1)), HasSubstr("deep"));
  EXPECT_THAT(decode_error(std::string(100'000, '[')), HasSubstr("deep"));
}

TEST(MessagesDecode, RejectsFramesOverTheSizeLimit) {
  // A valid delta of exactly kMaxFrameBytes is accepted; one byte more is not.
  const std::string head = R"({"type":"delta","job":1,"text":")";
  const std::string tail = R"("})";
  std::string frame = head + std::string(kMaxFrameBytes - head.size() - tail.size(), 'a') + tail;
  ASSERT_EQ(frame.size(), kMaxFrameBytes);
  auto r = decode(frame);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(std::get<Delta>(*r).text.size(), kMaxFrameBytes - head.size() - tail.size());

  frame.insert(head.size(), "a");
  EXPECT_THAT(decode_error(frame, Errc::too_large), HasSubstr("too large"));
}

}  // namespace
}  // namespace agora::protocol

namespace agora::protocol {
namespace {

TEST(Agreement, ParsesItsVersionAndHashesTheText) {
  auto a = parse_agreement("# T\n\nVersion: 12\r\nbody\n");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->version, 12);
  EXPECT_EQ(a->sha256, crypto::sha256_hex("# T\n\nVersion: 12\r\nbody\n"));
  EXPECT_FALSE(parse_agreement(""));
  EXPECT_FALSE(parse_agreement("no version here\n"));
  EXPECT_FALSE(parse_agreement("Version: zero\n"));
  EXPECT_FALSE(parse_agreement("Version: 0\n"));
  EXPECT_FALSE(parse_agreement("Version: 3 and more\n"));
  EXPECT_FALSE(parse_agreement(std::string((1u << 20) + 1, 'x')));
}

// The binary carries docs/PROVIDER_AGREEMENT.md exactly: nodes hash what
// the operator publishes.
TEST(Agreement, TheBuiltInOneIsTheDocumentInTheRepository) {
  const auto& b = builtin_agreement();
  EXPECT_GE(b.version, 1);
  std::ifstream in(AGORA_SOURCE_DIR "/docs/PROVIDER_AGREEMENT.md", std::ios::binary);
  ASSERT_TRUE(in);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(b.text, text);
  EXPECT_EQ(b.sha256, crypto::sha256_hex(text));
}

TEST(Messages, ToolsAndResponseFormatRoundTripInTheRequest) {
  GenerationRequest r;
  r.messages = {{"user", "weather?"},
                {"assistant", "", {{"call_1", "get_weather", R"({"city":"Paris"})"}}, ""},
                {"tool", "sunny", {}, "call_1"}};
  // A schema deeper than the frame's depth limit travels as text.
  std::string deep = "{}";
  for (unsigned i = 0; i < kMaxJsonDepth + 4; ++i) deep = R"({"items":)" + deep + "}";
  r.tools = {{"get_weather", "Weather", deep, true}, {"noop", "", "", false}};
  r.tool_choice = {ToolChoiceMode::named, "get_weather"};
  r.parallel_tool_calls = false;
  r.response_format = {ResponseFormat::Type::json_schema, "out", R"({"type":"object"})", true};
  auto back = decode_request(encode_request(r));
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  ASSERT_EQ(back->messages.size(), 3u);
  ASSERT_EQ(back->messages[1].tool_calls.size(), 1u);
  EXPECT_EQ(back->messages[1].tool_calls[0].id, "call_1");
  EXPECT_EQ(back->messages[1].tool_calls[0].name, "get_weather");
  EXPECT_EQ(back->messages[1].tool_calls[0].arguments, R"({"city":"Paris"})");
  EXPECT_EQ(back->messages[2].tool_call_id, "call_1");
  ASSERT_EQ(back->tools.size(), 2u);
  EXPECT_EQ(back->tools[0].parameters, deep);
  EXPECT_TRUE(back->tools[0].strict);
  EXPECT_EQ(back->tools[1].parameters, "");
  EXPECT_EQ(back->tool_choice.mode, ToolChoiceMode::named);
  EXPECT_EQ(back->tool_choice.name, "get_weather");
  EXPECT_FALSE(back->parallel_tool_calls);
  EXPECT_EQ(back->response_format.type, ResponseFormat::Type::json_schema);
  EXPECT_EQ(back->response_format.schema, R"({"type":"object"})");
  EXPECT_TRUE(back->response_format.strict);
  // Defaults stay off the wire and come back as defaults.
  GenerationRequest plain;
  plain.messages = {{"user", "x"}};
  const std::string text = encode_request(plain);
  EXPECT_EQ(text.find("tool"), std::string::npos) << text;
  auto p = decode_request(text);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->parallel_tool_calls);
  EXPECT_EQ(p->tool_choice.mode, ToolChoiceMode::automatic);
  EXPECT_FALSE(decode_request(R"({"messages":[{"role":"user","content":"x"}],"max_tokens":1,"tool_choice":{"mode":"sometimes"}})").ok());
  EXPECT_FALSE(decode_request(R"({"messages":[{"role":"user","content":"x"}],"max_tokens":1,"tools":[{"description":"no name"}]})").ok());
}

}  // namespace
}  // namespace agora::protocol
