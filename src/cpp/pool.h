// rnnext's own worker threads. A call splits its work into tasks; whichever
// thread is free claims the next one, the calling thread included, and the
// caller waits only for tasks that another thread has claimed and is running.
// A worker that is descheduled (another process holds its core) therefore
// never holds up a call it has not joined: the caller runs its tasks itself.
// (OpenMP's fork-join waits at the end of every region for every thread of
// the team, started or not: with one core busy, a forward of 100 steps took
// 10x its quiet time.)
#pragma once

namespace rnnext {

// Runs task(context, index) for index in [0, tasks) on up to `threads`
// threads (the caller and threads - 1 workers), and returns when all tasks
// are done. Tasks run concurrently only as far as workers are free, so a
// task must never wait for another task to start (the hidden-sliced loops
// wait only for work claimed by a running thread: phase_claims.h). Called
// from inside a task, from a forked child, or while another thread's call
// holds the workers, it runs every task on the calling thread. A task that
// throws (a failed allocation) ends; the first exception is rethrown on
// the caller once every claimed task has finished (none is left running on
// the caller's data).
void run_tasks(int threads, int tasks, void (*task)(void* context, int index), void* context);

// The workers the pool has started (for build_info and tests).
int pool_workers();

// Spins a thread waiting for another: the CPU's pause hint, and after a
// while a yield of the time slice, so that a thread it waits for can run if
// it was descheduled on this core. A wait that lasts longer than `late_ns`
// while the machine has more runnable threads than this process has CPUs
// means the other thread lost its core to another process: it is noted once
// (note_late_thread).
class SpinWait {
 public:
  explicit SpinWait(long long late_ns = kLateNs) : late_ns_(late_ns) {}
  void operator()();
  static constexpr long long kLateNs = 1000000;

 private:
  int spins_ = 0;
  bool noted_ = false;
  long long late_ns_;
  long long since_ = 0;
};

// A thread of this process was found descheduled in the middle of shared
// work: another process is using the cores. For a while (10 ms, doubling
// while it keeps happening, at most 1 s) calls then plan for one thread
// (threads_for), since two threads sharing one core wait for each other's
// time slices; afterwards they try two again.
void note_late_thread();
bool threads_recently_late();

}  // namespace rnnext
