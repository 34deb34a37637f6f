// Process-wide thread count and the one way the drivers run work in parallel.
#pragma once

#include "common.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace rnnext {

// The thread count set by set_num_threads (initially OMP_NUM_THREADS or the
// number of cores); always 1 in a child process made by fork(), where the
// parent's OpenMP pool does not exist and libgomp would hang.
int num_threads();
void set_num_threads(int n);
bool in_forked_child();

// Threads worth using for `parallel_items` independent pieces of work
// totalling `flops`: tiny problems stay on the calling thread, since waking a
// pool costs microseconds.
int threads_for(index_t parallel_items, double flops);

// Calls body(thread_index, thread_count) on `threads` threads and returns
// when all are done. With one thread no OpenMP runtime call is made.
template <class Body>
void run_parallel(int threads, Body body) {
#ifdef _OPENMP
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    body(omp_get_thread_num(), omp_get_num_threads());
    return;
  }
#endif
  body(0, 1);
}

// [begin, end) of item range `count` owned by thread `index` of `threads`.
inline void split_range(index_t count, int index, int threads, index_t* begin, index_t* end) {
  const index_t base = count / threads, extra = count % threads;
  *begin = index * base + (index < extra ? index : extra);
  *end = *begin + base + (index < extra ? 1 : 0);
}

}  // namespace rnnext
