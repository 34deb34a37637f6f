// What the drivers of every cell (Elman, LSTM, GRU) share: threads by shape
// for the time loop, the input projection before it, and the rows of the
// weight-gradient products after backward's loop. Baseline code.
#pragma once

#include <vector>

#include "aligned_buffer.h"
#include "common.h"
#include "gate_layout.h"
#include "packing.h"
#include "phase_claims.h"
#include "product_kind.h"
#include "sequence.h"
#include "threading.h"

namespace rnnext {

// W_h sizes from which hidden-unit slices beat whole sequences per thread
// (measured: 4 MB LSTM and 3 MB GRU weights ran 9-12% faster sliced; at 1 MB
// whole sequences won).
constexpr index_t kSliceWeightBytes = 1 << 21;

// Rows few enough that a product's time is the streaming of its weights.
constexpr index_t kFewRows = 4;

// Runs a time loop (forward or backward; args cover every row and unit
// block, and have batch_end, panel_end, steps, hidden_size, claims) with
// threads chosen by shape. Few sequences and many hidden units: each thread
// has a home slice of W_h's unit blocks, kept in its own cache for all steps,
// and computes those units of every sequence, step after step; a thread
// that finds its partner late runs the partner's pieces (phase_claims.h).
// Otherwise threads own whole sequences for the whole loop: nothing shared.
template <class Args, class Slice>
void run_recurrence(const Args& args, index_t gates, Slice slice, const ProductKind& product = {}) {
  double element_bytes = product.element_bytes;
  const index_t batch = args.batch_end, hidden = args.hidden_size, panels = args.panel_end;
  const double step_flops = 2.0 * double(batch) * double(gates) * double(hidden) * double(hidden);
  // A W_h too large for a core's L2 would be streamed from L3 by every
  // thread at every step; sliced, each thread streams only its share, and
  // every weight it loads serves the whole batch. For a few rows (a
  // streaming step) that streaming is the whole cost, flops or not.
  if (element_bytes == 0) element_bytes = double(sizeof(*args.h_seq));
  const double weight_bytes = double(gates) * double(hidden) * double(hidden) * element_bytes;
  int threads = threads_for(panels, step_flops * double(args.steps));
  bool step_worth_sharing = step_flops >= double(1 << 17);
  if (batch <= kFewRows) {
    const int by_weights = threads_for_weights(panels, weight_bytes);
    if (by_weights > 1) step_worth_sharing = true;
    threads = by_weights > threads ? by_weights : threads;
  }
  const index_t few = 2 * threads > product.tile_rows * threads ? 2 * threads : product.tile_rows * threads;
  if (threads > 1 && !product.whole_sequences && (batch < few || weight_bytes > double(kSliceWeightBytes)) && step_worth_sharing) {
    PhaseTeam team(panels, threads);
    run_parallel(threads, [&](int index, int) {
      Args mine = args;
      PhaseClaims claims(&team, index);
      mine.claims = &claims;
      slice(mine);
    });
  } else {
    run_parallel(threads_for(batch, step_flops * double(args.steps)), [&](int index, int count) {
      Args mine = args;
      split_range(batch, index, count, &mine.batch_begin, &mine.batch_end);
      if (mine.batch_begin < mine.batch_end) slice(mine);
    });
  }
}

// out row (b*steps + t) = x[b, t] W^T + bias for every valid step: one
// product, its rows (sequence-major) split evenly over the threads whatever
// the batch size. Rows are w.panels * NR wide.
// W: PackedView<T>, or QuantView for float32 rows.
template <class T, class W>
void project_inputs(const T* x, SequenceShape shape, const index_t* lengths, const W& w, const T* bias, T* out);

// dx[b, t] = dz row (b*steps + t) W for every step (zero past each length);
// dz rows are ld apart; w_t packs W^T (input outputs, k <= ld).
template <class T>
void input_gradient(const T* dz, index_t ld, SequenceShape shape, const index_t* lengths, PackedView<T> w_t, T* dx);

// Each step as one row of the weight-gradient products: the input it read and
// the state it started from. Steps past a length get zero rows, and their dz
// rows (`width` wide, each of `dz`) are zeroed: 0 * 0, so padding never
// reaches a gradient, even when it holds NaN.
template <class T>
struct StepRows {
  std::vector<const T*> x, prev;
  AlignedBuffer<T> zero;
  StepRows(const T* x_seq, index_t input, const T* h_seq, const T* h0, index_t hidden, const index_t* lengths,
           SequenceShape shape, bool reverse, std::initializer_list<std::pair<T*, index_t>> dz);
};

// A workspace of `count` elements, uninitialised: on the stack when small,
// so that a streaming step never allocates.
template <class T>
class Workspace {
 public:
  explicit Workspace(index_t count)
      : heap_(count > kStack ? count : 0, AlignedBuffer<T>::uninitialized),
        data_(count > kStack ? heap_.data() : stack_) {}
  T* data() { return data_; }

 private:
  static constexpr index_t kStack = 4096;
  alignas(64) T stack_[kStack];
  AlignedBuffer<T> heap_;
  T* data_;
};

// A per-step buffer of `count` values: kept in *kept (allocated here) when
// backward will need it, else a workspace that lives as long as this object.
template <class T>
class StepBuffer {
 public:
  StepBuffer(AlignedBuffer<T>* kept, index_t count) : space_(kept ? 0 : count) {
    if (kept) *kept = AlignedBuffer<T>(count, AlignedBuffer<T>::uninitialized);
    data_ = kept ? kept->data() : space_.data();
  }
  T* data() { return data_; }

 private:
  Workspace<T> space_;
  T* data_;
};

// dW (n, k) = sum over rows of dy^T x for interleaved dy rows (layout.width()
// wide): the product in the gate layout, then back to PyTorch's row order.
// db likewise from the sums of the dy rows (db may be null).
template <class T>
void gated_gradients(const GateLayout<T>& layout, const T* dy, const T* const* x_rows, index_t count, index_t k,
                     T* dW, T* db);

// The same for inputs side by side ([x_t | h_{t-1}] for [dW_x | dW_h]): one
// product (gradients.h), each block's dW[b] in PyTorch's row order.
template <class T>
void gated_gradients(const GateLayout<T>& layout, const T* dy, std::initializer_list<RowBlock<T>> blocks,
                     std::initializer_list<T*> dW, index_t count, T* db);

// The packing of R^T for an (n, k) row-major R: y = x R.
template <class T>
PackedMatrix<T> pack_transpose(const T* r, index_t n, index_t k);

// A copy of count elements.
template <class T>
AlignedBuffer<T> copy_of(const T* data, index_t count);

}  // namespace rnnext
