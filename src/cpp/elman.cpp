#include "elman.h"

#include <cstring>

#include "gradients.h"
#include "kernels.h"
#include "threading.h"

namespace rnnext {

namespace {

template <class T>
AlignedBuffer<T> copy_of(const T* data, index_t count) {
  AlignedBuffer<T> out(count, AlignedBuffer<T>::uninitialized);
  if (count) std::memcpy(out.data(), data, sizeof(T) * std::size_t(count));
  return out;
}

}  // namespace

template <class T>
ElmanWeights<T>::ElmanWeights(const T* W_x, const T* W_h, const T* b_x, const T* b_h,
                              index_t input_size, index_t hidden_size, Activation activation)
    : activation_(activation),
      w_x_(W_x, hidden_size, input_size, input_size),
      w_h_(W_h, hidden_size, hidden_size, hidden_size),
      W_x_(copy_of(W_x, checked_mul(hidden_size, input_size))),
      W_h_(copy_of(W_h, checked_mul(hidden_size, hidden_size))),
      bias_(pad_bias(b_x, b_h, hidden_size)),
      zeros_(round_up(hidden_size, panel_width<T>())) {}

namespace {

// Between the steps of a hidden-sliced recurrence. An orphaned OpenMP barrier
// binds to the team actually running (which may be smaller than asked for),
// and libgomp spins before it sleeps, so a step's wait stays short.
void team_barrier(void*) {
#ifdef _OPENMP
#pragma omp barrier
#endif
}

// Runs a time loop (forward or backward; args cover every row and hidden
// unit) with threads chosen by shape. Few sequences and many hidden units:
// each thread owns a slice of W_h, kept in its own cache for all steps, and
// computes those units of every sequence; the threads meet after each step.
// Otherwise threads own whole sequences for the whole loop: no barrier at all.
template <class Args, class Slice>
void run_recurrence(const Args& args, Slice slice) {
  const index_t batch = args.batch_end, hidden = args.hidden_size, panels = args.panel_end;
  const double step_flops = 2.0 * double(batch) * double(hidden) * double(hidden);
  const int threads = threads_for(panels, step_flops * double(args.steps));
  if (threads > 1 && batch < 2 * threads && step_flops >= double(1 << 17)) {
    run_parallel(threads, [&](int index, int count) {
      Args mine = args;
      split_range(panels, index, count, &mine.panel_begin, &mine.panel_end);
      mine.barrier = count > 1 ? &team_barrier : nullptr;
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

}  // namespace

template <class T>
void ElmanWeights<T>::forward(const T* x, const T* h0, const index_t* lengths,
                              SequenceShape shape, bool reverse, T* h_seq, T* h_n) const {
  const index_t batch = shape.batch, steps = shape.steps;
  const index_t input = input_size(), hidden = hidden_size();
  const index_t padded = w_h_.padded_n();
  if (batch == 0) return;
  auto length = [&](index_t b) { return lengths ? lengths[b] : steps; };
  auto h_row = [&](index_t b, index_t t) { return h_seq + b * shape.stride_b(hidden) + t * shape.stride_t(hidden); };

  // Workspace: the input projection of every step, computed before the loop.
  // A streaming step's fits on the stack: no allocation on that hot path.
  const index_t xproj_size = checked_mul(checked_mul(batch, steps), padded);
  constexpr index_t kStackElements = 4096;
  alignas(64) T stack[kStackElements];
  AlignedBuffer<T> heap(xproj_size > kStackElements ? xproj_size : 0, AlignedBuffer<T>::uninitialized);
  T* xproj = xproj_size > kStackElements ? heap.data() : stack;

  // Outputs past each length are zero; the recurrence never touches them.
  index_t rows = 0;
  for (index_t b = 0; b < batch; ++b) {
    rows += length(b);
    for (index_t t = length(b); t < steps; ++t)
      for (index_t j = 0; j < hidden; ++j) h_row(b, t)[j] = T(0);
  }

  // 1. The input projection of every valid step: one product, its rows
  // (sequence-major) split evenly over the threads whatever the batch size.
  const double projection_flops = 2.0 * double(rows) * double(input) * double(hidden);
  run_parallel(threads_for(rows, projection_flops), [&](int index, int count) {
    index_t begin, end, first = 0;
    split_range(rows, index, count, &begin, &end);
    for (index_t b = 0; b < batch && first < end; first += length(b), ++b) {
      const index_t lo = begin > first ? begin : first;
      const index_t hi = end < first + length(b) ? end : first + length(b);
      if (lo >= hi) continue;
      const index_t t0 = lo - first;
      DenseArgs<T> projection{x + b * shape.stride_b(input) + t0 * shape.stride_t(input), shape.stride_t(input),
                              hi - lo, w_x_.view(), bias_.data(), xproj + (b * steps + t0) * padded, padded,
                              padded};
      dense(projection);
    }
  });

  // 2. The recurrence.
  ElmanArgs<T> args{};
  args.h0 = h0;
  args.h_seq = h_seq;
  args.h_stride_b = shape.stride_b(hidden);
  args.h_stride_t = shape.stride_t(hidden);
  args.h_n = h_n;
  args.lengths = lengths;
  args.batch_end = batch;
  args.panel_end = w_h_.view().panels;
  args.steps = steps;
  args.hidden_size = hidden;
  args.w_h = w_h_.view();
  args.zeros = zeros_.data();
  args.xproj = xproj;
  args.activation = activation_;
  args.reverse = reverse;
  run_recurrence(args, [](const ElmanArgs<T>& a) { elman_forward_slice(a); });
}

template <class T>
void ElmanWeights<T>::backward(const ElmanCache<T>& cache, const T* dh_seq, const T* dh_n,
                               const ElmanGradients<T>& grads) const {
  const SequenceShape shape = cache.shape;
  const index_t batch = shape.batch, steps = shape.steps;
  const index_t input = input_size(), hidden = hidden_size();
  const index_t padded = w_h_.padded_n();
  const index_t* lengths = cache.lengths_or_null();
  auto length = [&](index_t b) { return lengths ? lengths[b] : steps; };
  const T* h0 = cache.h0_or_null();

  // 1. The sequential part: dz for every valid step, and dh0.
  AlignedBuffer<T> dz(checked_mul(checked_mul(batch, steps), padded), AlignedBuffer<T>::uninitialized);
  std::vector<const T*> w_h_rows(hidden);
  for (index_t i = 0; i < hidden; ++i) w_h_rows[i] = W_h_.data() + i * hidden;
  const PackedMatrix<T> w_h_t = PackedMatrix<T>::transpose_of_rows(w_h_rows.data(), hidden, hidden);
  ElmanBackwardArgs<T> args{};
  args.h_seq = cache.h_seq.data();
  args.h_stride_b = shape.stride_b(hidden);
  args.h_stride_t = shape.stride_t(hidden);
  args.dh_seq = dh_seq;
  args.dh_n = dh_n;
  args.dz = dz.data();
  args.dh0 = grads.dh0;
  args.lengths = lengths;
  args.steps = steps;
  args.hidden_size = hidden;
  args.w_h_t = w_h_t.view();
  args.activation = activation_;
  args.reverse = cache.reverse;
  args.batch_end = batch;
  args.panel_end = w_h_t.view().panels;
  run_recurrence(args, [](const ElmanBackwardArgs<T>& a) { elman_backward_slice(a); });

  // 2. Every step as one row of the weight-gradient products: its dz, its
  // input and the state it read. Steps past a length get zero rows on both
  // sides (0 * 0: padding never reaches a gradient, even when it holds NaN).
  const index_t rows = checked_mul(batch, steps);
  AlignedBuffer<T> zero_row(input > hidden ? input : hidden);
  std::vector<const T*> x_rows(rows), prev_rows(rows);
  for (index_t b = 0; b < batch; ++b)
    for (index_t t = 0; t < steps; ++t) {
      const index_t r = b * steps + t;
      if (t >= length(b)) {
        std::memset(dz.data() + r * padded, 0, sizeof(T) * std::size_t(padded));
        x_rows[r] = prev_rows[r] = zero_row.data();
        continue;
      }
      const index_t t_prev = cache.reverse ? t + 1 : t - 1;
      const bool first = cache.reverse ? t_prev >= length(b) : t_prev < 0;
      x_rows[r] = cache.x.data() + b * shape.stride_b(input) + t * shape.stride_t(input);
      prev_rows[r] = first ? (h0 ? h0 + b * hidden : zeros_.data())
                           : cache.h_seq.data() + b * shape.stride_b(hidden) + t_prev * shape.stride_t(hidden);
    }

  // 3. Weight and bias gradients: single products over all rows, reading dz's
  // columns in place.
  sum_of_outer_products(dz.data(), padded, x_rows.data(), rows, hidden, input, grads.dW_x);
  sum_of_outer_products(dz.data(), padded, prev_rows.data(), rows, hidden, hidden, grads.dW_h);
  sum_of_rows(dz.data(), padded, rows, hidden, grads.db);

  // 4. dx = dz W_x, per sequence (its valid rows are evenly strided in x).
  std::vector<const T*> w_x_rows(hidden);
  for (index_t i = 0; i < hidden; ++i) w_x_rows[i] = W_x_.data() + i * input;
  const PackedMatrix<T> w_x_t = PackedMatrix<T>::transpose_of_rows(w_x_rows.data(), hidden, input);
  const double dx_flops = 2.0 * double(rows) * double(hidden) * double(input);  // at most
  run_parallel(threads_for(batch, dx_flops), [&](int index, int count) {
    index_t begin, end;
    split_range(batch, index, count, &begin, &end);
    for (index_t b = begin; b < end; ++b) {
      T* dx = grads.dx + b * shape.stride_b(input);
      DenseArgs<T> product{dz.data() + b * steps * padded, padded, length(b), w_x_t.view(), nullptr,
                           dx, shape.stride_t(input), input};
      dense(product);
      for (index_t t = length(b); t < steps; ++t)
        for (index_t j = 0; j < input; ++j) dx[t * shape.stride_t(input) + j] = T(0);
    }
  });
}

template <class T>
ElmanCache<T>::ElmanCache(std::shared_ptr<const ElmanWeights<T>> w, const T* x_in, const T* h0_in,
                          std::vector<index_t> lengths_in, SequenceShape shape_in, bool reverse_in, T* h_n)
    : weights(std::move(w)),
      shape(shape_in),
      reverse(reverse_in),
      x(copy_of(x_in, checked_mul(checked_mul(shape_in.batch, shape_in.steps), weights->input_size()))),
      h0(h0_in ? copy_of(h0_in, checked_mul(shape_in.batch, weights->hidden_size())) : AlignedBuffer<T>()),
      lengths(std::move(lengths_in)),
      h_seq(checked_mul(checked_mul(shape_in.batch, shape_in.steps), weights->hidden_size()),
            AlignedBuffer<T>::uninitialized) {
  weights->forward(x.data(), h0_or_null(), lengths_or_null(), shape, reverse, h_seq.data(), h_n);
}

template class ElmanWeights<float>;
template class ElmanWeights<double>;
template struct ElmanCache<float>;
template struct ElmanCache<double>;

}  // namespace rnnext
