// src/server/fork_server.h
// A small helper process, forked while the server's heap is still small, that forks a
// worker for each request: a fork copies the page tables of the process it is made from,
// so a worker forked from the helper costs the server nothing however large its state has
// grown (a fork of a server holding gigabytes holds its forking thread for tens of
// milliseconds; docs/benchmarks.md, "Snapshot pause").
// Owns: the helper process, the socket to it, the protocol (a request; the worker's pid;
// its wait status and report), and the ends: the helper exits when the server's end of
// the socket closes (the server stopped or died), killing a worker in flight first.
// Does not: know what a worker does (the Work function, run in the worker).
//
// The helper keeps descriptors 0-2 and its socket and closes every other one it
// inherited, and runs at background priority (base/thread_priority.h); so do its workers.
// One request at a time: begin, then wait, on any threads, one after the other; cancel
// from any thread at any time.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "base/status.h"

namespace credit::server {

// The most bytes of a request and of a worker's report.
constexpr std::size_t kForkRequestBytesMax = 1 << 20;
constexpr std::size_t kForkReportBytesMax = 4096;  // at most PIPE_BUF: one pipe write

class ForkServer {
 public:
  // Runs in a worker (a fresh child of the helper, single-threaded at its start): does the
  // request's work, may write a report of at most kForkReportBytesMax bytes to report_fd
  // in one write, and returns the worker's exit status.
  using Work = std::function<int(std::string_view request, int report_fd)>;

  // Forks the helper from the calling thread. `work` is called in the helper's copy of
  // this process as it is now.
  static Result<std::unique_ptr<ForkServer>> start(Work work);
  // Closes the socket (the helper kills a worker still running and exits) and reaps it.
  ~ForkServer();
  ForkServer(const ForkServer&) = delete;
  ForkServer& operator=(const ForkServer&) = delete;

  // Asks the helper for a worker running `request`; returns the worker's pid.
  Result<pid_t> begin(std::string_view request);
  struct Outcome {
    int wait_status = 0;  // as waitpid gives it
    std::string report;   // what the worker wrote to report_fd, possibly empty
  };
  // Waits for the worker of the last begin to end.
  Result<Outcome> wait();
  // Kills the worker in flight, if any: its wait() reports it killed by SIGKILL.
  void cancel();

  pid_t helper_pid() const { return helper_pid_; }

 private:
  ForkServer(int fd, pid_t helper_pid) : fd_(fd), helper_pid_(helper_pid) {}
  int fd_ = -1;
  pid_t helper_pid_ = 0;
  std::mutex write_mu_;  // a request and a cancel are never interleaved
};

}  // namespace credit::server
