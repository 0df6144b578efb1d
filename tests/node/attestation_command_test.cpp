// The node's attestation command runner against real /bin/sh commands:
// the nonce arrives as the last argument and in the environment, output is
// trimmed, and failures, silence, floods and cancellation each give a
// clear error (and leave no process behind).
#include "node/attestation_command.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <fcntl.h>

#include <cerrno>
#include <filesystem>
#include <fstream>

#include <thread>

namespace agora::node {
namespace {

Result<std::string> run(std::string command, std::chrono::milliseconds timeout = std::chrono::seconds(10),
                        size_t max_output = 1 << 16) {
  AttestationCommand c;
  c.command = std::move(command);
  c.nonce = "00ff";
  c.env = {{"AGORA_EVIDENCE_NONCE", "00ff"}, {"AGORA_ATTESTATION_KIND", "nvidia_cc"}};
  c.timeout = timeout;
  c.max_output = max_output;
  std::atomic<bool> cancel{false};
  return run_attestation_command(c, cancel);
}

TEST(AttestationCommand, TheNonceIsTheLastArgumentAndInTheEnvironment) {
  auto r = run("printf '  token-for-%s-%s-%s\\n\\n' \"$AGORA_EVIDENCE_NONCE\" \"$AGORA_ATTESTATION_KIND\"");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(*r, "token-for-00ff-nvidia_cc-00ff");
}

TEST(AttestationCommand, AFailureSaysHowAndShowsTheEndOfStandardError) {
  auto r = run("echo 'service unreachable' >&2; exit 7; :");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::unavailable);
  EXPECT_NE(r.error().message.find("status 7"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("service unreachable"), std::string::npos) << r.error().message;
  auto none = run("true");
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("printed nothing"), std::string::npos);
  auto binary = run("printf '\\377\\376'");
  ASSERT_FALSE(binary);
  EXPECT_NE(binary.error().message.find("UTF-8"), std::string::npos);
}

// A background child's pid, as the command wrote it to `file`.
pid_t read_pid(const std::filesystem::path& file) {
  std::ifstream in(file);
  pid_t pid = 0;
  in >> pid;
  return pid;
}

// Whether `pid` is gone (polled: a killed process is reaped by init soon).
bool gone(pid_t pid) {
  for (int i = 0; i < 10000; ++i) {
    if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
    std::string state;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string skip;
    stat >> skip >> skip >> state;
    if (state == "Z") return true;  // killed, waiting for its reaper
    usleep(1000);
  }
  return false;
}

std::filesystem::path temp_file(const char* what) {
  return std::filesystem::temp_directory_path() / (std::string("agora-attest-") + what + "-" + std::to_string(getpid()));
}

TEST(AttestationCommand, ACommandThatHangsIsKilledWithItsChildren) {
  const auto pid_file = temp_file("hang");
  const auto t0 = std::chrono::steady_clock::now();
  // A child sleeps in the background too: the whole group must go.
  auto r = run("sleep 30 & echo $! > '" + pid_file.string() + "'; sleep 30; :", std::chrono::milliseconds(300));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("killed after 300 ms"), std::string::npos) << r.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  const pid_t child = read_pid(pid_file);
  ASSERT_GT(child, 0);
  EXPECT_TRUE(gone(child)) << "the background child " << child << " still runs";
  std::filesystem::remove(pid_file);
}

TEST(AttestationCommand, ACommandThatSucceedsLeavesNothingRunning) {
  const auto pid_file = temp_file("ok");
  // The background child keeps neither pipe: only the group kill ends it.
  auto r = run("sleep 30 >/dev/null 2>&1 & echo $! > '" + pid_file.string() + "'; echo token; :");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(*r, "token");
  const pid_t child = read_pid(pid_file);
  ASSERT_GT(child, 0);
  EXPECT_TRUE(gone(child)) << "the background child " << child << " still runs";
  std::filesystem::remove(pid_file);
}

TEST(AttestationCommand, TheNodesOwnFilesAreNotInherited) {
  // A descriptor the node holds without close-on-exec (as Asio's sockets are).
  const int fd = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(fd, 0);
  auto r = run("if [ -e /proc/self/fd/" + std::to_string(fd) + " ]; then echo inherited; else echo closed; fi; :");
  ::close(fd);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(*r, "closed");
}

TEST(AttestationCommand, OutputBeyondTheLimitIsRefused) {
  auto r = run("head -c 100000 /dev/zero | tr '\\0' x; :", std::chrono::seconds(10), 4096);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::too_large) << r.error().message;
}

TEST(AttestationCommand, CancelStopsIt) {
  const auto started = std::filesystem::temp_directory_path() / ("agora-attest-started-" + std::to_string(getpid()));
  std::filesystem::remove(started);
  AttestationCommand c;
  c.command = "touch '" + started.string() + "'; sleep 30; :";
  c.nonce = "00";
  std::atomic<bool> cancel{false};
  std::thread t([&] {
    // Cancelled from another thread once the command runs (polling for the
    // file it makes first, with a hard limit).
    for (int i = 0; i < 20000 && !std::filesystem::exists(started); ++i) {
      std::this_thread::yield();
      usleep(500);
    }
    cancel = true;
  });
  auto r = run_attestation_command(c, cancel);
  t.join();
  ASSERT_FALSE(r);
  EXPECT_TRUE(std::filesystem::exists(started));
  EXPECT_NE(r.error().message.find("cancelled"), std::string::npos) << r.error().message;
  std::filesystem::remove(started);
}

}  // namespace
}  // namespace agora::node
