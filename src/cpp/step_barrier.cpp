#include "step_barrier.h"

#include <sched.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace rnnext {
namespace {

// About 10-20 us of spinning (a pause is 40-140 cycles): longer than a small
// step, far shorter than a scheduler time slice.
constexpr int kSpins = 256;
constexpr int kYields = 16;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

void sleep_while(std::atomic<unsigned>* word, unsigned value) {
#if defined(__linux__)
  // Returns at once when *word no longer holds value: no wake-up is lost.
  syscall(SYS_futex, reinterpret_cast<unsigned*>(word), FUTEX_WAIT_PRIVATE, value, nullptr, nullptr, 0);
#else
  (void)word;
  (void)value;
  sched_yield();
#endif
}

void wake_all(std::atomic<unsigned>* word) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<unsigned*>(word), FUTEX_WAKE_PRIVATE, 1 << 30, nullptr, nullptr, 0);
#else
  (void)word;
#endif
}

}  // namespace

void StepBarrier::wait() {
  const unsigned generation = generation_.load(std::memory_order_acquire);
  if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == threads_.load(std::memory_order_relaxed)) {
    arrived_.store(0, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_seq_cst);  // releases the step's writes
    if (sleepers_.load(std::memory_order_seq_cst) > 0) wake_all(&generation_);
    return;
  }
  auto released = [&] { return generation_.load(std::memory_order_acquire) != generation; };
  for (int i = 0; i < kSpins; ++i) {
    if (released()) return;
    cpu_relax();
  }
  for (int i = 0; i < kYields; ++i) {
    if (released()) return;
    sched_yield();
  }
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  while (!released()) sleep_while(&generation_, generation);
  sleepers_.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace rnnext
