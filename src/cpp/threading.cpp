#include "threading.h"

#include <pthread.h>

#include <atomic>
#include <stdexcept>

namespace rnnext {
namespace {

int initial_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();  // honours OMP_NUM_THREADS
#else
  return 1;
#endif
}

std::atomic<int> g_threads{initial_threads()};
std::atomic<bool> g_forked{false};

void on_fork_child() { g_forked.store(true); }

const bool g_atfork_registered = [] {
  pthread_atfork(nullptr, nullptr, &on_fork_child);
  return true;
}();

}  // namespace

int num_threads() { return g_forked.load() ? 1 : g_threads.load(); }

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1");
  g_threads.store(n);
}

bool in_forked_child() { return g_forked.load(); }

int threads_for(index_t parallel_items, double flops) {
  constexpr double kMinFlopsPerThread = 1 << 20;
  int threads = num_threads();
  if (threads > parallel_items) threads = int(parallel_items > 0 ? parallel_items : 1);
  const double by_work = flops / kMinFlopsPerThread;
  if (by_work < threads) threads = by_work < 1 ? 1 : int(by_work);
  return threads;
}

}  // namespace rnnext
