// Gateway metrics: histogram buckets and the Prometheus text exposition.
#include "gateway/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace agora::gateway {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// Sample lines as "name{labels}" -> value text.
std::map<std::string, std::string> samples(const std::string& text) {
  std::map<std::string, std::string> out;
  for (const auto& l : lines(text)) {
    if (l.empty() || l[0] == '#') continue;
    const auto sp = l.rfind(' ');
    EXPECT_NE(sp, std::string::npos) << l;
    if (sp == std::string::npos) continue;
    EXPECT_TRUE(out.emplace(l.substr(0, sp), l.substr(sp + 1)).second) << "duplicate series: " << l;
  }
  return out;
}

double value_of(const std::map<std::string, std::string>& s, const std::string& series) {
  auto it = s.find(series);
  if (it == s.end()) {
    ADD_FAILURE() << "missing series " << series;
    return -1;
  }
  return std::stod(it->second);
}

// Checks the Prometheus text format: well-formed sample lines, each family
// typed once before its samples, histogram buckets cumulative and ending in
// +Inf == _count.
void expect_valid_exposition(const std::string& text) {
  ASSERT_TRUE(text.ends_with("\n"));
  static const std::regex kSample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*",?)*\})? (\S+)$)");
  static const std::regex kType(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$)");
  static const std::regex kHelp(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$)");
  std::map<std::string, std::string> types;
  for (const auto& l : lines(text)) {
    std::smatch m;
    if (std::regex_match(l, m, kType)) {
      EXPECT_TRUE(types.emplace(m[1], m[2]).second) << "typed twice: " << l;
      continue;
    }
    if (std::regex_match(l, m, kHelp)) continue;
    ASSERT_TRUE(std::regex_match(l, m, kSample)) << "malformed line: '" << l << "'";
    std::string family = m[1];
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (family.ends_with(suffix) && types.contains(family.substr(0, family.size() - std::strlen(suffix))) &&
          !types.contains(family)) {
        family.resize(family.size() - std::strlen(suffix));
      }
    }
    EXPECT_TRUE(types.contains(family)) << "sample before its # TYPE: " << l;
    const std::string v = m[4];
    EXPECT_NO_THROW((void)std::stod(v)) << l;
  }
}

