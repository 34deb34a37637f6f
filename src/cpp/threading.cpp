#include "threading.h"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace rnnext {
namespace {

// A cgroup's CPU quota as a CPU count (rounded up), or 0 for none: cgroup v2
// "cpu.max" holds "quota period" or "max period", v1 two files.
int cgroup_cpus() {
  long long quota = -1, period = 0;
  if (FILE* f = std::fopen("/sys/fs/cgroup/cpu.max", "r")) {
    char first[32] = {};
    if (std::fscanf(f, "%31s %lld", first, &period) == 2 && first[0] != 'm') quota = std::atoll(first);
    std::fclose(f);
  } else if (FILE* q = std::fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "r")) {
    if (std::fscanf(q, "%lld", &quota) != 1) quota = -1;
    std::fclose(q);
    if (FILE* p = std::fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "r")) {
      if (std::fscanf(p, "%lld", &period) != 1) period = 0;
      std::fclose(p);
    }
  }
  if (quota <= 0 || period <= 0) return 0;
  return int(std::ceil(double(quota) / double(period)));
}

// OMP_NUM_THREADS when set (its first entry, as OpenMP reads it; the
// convention every numerical library follows), else the usable CPUs.
int initial_threads() {
  const char* set = std::getenv("OMP_NUM_THREADS");
  if (set != nullptr && *set != '\0') {
    char* end = nullptr;
    const long n = std::strtol(set, &end, 10);
    if (end != set && n >= 1) return n < 1024 ? int(n) : 1024;
  }
  return usable_cpus();
}

std::atomic<int> g_threads{initial_threads()};
thread_local int t_threads = 0;
std::atomic<bool> g_forked{false};

void on_fork_child() { g_forked.store(true); }

const bool g_atfork_registered = [] {
  pthread_atfork(nullptr, nullptr, &on_fork_child);
  return true;
}();

}  // namespace

int process_num_threads() { return g_forked.load() ? 1 : g_threads.load(); }

int num_threads() { return t_threads > 0 && !g_forked.load() ? t_threads : process_num_threads(); }

int thread_num_threads() { return t_threads; }

void set_thread_num_threads(int n) {
  if (n < 0) throw std::invalid_argument("set_thread_num_threads: n must be >= 0");
  t_threads = n;
}

int usable_cpus() {
  int cpus = 0;
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = CPU_COUNT(&set);
#endif
  if (cpus <= 0) cpus = 1;
  const int quota = cgroup_cpus();
  return quota > 0 && quota < cpus ? quota : cpus;
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1");
  g_threads.store(n);
}

bool in_forked_child() { return g_forked.load(); }

namespace {

// The calling thread's count, capped by the items there are to share and by
// `work` over `per_thread` (the least work worth a thread); one while
// another process has the cores (pool.h).
int threads_for_work(index_t parallel_items, double work, double per_thread) {
  int threads = num_threads();
  if (threads > 1 && threads_recently_late()) return 1;
  if (threads > parallel_items) threads = int(parallel_items > 0 ? parallel_items : 1);
  const double by_work = work / per_thread;
  if (by_work < threads) threads = by_work < 1 ? 1 : int(by_work);
  return threads;
}

}  // namespace

int threads_for(index_t parallel_items, double flops) { return threads_for_work(parallel_items, flops, 1 << 20); }

// Handing a step's products to a spinning worker and waiting for it costs a
// few microseconds on the 2-core VM, what streaming ~300 KB from L2 costs
// (measured: an LSTM step at H = 128, 256 KB per product, took 8.2 us on two
// threads against 5.7 on one; at H = 256, 1 MB per product, 20-25 against 57-61).
int threads_for_weights(index_t parallel_items, double weight_bytes) {
  return threads_for_work(parallel_items, weight_bytes, 320 * 1024);
}

}  // namespace rnnext

// For threadpoolctl (python/rnnext/_threads.py finds these by name in the
// extension module): the calling thread's effective count, and its own.
extern "C" __attribute__((visibility("default"))) int rnnext_get_num_threads() { return rnnext::num_threads(); }
extern "C" __attribute__((visibility("default"))) void rnnext_set_thread_num_threads(int n) {
  if (n >= 0) rnnext::set_thread_num_threads(n);
}
