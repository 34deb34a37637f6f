// Process-wide thread count and the one way the drivers run work in parallel.
#pragma once

#include "common.h"
#include "pool.h"

namespace rnnext {

// The threads a call made on this thread uses: the calling thread's own
// count when set (rx.threads, threadpoolctl), else the process-wide count of
// set_num_threads (initially OMP_NUM_THREADS, or the CPUs this process may
// run on: its affinity mask and its cgroup's CPU quota). Always 1 in a child
// process made by fork(), where the parent's OpenMP pool does not exist and
// libgomp would hang. Read at every call.
int num_threads();
void set_num_threads(int n);
// The process-wide count alone (1 in a forked child), whatever this thread's own.
int process_num_threads();
// The calling thread's own count; 0 means "the process-wide count".
int thread_num_threads();
void set_thread_num_threads(int n);
bool in_forked_child();
// The CPUs this process may use: affinity mask and cgroup quota (at least 1).
int usable_cpus();

// Threads worth using for `parallel_items` independent pieces of work
// totalling `flops`: tiny problems stay on the calling thread, since waking a
// pool costs microseconds, and so does everything while another process is
// found holding the cores (threads_recently_late, pool.h).
int threads_for(index_t parallel_items, double flops);

// Threads worth using for a product of a few rows (a streaming step), whose
// time is the streaming of `weight_bytes` of packed weights from L2, not
// its flops: each thread streams its share from its own core's L2.
int threads_for_weights(index_t parallel_items, double weight_bytes);

// Calls body(index, count) for index in [0, count), count = threads, and
// returns when all are done: one task per thread, each claimed by whichever
// thread is free (pool.h), so a descheduled worker never holds up the call.
// Tasks may run one after another on one thread: a body never waits for
// another task to start. With one thread nothing is shared.
template <class Body>
void run_parallel(int threads, Body body) {
  if (threads <= 1) return body(0, 1);
  struct Context {
    Body* body;
    int count;
  } context{&body, threads};
  run_tasks(threads, threads,
            [](void* c, int index) {
              auto* self = static_cast<Context*>(c);
              (*self->body)(index, self->count);
            },
            &context);
}

// [begin, end) of item range `count` owned by thread `index` of `threads`.
inline void split_range(index_t count, int index, int threads, index_t* begin, index_t* end) {
  const index_t base = count / threads, extra = count % threads;
  *begin = index * base + (index < extra ? index : extra);
  *end = *begin + base + (index < extra ? 1 : 0);
}

}  // namespace rnnext
