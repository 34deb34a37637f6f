// The meeting point of the threads of a hidden-sliced time loop, once per
// step. A step at small sizes takes a few microseconds, so a waiting thread
// first spins briefly; but on a busy machine its partner may have lost its
// core, and spinning on would keep the partner off it (an OpenMP barrier
// spins for ~300,000 iterations: measured 10-50x slowdowns with one core
// busy). So after the spin it yields, and then sleeps on a futex until the
// last thread of the step arrives. Baseline code.
#pragma once

#include <atomic>

namespace rnnext {

class StepBarrier {
 public:
  explicit StepBarrier(int threads) : threads_(threads) {}
  StepBarrier(const StepBarrier&) = delete;
  StepBarrier& operator=(const StepBarrier&) = delete;

  // The team that actually runs (OpenMP may give fewer threads than asked):
  // every member stores the same count before its first wait.
  void set_threads(int threads) { threads_.store(threads, std::memory_order_relaxed); }

  // Returns once every thread of the team has called wait for this step.
  void wait();

  // For TimeLoop::barrier.
  static void wait_on(void* barrier) { static_cast<StepBarrier*>(barrier)->wait(); }

 private:
  std::atomic<int> threads_;
  std::atomic<int> arrived_{0};
  std::atomic<unsigned> generation_{0};
  std::atomic<int> sleepers_{0};
};

}  // namespace rnnext
