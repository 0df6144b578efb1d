// The gateway <-> provider-node wire protocol (docs/PROTOCOL.md), as plain
// values with a sans-I/O codec: encode() and decode() are pure functions,
// tested without sockets; the WebSocket shells in src/gateway and src/node
// only move the encoded text frames.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/result.h"
#include "protocol/wire.h"

namespace agora::protocol {

// Version 2 added per-model capabilities in the hello, tool-call deltas
// and a sealed final chunk on a sealed job's failure. The gateway still
// accepts version 1 nodes (they get no tool or structured-output jobs).
inline constexpr int kProtocolVersion = 2;
inline constexpr int kMinProtocolVersion = 1;
// WebSocket path a node connects to on the gateway's listener.
inline constexpr std::string_view kNodePath = "/v1/node";
// Largest frame either side accepts (a job carries the whole prompt).
inline constexpr size_t kMaxFrameBytes = 8u << 20;
// Deepest JSON nesting a frame may have.
inline constexpr unsigned kMaxJsonDepth = 16;
// Most agreement digests a hello may list.
inline constexpr size_t kMaxAgreements = 16;
// Largest attestation evidence an Evidence frame may carry (an NRAS EAT
// bundle for 8 GPUs with their certificate chains is ~40 KiB).
inline constexpr size_t kMaxEvidenceBytes = 128u << 10;
// Longest reason an Evidence frame may give for having no evidence.
inline constexpr size_t kMaxEvidenceErrorBytes = 1024;

using JobId = uint64_t;

// What a node can do with a model beyond plain chat (protocol 2; a version
// 1 node has none of these).
struct ModelCapabilities {
  bool tools = false;                // the chat template renders tools and calls
  bool parallel_tool_calls = false;  // ... several calls in one turn
  bool grammar = false;              // grammar-constrained decoding (response_format)
};

struct ModelAdvert {
  std::string name;  // what clients put in "model"
  std::string sha256;
  std::string quantization;
  std::string architecture;
  uint64_t parameters = 0;
  int32_t context_length = 0;  // trained context
  int32_t ctx_per_slot = 0;    // tokens of context one request can use
  int32_t slots = 0;           // concurrent requests this model serves
  ModelCapabilities capabilities = {};
};

struct Hardware {
  std::string cpu;
  int32_t cores = 0;
  uint64_t memory_bytes = 0;
  std::vector<std::string> gpus;
};

// node -> gateway, first frame after the WebSocket handshake.
struct Hello {
  int protocol = kProtocolVersion;
  std::string node_id;
  std::string agent;  // e.g. "agora/0.1.0"
  std::string region;
  std::vector<ModelAdvert> models;
  Hardware hardware;
  // SHA-256 (lower-case hex) of every version of the provider data-handling
  // agreement (docs/PROVIDER_AGREEMENT.md) this node's operator accepted.
  std::vector<std::string> agreements;
  // The node's X25519 identity public key (lower-case hex, 64 digits): what
  // clients seal requests to, and what attestation binds. Empty: none.
  std::string identity_key;
  // The attestation evidence this node can produce, if any: "nvidia_cc"
  // (GPU confidential computing, an NRAS result) or "play_integrity"
  // (an Android device). Empty: none; the node serves at "standard".
  std::string attestation;
};

// gateway -> node, the answer to a valid Hello.
struct Welcome {
  int protocol = kProtocolVersion;  // the version this session speaks (the node's)
  std::string provider_id;
  int32_t heartbeat_ms = 0;  // WebSocket pings at least this often
  // The agreement version the gateway requires now, and whether the hello
  // accepted it. When not, an AgreementOffer follows and the node gets no
  // job until it answers with Accept.
  int32_t agreement_version = 0;
  std::string agreement_sha256;
  bool agreement_accepted = false;
};

// gateway -> node: accept this version of the agreement before any further
// job (sent after a welcome that did not accept it, and to every node when
// the operator publishes a new version).
struct AgreementOffer {
  int32_t version = 0;
  std::string sha256;  // of `text`, lower-case hex
  std::string text;
};

// node -> gateway: the node's operator accepted the agreement `sha256`.
struct Accept {
  std::string sha256;
};

// gateway -> node: prove your attestation now. The evidence must be bound
// to SHA-256(nonce ‖ the node's identity public key) (attest/verifier.h).
struct Challenge {
  std::string nonce;  // 64 lower-case hex digits, single use
};

// node -> gateway: the answer to a Challenge: the evidence, or why there is
// none (the attestation command failed).
struct Evidence {
  std::string nonce;  // the challenge's nonce, as sent
  std::string kind;   // "nvidia_cc" | "play_integrity"
  std::string evidence;
  std::string error;  // set instead of evidence when the node has none
};

// gateway -> node, then the connection closes: the hello was refused.
struct Reject {
  std::string code;  // "protocol_version", "bad_hello", "duplicate_node", ...
  std::string message;
};

// End-to-end sealed requests (protocol/sealed.h; binary fields travel as
// base64). The sealed part of a job: the header fields the job does not
// already carry, and this node's share of the content key.
struct SealedJob {
  int64_t issued_ms = 0;
  bool stream = false;
  std::vector<std::string> recipients;
  std::string enc, key, ciphertext;  // raw bytes
};
// One sealed response chunk.
struct SealedChunk {
  uint64_t seq = 0;
  bool final = false;
  std::string ciphertext;  // raw bytes
};

// gateway -> node: run this request. `job` is opaque and unique per
// connection; the node never learns the API key or who the client is.
struct Job {
  JobId job = 0;
  std::string model;
  GenerationRequest request;  // sealed: only max_tokens is meaningful
  std::optional<SealedJob> sealed;
};

// gateway -> node: stop this job; the node answers with Done(cancelled).
struct Cancel {
  JobId job = 0;
};

// node -> gateway: newly released text (always whole UTF-8 characters)
// and tool-call fragments (protocol 2).
struct Delta {
  JobId job = 0;
  std::string text;
  std::vector<TokenLogprob> logprobs;
  std::optional<SealedChunk> sealed;  // a sealed job's output (text empty)
  std::vector<ToolCallDelta> tool_calls = {};
};
// Most tool-call fragments one delta may carry, and the highest call index.
inline constexpr size_t kMaxToolCallDeltas = 128;
inline constexpr int32_t kMaxToolCallIndex = 1023;

// node -> gateway: the job finished (any finish reason but error).
struct Done {
  JobId job = 0;
  FinishReason finish = FinishReason::stop;
  Usage usage;
  Timings timings;
  std::optional<SealedChunk> sealed;  // a sealed job's final chunk
};

// node -> gateway: the job failed. `retryable` says another node may
// succeed (busy, draining, out of memory) as opposed to a bad request.
struct Failed {
  JobId job = 0;
  std::string code;  // an Errc name, e.g. "invalid_argument", "unavailable"
  std::string message;
  bool retryable = false;
  // A sealed job that failed after it was opened (protocol 2): the real
  // code and message, as a Failed frame sealed as the final chunk. The
  // plaintext keeps the code (an Errc class: it picks the HTTP status and
  // retries) and `retryable`; its message says nothing about the request.
  std::optional<SealedChunk> sealed = {};
};

// node -> gateway: no new jobs please; in-flight ones will finish.
struct Drain {};

using Message = std::variant<Hello, Welcome, Reject, Job, Cancel, Delta, Done, Failed, Drain, AgreementOffer, Accept,
                             Challenge, Evidence>;

// The frame's "type" field for each alternative.
std::string_view message_type(const Message& m);

// Serialises one message to a JSON text frame.
std::string encode(const Message& m);
// Appends the frame for a Delta to `out` (the hot path; no allocation when
// `out` has capacity).
void encode_delta(std::string& out, const Delta& d);

// Parses one frame. Errors: invalid_argument naming what is wrong (not JSON,
// too deep, unknown type, a missing or mistyped field), too_large.
Result<Message> decode(std::string_view frame);

// "nvidia_cc" or "play_integrity".
bool is_attestation_kind(std::string_view kind);

FinishReason parse_finish_reason(std::string_view s, bool* ok);

// A generation request alone, as in a job frame's "request" (the sealed
// payload of an end-to-end encrypted request). Errors: like decode().
std::string encode_request(const GenerationRequest& r);
Result<GenerationRequest> decode_request(std::string_view json);

}  // namespace agora::protocol