TEST(Histogram, BucketsAreCumulativeWithInclusiveUpperBounds) {
  Histogram h;
  for (double s : {0.0001, 0.0005, 0.003, 0.7, 1.0, 20.0}) h.observe(s);
  std::string out;
  h.render(out, "h", "");
  const auto s = samples(out);
  EXPECT_EQ(value_of(s, "h_bucket{le=\"0.0005\"}"), 2);  // 0.0001 and exactly 0.0005
  EXPECT_EQ(value_of(s, "h_bucket{le=\"0.001\"}"), 2);
  EXPECT_EQ(value_of(s, "h_bucket{le=\"0.0025\"}"), 2);
  EXPECT_EQ(value_of(s, "h_bucket{le=\"0.005\"}"), 3);
  EXPECT_EQ(value_of(s, "h_bucket{le=\"0.5\"}"), 3);
  EXPECT_EQ(value_of(s, "h_bucket{le=\"1\"}"), 5);
  EXPECT_EQ(value_of(s, "h_bucket{le=\"10\"}"), 5);
  EXPECT_EQ(value_of(s, "h_bucket{le=\"+Inf\"}"), 6);
  EXPECT_EQ(value_of(s, "h_count"), 6);
  EXPECT_NEAR(value_of(s, "h_sum"), 21.7036, 1e-9);

  // One bucket line per bound plus +Inf, in increasing order, never decreasing.
  std::vector<double> counts;
  std::vector<std::string> les;
  static const std::regex kBucket(R"re(^h_bucket\{le="([^"]+)"\} (\d+)$)re");
  for (const auto& l : lines(out)) {
    std::smatch m;
    if (std::regex_match(l, m, kBucket)) {
      les.push_back(m[1]);
      counts.push_back(std::stod(m[2]));
    }
  }
  ASSERT_EQ(les.size(), Histogram::kBounds.size() + 1);
  for (size_t i = 0; i < Histogram::kBounds.size(); ++i) {
    EXPECT_DOUBLE_EQ(std::stod(les[i]), Histogram::kBounds[i]);
    if (i > 0) {
      EXPECT_GE(counts[i], counts[i - 1]);
    }
  }
  EXPECT_EQ(les.back(), "+Inf");
  EXPECT_GE(counts.back(), counts[counts.size() - 2]);
}

TEST(Histogram, EmptyHistogramRendersZeros) {
  Histogram h;
  std::string out;
  h.render(out, "empty", "");
  const auto s = samples(out);
  EXPECT_EQ(s.size(), Histogram::kBounds.size() + 3);
  for (const auto& [series, v] : s) EXPECT_EQ(v, "0") << series;
}

TEST(Histogram, LabelsPrecedeLe) {
  Histogram h;
  h.observe(0.02);
  std::string out = "before\n";
  h.render(out, "lat", "route=\"chat\"");
  EXPECT_TRUE(out.starts_with("before\nlat_bucket{route=\"chat\",le=\"5e-05\"} 0\n")) << out;
  EXPECT_THAT(out, HasSubstr("lat_bucket{route=\"chat\",le=\"0.025\"} 1\n"));
  EXPECT_THAT(out, HasSubstr("lat_bucket{route=\"chat\",le=\"+Inf\"} 1\n"));
  EXPECT_THAT(out, HasSubstr("lat_sum{route=\"chat\"} 0.02\n"));
  EXPECT_THAT(out, HasSubstr("lat_count{route=\"chat\"} 1\n"));
}

TEST(Metrics, RendersCountersHistogramsAndGauges) {
  Metrics m;
  m.request("chat", 200, 0.1);
  m.request("chat", 200, 0.2);
  m.request("chat", 400, 0.001);
  m.request("models", 200, 0.002);
  m.tokens(10, 5);
  m.tokens(20, 7);
  m.time_to_first_token(0.3);
  m.job_retried();
  m.job_retried();
  m.node_failure();
  m.node_connected();
  m.node_connected();
  m.node_connected();
  Gauges g;
  g.nodes_connected = 2;
  g.queue_depth = 4;
  g.slots_total = 16;
  g.slots_busy = 9;
  g.http_connections = 31;
  const std::string out = m.render(g);
  expect_valid_exposition(out);

  const auto s = samples(out);
  EXPECT_EQ(value_of(s, R"(agora_http_requests_total{route="chat",code="200"})"), 2);
  EXPECT_EQ(value_of(s, R"(agora_http_requests_total{route="chat",code="400"})"), 1);
  EXPECT_EQ(value_of(s, R"(agora_http_requests_total{route="models",code="200"})"), 1);
  EXPECT_EQ(value_of(s, R"(agora_http_request_duration_seconds_count{route="chat"})"), 3);
  EXPECT_EQ(value_of(s, R"(agora_http_request_duration_seconds_bucket{route="chat",le="0.1"})"), 2);
  EXPECT_EQ(value_of(s, R"(agora_http_request_duration_seconds_bucket{route="chat",le="+Inf"})"), 3);
  EXPECT_NEAR(value_of(s, R"(agora_http_request_duration_seconds_sum{route="chat"})"), 0.301, 1e-9);
  EXPECT_EQ(value_of(s, R"(agora_http_request_duration_seconds_count{route="models"})"), 1);
  EXPECT_EQ(value_of(s, "agora_time_to_first_token_seconds_count"), 1);
  EXPECT_EQ(value_of(s, R"(agora_time_to_first_token_seconds_bucket{le="0.25"})"), 0);
  EXPECT_EQ(value_of(s, R"(agora_time_to_first_token_seconds_bucket{le="0.5"})"), 1);
  EXPECT_EQ(value_of(s, R"(agora_tokens_total{kind="prompt"})"), 30);
  EXPECT_EQ(value_of(s, R"(agora_tokens_total{kind="completion"})"), 12);
  EXPECT_EQ(value_of(s, "agora_job_retries_total"), 2);
  EXPECT_EQ(value_of(s, "agora_node_failures_total"), 1);
  EXPECT_EQ(value_of(s, "agora_node_connections_total"), 3);
  EXPECT_EQ(value_of(s, "agora_nodes_connected"), 2);
  EXPECT_EQ(value_of(s, "agora_queue_depth"), 4);
  EXPECT_EQ(value_of(s, "agora_slots_total"), 16);
  EXPECT_EQ(value_of(s, "agora_slots_busy"), 9);
  EXPECT_EQ(value_of(s, "agora_http_connections"), 31);

  EXPECT_THAT(out, HasSubstr("# TYPE agora_http_requests_total counter\n"));
  EXPECT_THAT(out, HasSubstr("# TYPE agora_http_request_duration_seconds histogram\n"));
  EXPECT_THAT(out, HasSubstr("# TYPE agora_time_to_first_token_seconds histogram\n"));
  EXPECT_THAT(out, HasSubstr("# TYPE agora_slots_busy gauge\n"));
  EXPECT_THAT(out, HasSubstr("# TYPE agora_gateway_ttft_overhead_seconds histogram\n"));
  EXPECT_THAT(out, HasSubstr("# TYPE agora_gateway_token_forward_seconds histogram\n"));
}

TEST(Metrics, FreshMetricsRenderValidly) {
  Metrics m;
  const std::string out = m.render(Gauges{});
  expect_valid_exposition(out);
  const auto s = samples(out);
  EXPECT_EQ(value_of(s, "agora_time_to_first_token_seconds_count"), 0);
  EXPECT_EQ(value_of(s, "agora_nodes_connected"), 0);
  for (const auto& [series, v] : s) EXPECT_FALSE(series.starts_with("agora_http_requests_total")) << series;
}

}  // namespace
TEST(Histogram, FineBoundsResolveMicroseconds) {
  Histogram h{Histogram::kFineBounds};
  h.observe(0.000003);  // 3 µs: above 2 µs, within 5 µs
  h.observe(0.00002);   // 20 µs: within 25 µs
  std::string out;
  h.render(out, "f", "");
  const auto s = samples(out);
  EXPECT_EQ(s.size(), Histogram::kFineBounds.size() + 3);
  EXPECT_EQ(s.at("f_bucket{le=\"2e-06\"}"), "0");
  EXPECT_EQ(s.at("f_bucket{le=\"5e-06\"}"), "1");
  EXPECT_EQ(s.at("f_bucket{le=\"1e-05\"}"), "1");
  EXPECT_EQ(s.at("f_bucket{le=\"2.5e-05\"}"), "2");
  EXPECT_EQ(s.at("f_bucket{le=\"+Inf\"}"), "2");
  EXPECT_EQ(s.at("f_count"), "2");
}

}  // namespace agora::gateway
