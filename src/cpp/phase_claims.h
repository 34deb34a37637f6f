// How the threads of a hidden-sliced time loop share out its unit blocks,
// phase by phase (a phase: one product of a step, or one pass over the units
// before or after the steps). Each task has a home range of unit blocks,
// whose weights stay in its core's cache from step to step. A thread runs
// its home's piece, then any other home's piece of the phase that no one has
// claimed yet, then waits for the pieces others are running. A thread that
// is descheduled (another process holds its core) between two phases thus
// costs nothing: the others run its share until it is back. Who computes a piece
// never changes its values (every unit's sums run in one order). The
// kernels that share a team never throw (they allocate nothing), so no
// thread is left waiting for a phase that cannot finish.
#pragma once

#include <atomic>
#include <memory>

#include "common.h"
#include "pool.h"
#include "threading.h"

namespace rnnext {

class PhaseTeam {
 public:
  // `blocks` unit blocks shared by `tasks` tasks.
  PhaseTeam(index_t blocks, int tasks) : homes_(new Home[tasks]), tasks_(tasks) {
    for (int j = 0; j < tasks; ++j) {
      Home& home = homes_[j];
      split_range(blocks, j, tasks, &home.begin, &home.end);
      // One piece per home: cutting homes finer cost the small steps more in
      // synchronisation (measured: Elman B = 1, H = 256, 0.36 against 0.29
      // ms with two pieces) than it saved on a busy machine.
      home.pieces = home.end > home.begin ? 1 : 0;
      pieces_ += home.pieces;
    }
  }

 private:
  friend class PhaseClaims;
  struct alignas(64) Home {
    std::atomic<index_t> claimed{0};  // pieces claimed over all phases so far
    index_t begin = 0, end = 0, pieces = 0;
  };
  std::unique_ptr<Home[]> homes_;
  int tasks_;
  index_t pieces_ = 0;  // in one phase, over all homes
  alignas(64) std::atomic<index_t> done_{0};  // pieces finished over all phases
};

// One task's side of a PhaseTeam: its home and the phase it has reached.
class PhaseClaims {
 public:
  PhaseClaims(PhaseTeam* team, int home) : team_(team), home_(home) {}

  // The unit blocks [*begin, *end) of the next piece of the current phase:
  // its own home's first, then any other's. False when none is left.
  bool claim(index_t* begin, index_t* end) {
    for (int k = 0; k < team_->tasks_; ++k) {
      PhaseTeam::Home& home = team_->homes_[(home_ + k) % team_->tasks_];
      const index_t first = phase_ * home.pieces, last = first + home.pieces;
      index_t claimed = home.claimed.load(std::memory_order_relaxed);
      while (claimed < last) {
        if (home.claimed.compare_exchange_weak(claimed, claimed + 1, std::memory_order_relaxed)) {
          split_range(home.end - home.begin, int(claimed - first), int(home.pieces), begin, end);
          *begin += home.begin;
          *end += home.begin;
          return true;
        }
      }
    }
    return false;
  }

  // A claimed piece is done: its outputs are written.
  void finished() { team_->done_.fetch_add(1, std::memory_order_release); }

  // Waits until every piece of the phase is done (their outputs visible
  // here), then moves on to the next phase.
  void next_phase() {
    const index_t target = (phase_ + 1) * team_->pieces_;
    SpinWait wait;
    while (team_->done_.load(std::memory_order_acquire) < target) wait();
    ++phase_;
  }

 private:
  PhaseTeam* team_;
  int home_;
  index_t phase_ = 0;
};

}  // namespace rnnext
