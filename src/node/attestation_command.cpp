#include "node/attestation_command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/text.h"
#include "common/utf8.h"

extern char** environ;

namespace agora::node {
namespace {

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

struct Pipe {
  int fd[2] = {-1, -1};
  ~Pipe() {
    for (int f : fd) {
      if (f >= 0) ::close(f);
    }
  }
  void close_end(int i) {
    if (fd[i] >= 0) ::close(fd[i]);
    fd[i] = -1;
  }
};

// The last line or so of standard error, printable, for the error message.
std::string tail(const std::string& err) {
  std::string t(trim(err));
  if (t.size() > 300) t = t.substr(t.size() - 300);
  for (char& c : t) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return is_valid_utf8(t) ? t : std::string("(not UTF-8)");
}

// The environment the command runs with: the node's, with c.env's
// variables set (replacing any of the same name).
std::vector<std::string> command_environment(const AttestationCommand& c) {
  std::vector<std::string> env_strings;
  for (char** e = environ; e && *e; ++e) {
    bool replaced = false;
    for (const auto& [k, v] : c.env) {
      if (std::strncmp(*e, k.c_str(), k.size()) == 0 && (*e)[k.size()] == '=') replaced = true;
    }
    if (!replaced) env_strings.emplace_back(*e);
  }
  for (const auto& [k, v] : c.env) env_strings.push_back(k + "=" + v);
  return env_strings;
}

// Starts `/bin/sh -c "<command> $@" agora-attestation <nonce>` in a process
// group of its own, stdin from /dev/null, stdout and stderr into the pipes,
// no other descriptor inherited, signals at their defaults.
Result<pid_t> spawn_command(const AttestationCommand& c, Pipe& out, Pipe& err) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out.fd[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err.fd[1], 2);
  // Nothing else of the node's (its gateway socket, model files) reaches
  // the command: Asio's sockets are not close-on-exec.
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);

  const std::string script = c.command + " \"$@\"";
  std::vector<std::string> args = {"/bin/sh", "-c", script, "agora-attestation", c.nonce};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings = command_environment(c);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  pid_t pid = 0;
  const int rc = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return make_error(Errc::unavailable, std::string("attestation command: cannot start /bin/sh: ") + std::strerror(rc));
  out.close_end(1);
  err.close_end(1);
  return pid;
}

// What the command printed, and why it was stopped early (empty: it ran to
// its end).
struct Collected {
  std::string stdout_text, stderr_text;
  bool too_large = false;
  std::string killed;
};

// Reads the command's output until the shell exits and its pipes are
// drained, or time runs out, the node cancels, or stdout passes its limit.
Collected collect_output(const AttestationCommand& c, pid_t pid, Pipe& out, Pipe& err,
                         const std::atomic<bool>& cancel, const Clock& clock) {
  // The shell's exit shows on a pidfd, before it is reaped: while it is
  // a zombie its process group id cannot be reused, so the group (anything
  // it left running in the background) is killed safely once it exits.
  Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  Collected r;
  const auto deadline = clock.now() + c.timeout;
  bool out_open = true, err_open = true, exited = false;
  auto read_into = [&](int fd, std::string& dst, bool& open, bool is_stdout) {
    char buf[16384];
    const ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR) return;
    if (got <= 0) {
      open = false;
      return;
    }
    if (is_stdout && dst.size() + static_cast<size_t>(got) > c.max_output) {
      r.too_large = true;
      r.killed = "printed more than " + std::to_string(c.max_output) + " bytes";
      return;
    }
    if (!is_stdout && dst.size() > 64 * 1024) dst.erase(0, 32 * 1024);  // keep the end
    dst.append(buf, static_cast<size_t>(got));
  };
  while (r.killed.empty() && (!exited || out_open || err_open)) {
    if (cancel.load()) {
      r.killed = "cancelled (the node is stopping)";
      break;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock.now());
    if (left.count() <= 0) {
      r.killed = "killed after " + std::to_string(c.timeout.count()) + " ms without finishing";
      break;
    }
    pollfd fds[3] = {{out_open ? out.fd[0] : -1, POLLIN, 0},
                     {err_open ? err.fd[0] : -1, POLLIN, 0},
                     {exited ? -1 : pidfd.fd, POLLIN, 0}};
    const int n = ::poll(fds, 3, static_cast<int>(std::min<int64_t>(left.count(), 100)));
    if (n < 0) {
      if (errno == EINTR) continue;
      r.killed = std::string("poll failed: ") + std::strerror(errno);
      break;
    }
    if (fds[0].revents) read_into(out.fd[0], r.stdout_text, out_open, true);
    if (fds[1].revents && r.killed.empty()) read_into(err.fd[0], r.stderr_text, err_open, false);
    if (fds[2].revents) {
      exited = true;
      // Whatever the shell left behind goes now; it may hold the pipes open.
      ::kill(-pid, SIGKILL);
    }
    if (pidfd.fd < 0 && !out_open && !err_open) exited = true;  // no pidfd: the pipes' end is all we can see
  }
  return r;
}

}  // namespace

Result<std::string> run_attestation_command(const AttestationCommand& c, const std::atomic<bool>& cancel,
                                            const Clock& clock) {
  Pipe out, err;
  if (::pipe2(out.fd, O_CLOEXEC) != 0 || ::pipe2(err.fd, O_CLOEXEC) != 0) {
    return make_error(Errc::unavailable, std::string("attestation command: pipe: ") + std::strerror(errno));
  }
  auto pid = spawn_command(c, out, err);
  if (!pid) return pid.error();
  const Collected r = collect_output(c, *pid, out, err, cancel, clock);
  ::kill(-*pid, SIGKILL);  // on timeout, cancel or a flood; else the leftovers, if any (the leader is not reaped yet)
  int status = 0;
  while (::waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (r.too_large) return make_error(Errc::too_large, "attestation command " + r.killed);
  if (!r.killed.empty()) return make_error(Errc::unavailable, "attestation command " + r.killed);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string how = WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                                        : "was killed by signal " + std::to_string(WTERMSIG(status));
    const std::string t = tail(r.stderr_text);
    return make_error(Errc::unavailable, "attestation command " + how + (t.empty() ? "" : ": " + t));
  }
  std::string evidence(trim(r.stdout_text));
  if (evidence.empty()) return make_error(Errc::invalid_argument, "attestation command printed nothing");
  if (!is_valid_utf8(evidence)) return make_error(Errc::invalid_argument, "attestation command printed something that is not UTF-8 text");
  return evidence;
}

}  // namespace agora::node
