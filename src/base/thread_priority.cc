// src/base/thread_priority.cc
// Per-thread niceness (see thread_priority.h).
#include "base/thread_priority.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace credit {

void run_in_background() {
  // On Linux a nice value belongs to a thread: PRIO_PROCESS with a thread id sets only it.
  const auto tid = static_cast<id_t>(::syscall(SYS_gettid));
  (void)::setpriority(PRIO_PROCESS, tid, kBackgroundNice);
}

}  // namespace credit
