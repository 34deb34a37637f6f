#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "threading.h"

namespace rnnext {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// The job word packs what a claim must see at once: the job's generation,
// its task count and the next unclaimed task. A worker that read an old word
// can then never claim a task of a newer job under the old job's count.
constexpr int kCountBits = 16;
constexpr std::uint64_t kFieldMask = (std::uint64_t(1) << kCountBits) - 1;
constexpr int kMaxTasks = int(kFieldMask);
std::uint64_t job_word(std::uint32_t generation, int tasks, int next) {
  return std::uint64_t(generation) << 32 | std::uint64_t(tasks) << kCountBits | std::uint64_t(next);
}

thread_local bool t_in_task = false;

// Marks the thread as running a task for as long as it lives (nested calls
// then run on it), exceptions included.
class InTask {
 public:
  InTask() : before_(t_in_task) { t_in_task = true; }
  ~InTask() { t_in_task = before_; }

 private:
  bool before_;
};

struct Pool {
  std::mutex submit;  // one call at a time holds the workers
  std::atomic<std::uint64_t> job{0};
  std::atomic<std::uint32_t> generation{0};  // the futex workers sleep on
  std::atomic<void (*)(void*, int)> task{nullptr};
  std::atomic<void*> context{nullptr};
  std::atomic<int> caller_cpu{-1};
  alignas(64) std::atomic<int> done{0};
  alignas(64) std::atomic<int> sleepers{0};
  std::atomic<int> workers{0};  // started (grown under `submit`)
  // The first exception a task of the current job threw (an allocation
  // that failed), rethrown on the caller once every claimed task is done.
  std::mutex failure_lock;
  std::exception_ptr failure;
};

// Never destroyed: workers may still be asleep on it while the process exits.
Pool& the_pool() {
  static Pool* pool = new Pool;
  return *pool;
}

void futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
#else
  (void)word, (void)expected;
  std::this_thread::yield();
#endif
}

void futex_wake_all(std::atomic<std::uint32_t>* word) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#else
  (void)word;
#endif
}

// A worker woken from its futex is often placed on the CPU of the thread
// that woke it (the caller, busy with its own tasks) while another CPU
// idles; the two then share one core until the load balancer notices, for
// several calls. Moving off once, then allowing every CPU again, fixes it.
void move_off_cpu(int cpu) {
#if defined(__linux__)
  cpu_set_t allowed;
  if (cpu < 0 || cpu >= CPU_SETSIZE || sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;
  if (CPU_COUNT(&allowed) < 2 || !CPU_ISSET(cpu, &allowed)) return;
  cpu_set_t elsewhere = allowed;
  CPU_CLR(cpu, &elsewhere);
  if (sched_setaffinity(0, sizeof(elsewhere), &elsewhere) == 0) sched_setaffinity(0, sizeof(allowed), &allowed);
#else
  (void)cpu;
#endif
}

int current_cpu() {
#if defined(__linux__)
  return sched_getcpu();
#else
  return -1;
#endif
}

// Claims and runs tasks of job `generation` until it has none left.
void work_on(Pool& p, std::uint32_t generation, bool worker) {
  if (worker) {
    const int caller = p.caller_cpu.load(std::memory_order_relaxed);
    if (caller >= 0 && current_cpu() == caller) move_off_cpu(caller);
  }
  std::uint64_t word = p.job.load(std::memory_order_acquire);
  for (;;) {
    if (std::uint32_t(word >> 32) != generation) return;
    const int tasks = int(word >> kCountBits & kFieldMask), next = int(word & kFieldMask);
    if (next >= tasks) return;
    // Read before the claim: if the claim succeeds, the job is still this one.
    void (*task)(void*, int) = p.task.load(std::memory_order_relaxed);
    void* context = p.context.load(std::memory_order_relaxed);
    if (!p.job.compare_exchange_weak(word, word + 1, std::memory_order_acq_rel, std::memory_order_acquire))
      continue;
    try {
      InTask running;
      task(context, next);
    } catch (...) {
      std::lock_guard<std::mutex> hold(p.failure_lock);
      if (!p.failure) p.failure = std::current_exception();
    }
    p.done.fetch_add(1, std::memory_order_release);
    word = p.job.load(std::memory_order_acquire);
  }
}

long long now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Between jobs a worker spins for a while (a forward's next product, or the
// next call of a loop in Python, usually comes sooner: waking from the futex
// costs tens of microseconds on a VM), then sleeps.
constexpr long long kIdleSpinNs = 1000000;

void worker_main(Pool* p) {
  std::uint32_t seen = p->generation.load(std::memory_order_acquire);
  for (;;) {
    std::uint32_t now;
    const long long idle_since = now_ns();
    int spins = 0;
    while ((now = p->generation.load(std::memory_order_acquire)) == seen) {
      if ((++spins & 63) != 0 || now_ns() - idle_since < kIdleSpinNs) {
        cpu_relax();
        continue;
      }
      p->sleepers.fetch_add(1);
      if (p->generation.load() == seen) futex_wait(&p->generation, seen);
      p->sleepers.fetch_sub(1);
    }
    seen = now;
    work_on(*p, now, true);
  }
}

// Starts workers up to `wanted` (under p.submit). Workers block every signal,
// so Python's handlers keep running on the threads that expect them.
void grow(Pool& p, int wanted) {
  if (p.workers.load() >= wanted) return;
  sigset_t all, before;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &before);
  try {
    for (; p.workers.load() < wanted; p.workers.fetch_add(1)) std::thread(worker_main, &p).detach();
  } catch (const std::system_error&) {
    // No more threads: the tasks run on those there are.
  }
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
}

void run_here(int tasks, void (*task)(void*, int), void* context) {
  InTask running;
  for (int i = 0; i < tasks; ++i) task(context, i);
}

// The contention window: until when calls plan for one thread, and its
// length (doubled when a late thread is seen again soon after it ended).
constexpr long long kFirstWindowNs = 10000000, kLongestWindowNs = 1000000000;
std::atomic<long long> g_late_until{0};
std::atomic<long long> g_window_ns{kFirstWindowNs};

}  // namespace

