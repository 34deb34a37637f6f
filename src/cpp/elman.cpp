#include "elman.h"

#include <algorithm>
#include <cstring>

#include "gradients.h"
#include "kernels.h"
#include "recurrence.h"

namespace rnnext {

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

template <class T>
void ElmanWeights<T>::forward(const T* x, const T* h0, const index_t* lengths,
                              SequenceShape shape, bool reverse, T* h_seq, T* h_n) const {
  const index_t batch = shape.batch, steps = shape.steps;
  const index_t hidden = hidden_size();
  const index_t padded = w_h_.padded_n();
  // Nothing to compute, and no step to visit: x may hold 2**40 empty steps.
  if (batch == 0 || hidden == 0) return;

  // Workspace: the input projection of every step, computed before the loop.
  // A streaming step's fits on the stack: no allocation on that hot path.
  Workspace<T> workspace(checked_mul(checked_mul(batch, steps), padded));
  T* xproj = workspace.data();

  // Outputs past each length are zero; the recurrence never touches them.
  zero_padding(h_seq, hidden, lengths, shape);
  // 1. The input projection of every valid step: one product.
  project_inputs(x, shape, lengths, w_x_.view(), bias_.data(), xproj);

  // 2. The recurrence.
  ElmanArgs<T> args{};
  static_cast<TimeLoop&>(args) = whole_batch(shape, lengths, w_h_.view().panels, hidden, reverse);
  args.h0 = h0;
  args.h_seq = h_seq;
  args.h_n = h_n;
  args.w_h = w_h_.view();
  args.zeros = zeros_.data();
  args.xproj = xproj;
  args.activation = activation_;
  run_recurrence(args, 1, [](const ElmanArgs<T>& a) { elman_forward_slice(a); });
}

template <class T>
void ElmanWeights<T>::backward(const ElmanCache<T>& cache, const T* dh_seq, const T* dh_n,
                               const ElmanGradients<T>& grads) const {
  const SequenceShape shape = cache.shape;
  const index_t batch = shape.batch, steps = shape.steps;
  const index_t input = input_size(), hidden = hidden_size();
  const index_t padded = w_h_.padded_n();
  const index_t* lengths = cache.lengths_or_null();
  // Hidden size 0: dx (zero) is the only gradient that holds anything, and
  // there is no step worth visiting (x may hold 2**40 empty steps).
  if (hidden == 0) {
    std::fill_n(grads.dx, checked_mul(checked_mul(batch, steps), input), T(0));
    return;
  }
  const T* h0 = cache.h0_or_null();

  // 1. The sequential part: dz for every valid step, and dh0.
  AlignedBuffer<T> dz(checked_mul(checked_mul(batch, steps), padded), AlignedBuffer<T>::uninitialized);
  const PackedMatrix<T> w_h_t = pack_transpose(W_h_.data(), hidden, hidden);
  ElmanBackwardArgs<T> args{};
  static_cast<TimeLoop&>(args) = whole_batch(shape, lengths, w_h_t.view().panels, hidden, cache.reverse);
  args.h_seq = cache.h_seq.data();
  args.dh_seq = dh_seq;
  args.dh_n = dh_n;
  args.dz = dz.data();
  args.dh0 = grads.dh0;
  args.w_h_t = w_h_t.view();
  args.activation = activation_;
  run_recurrence(args, 1, [](const ElmanBackwardArgs<T>& a) { elman_backward_slice(a); });

  // 2. Weight and bias gradients: single products over all valid steps,
  // reading dz's columns in place.
  const StepRows<T> rows(cache.x.data(), input, cache.h_seq.data(), h0, hidden, lengths, shape, cache.reverse,
                         {{dz.data(), padded}});
  const index_t count = checked_mul(batch, steps);
  sum_of_outer_products(dz.data(), padded, rows.x.data(), count, hidden, input, grads.dW_x);
  sum_of_outer_products(dz.data(), padded, rows.prev.data(), count, hidden, hidden, grads.dW_h);
  sum_of_rows(dz.data(), padded, count, hidden, grads.db);

  // 3. dx = dz W_x.
  input_gradient(dz.data(), padded, shape, lengths, pack_transpose(W_x_.data(), hidden, input).view(), grads.dx);
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
