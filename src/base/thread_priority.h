// src/base/thread_priority.h
// Background threads that must not take a core from the thread that sets the pace (the
// ledger thread, or the log replay at start) run below normal priority. On 2 cores a
// start has four runnable threads at times (the replay, the event log's loader, memory
// fault-in): the scheduler then gives the replay its core first.
// Owns: this one call. Does not: pin threads to cores.
#pragma once

namespace credit {

// Background work's niceness: a runnable nice-0 thread gets about 10x its CPU share.
constexpr int kBackgroundNice = 10;

// Lowers the calling thread (only it, not the process) to kBackgroundNice. Best effort:
// a failure leaves it at normal priority.
void run_in_background();

}  // namespace credit
