// src/server/fork_server.cc
// The helper process of fork_server.h and the parent's side of its socket.
//
// On the socket (a stream; every integer little-endian, as this machine writes it):
//   server -> helper   request: 'R', u32 length, then the request's bytes
//   server -> helper   cancel:  'C' (kills the worker in flight; ignored when none runs)
//   helper -> server   begun:   i64 the worker's pid (negative: -errno, no worker)
//   helper -> server   ended:   i32 wait status, u32 report length, the report's bytes
#include "server/fork_server.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "base/assert.h"
#include "base/thread_priority.h"

namespace credit::server {
namespace {

// The helper's socket, moved to this descriptor before the others are closed.
constexpr int kHelperSocketFd = 3;
// The server's messages.
constexpr char kRequest = 'R';
constexpr char kCancel = 'C';

// Whole reads and writes, retried on EINTR. false: the peer is gone (or an error).
bool write_all(int fd, const void* data, std::size_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

bool read_all(int fd, void* data, std::size_t n) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

Error helper_error(const std::string& what) {
  return Error(ErrorCode::kStorageFailed, "fork server: " + what);
}

// The helper: one worker at a time, until the server's end of the socket closes.
[[noreturn]] void run_helper(const ForkServer::Work& work) {
  const int sock = kHelperSocketFd;
  const pid_t helper = ::getpid();
  for (;;) {
    char type = 0;
    if (!read_all(sock, &type, 1)) ::_exit(0);  // the server is gone
    if (type == kCancel) continue;              // its worker had ended already
    if (type != kRequest) ::_exit(1);
    std::uint32_t length = 0;
    if (!read_all(sock, &length, sizeof(length))) ::_exit(0);
    if (length > kForkRequestBytesMax) ::_exit(1);
    std::string request(length, '\0');
    if (!read_all(sock, request.data(), length)) ::_exit(0);
    int report[2] = {-1, -1};
    std::int64_t begun = 0;
    pid_t pid = -1;
    if (::pipe2(report, O_CLOEXEC | O_NONBLOCK) != 0) {
      begun = -errno;
      report[0] = -1;
    } else {
      pid = ::fork();
      if (pid == 0) {
        ::close(sock);
        ::close(report[0]);
        // Dies with the helper, which dies with the server (or kills this first).
        if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != helper) ::_exit(126);
        ::_exit(work(request, report[1]));
      }
      begun = pid > 0 ? pid : -errno;
      ::close(report[1]);
    }
    if (!write_all(sock, &begun, sizeof(begun))) {
      if (pid > 0) ::kill(pid, SIGKILL);
      ::_exit(0);
    }
    if (pid <= 0) {
      if (report[0] >= 0) ::close(report[0]);
      continue;
    }
    // Waits for the worker, for a cancel, or for the server's end (the server sends no
    // request before this one ended).
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd >= 0) {
      pollfd fds[2] = {{pidfd, POLLIN, 0}, {sock, POLLIN, 0}};
      for (;;) {
        const int n = ::poll(fds, 2, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n >= 0 && fds[0].revents != 0) break;
        char type = 0;
        if (n < 0 || !read_all(sock, &type, 1) || type != kCancel) {
          ::kill(pid, SIGKILL);
          ::waitpid(pid, nullptr, 0);
          ::_exit(0);
        }
        ::kill(pid, SIGKILL);  // cancelled: it ends, and is reported, as killed
        fds[1].events = 0;
      }
      ::close(pidfd);
    }
    int status = 0;
    pid_t waited = 0;
    do {
      waited = ::waitpid(pid, &status, 0);
    } while (waited < 0 && errno == EINTR);
    std::vector<char> bytes(kForkReportBytesMax);
    const ssize_t got = ::read(report[0], bytes.data(), bytes.size());
    ::close(report[0]);
    const auto status32 = static_cast<std::int32_t>(waited == pid ? status : -1);
    const auto report_bytes = static_cast<std::uint32_t>(got > 0 ? got : 0);
    if (!write_all(sock, &status32, sizeof(status32)) ||
        !write_all(sock, &report_bytes, sizeof(report_bytes)) ||
        !write_all(sock, bytes.data(), report_bytes)) {
      ::_exit(0);
    }
  }
}

}  // namespace

Result<std::unique_ptr<ForkServer>> ForkServer::start(Work work) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return helper_error(std::string("cannot create a socket pair: ") + std::strerror(errno));
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(sv[0]);
    ::close(sv[1]);
    return helper_error(std::string("cannot fork: ") + std::strerror(err));
  }
  if (pid == 0) {
    // Only the forking thread exists here. Its copies of the server's descriptors (the
    // data dir's lock, a listening socket, the server's end of this pair) are closed, so
    // that none outlives the server.
    if (::dup2(sv[1], kHelperSocketFd) != kHelperSocketFd) ::_exit(1);
    // Either end may be below it when descriptors 0-2 were closed.
    if (sv[0] != kHelperSocketFd) ::close(sv[0]);
    if (sv[1] != kHelperSocketFd) ::close(sv[1]);
    ::syscall(SYS_close_range, kHelperSocketFd + 1, ~0U, 0);
    run_in_background();
    run_helper(work);
  }
  ::close(sv[1]);
  return std::unique_ptr<ForkServer>(new ForkServer(sv[0], pid));
}

ForkServer::~ForkServer() {
  ::close(fd_);
  pid_t waited = 0;
  do {
    waited = ::waitpid(helper_pid_, nullptr, 0);
  } while (waited < 0 && errno == EINTR);
}

Result<pid_t> ForkServer::begin(std::string_view request) {
  CREDIT_ASSERT(request.size() <= kForkRequestBytesMax);
  const auto length = static_cast<std::uint32_t>(request.size());
  bool sent = false;
  {
    std::lock_guard lock(write_mu_);
    sent = write_all(fd_, &kRequest, 1) && write_all(fd_, &length, sizeof(length)) &&
           write_all(fd_, request.data(), length);
  }
  std::int64_t begun = 0;
  if (!sent || !read_all(fd_, &begun, sizeof(begun))) {
    return helper_error("the helper process " + std::to_string(helper_pid_) + " is gone");
  }
  if (begun <= 0) {
    return helper_error(std::string("cannot fork a worker: ") +
                        std::strerror(static_cast<int>(-begun)));
  }
  return static_cast<pid_t>(begun);
}

void ForkServer::cancel() {
  std::lock_guard lock(write_mu_);
  (void)write_all(fd_, &kCancel, 1);  // a helper that is gone has no worker either
}

Result<ForkServer::Outcome> ForkServer::wait() {
  Outcome out;
  std::int32_t status = 0;
  std::uint32_t report_bytes = 0;
  if (!read_all(fd_, &status, sizeof(status)) ||
      !read_all(fd_, &report_bytes, sizeof(report_bytes)) || report_bytes > kForkReportBytesMax) {
    return helper_error("the helper process " + std::to_string(helper_pid_) + " is gone");
  }
  out.report.resize(report_bytes);
  if (!read_all(fd_, out.report.data(), report_bytes)) {
    return helper_error("the helper process " + std::to_string(helper_pid_) + " is gone");
  }
  if (status < 0) return helper_error("cannot wait for the worker");
  out.wait_status = status;
  return out;
}

}  // namespace credit::server