void note_late_thread() {
  const long long now = now_ns(), until = g_late_until.load(std::memory_order_relaxed);
  long long window = g_window_ns.load(std::memory_order_relaxed);
  if (now < until + window) window = window * 2 < kLongestWindowNs ? window * 2 : kLongestWindowNs;
  else window = kFirstWindowNs;
  g_window_ns.store(window, std::memory_order_relaxed);
  g_late_until.store(now + window, std::memory_order_relaxed);
}

bool threads_recently_late() {
  const long long until = g_late_until.load(std::memory_order_relaxed);
  return until != 0 && now_ns() < until;
}

// More threads ready to run than this process may use CPUs: another process
// is competing for them (the 4th field of /proc/loadavg, "running/total",
// counts every runnable thread of the machine, the reader included).
bool cpus_oversubscribed() {
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (f == nullptr) return false;
  double l1, l5, l15;
  int running = 0, total = 0;
  const bool read = std::fscanf(f, "%lf %lf %lf %d/%d", &l1, &l5, &l15, &running, &total) == 5;
  std::fclose(f);
  return read && running > usable_cpus();
}

void SpinWait::operator()() {
  if (++spins_ < 1000) return cpu_relax();
  if (!noted_) {
    const long long now = (spins_ & 15) == 0 || since_ == 0 ? now_ns() : 0;
    if (since_ == 0) since_ = now;
    // Long waits are also what a thread waking from sleep or a busy VM host
    // costs; only a machine with more runnable threads than CPUs counts.
    else if (now != 0 && now - since_ > late_ns_) {
      if (cpus_oversubscribed()) {
        noted_ = true;
        note_late_thread();
      } else {
        late_ns_ *= 2;  // look again later in this wait
      }
    }
  }
  sched_yield();
}

void run_tasks(int threads, int tasks, void (*task)(void*, int), void* context) {
  if (tasks <= 0) return;
  if (threads <= 1 || tasks == 1 || t_in_task || in_forked_child() || tasks > kMaxTasks)
    return run_here(tasks, task, context);
  Pool& p = the_pool();
  std::unique_lock<std::mutex> hold(p.submit, std::try_to_lock);
  if (!hold.owns_lock()) return run_here(tasks, task, context);  // another thread's call has the workers
  grow(p, threads - 1);

  p.task.store(task, std::memory_order_relaxed);
  p.context.store(context, std::memory_order_relaxed);
  p.done.store(0, std::memory_order_relaxed);
  p.caller_cpu.store(current_cpu(), std::memory_order_relaxed);
  const std::uint32_t generation = p.generation.load(std::memory_order_relaxed) + 1;
  p.job.store(job_word(generation, tasks, 0), std::memory_order_release);
  p.generation.store(generation);
  if (p.sleepers.load() > 0) futex_wake_all(&p.generation);

  // The caller waits only for tasks other threads are running; it counts as
  // late a wait that outlasts an eighth of its own share.
  const long long start = now_ns();
  work_on(p, generation, false);
  const long long own = now_ns() - start;
  SpinWait wait(own / 8 > SpinWait::kLateNs ? own / 8 : SpinWait::kLateNs);
  while (p.done.load(std::memory_order_acquire) < tasks) wait();
  std::exception_ptr failure;
  {
    std::lock_guard<std::mutex> lock(p.failure_lock);
    failure = p.failure;
    p.failure = nullptr;
  }
  if (failure) std::rethrow_exception(failure);
}

// No lock: a child forked while another thread held `submit` would wait
// for it forever (build_info() in a multiprocessing child).
int pool_workers() { return in_forked_child() ? 0 : the_pool().workers.load(); }

}  // namespace rnnext
