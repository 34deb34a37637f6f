#include "elman.h"

#include <algorithm>
#include <cstring>

#include "gradients.h"
#include "kernels.h"
#include "recurrence.h"

namespace rnnext {

template <class T>
ElmanLayer<T>::ElmanLayer(const T* W_x, const T* W_h, const T* b_x, const T* b_h, index_t input_size,
                          index_t hidden_size, Activation activation)
    : Layer<T>(input_size, hidden_size, 1, false),
      activation_(activation),
      w_x_(W_x, hidden_size, input_size, input_size),
      w_h_(W_h, hidden_size, hidden_size, hidden_size),
      W_x_(copy_of(W_x, checked_mul(hidden_size, input_size))),
      W_h_(copy_of(W_h, checked_mul(hidden_size, hidden_size))),
      bias_(pad_bias(b_x, b_h, hidden_size)),
      zeros_(round_up(hidden_size, panel_width<T>())) {}

template <class T>
void ElmanLayer<T>::forward(const LayerInput<T>& in, const LayerOutput<T>& out, SequenceCache<T>*) const {
  elman_forward_pass(w_x_.view(), w_h_.view(), bias_.data(), zeros_.data(), activation_, this->hidden_size(), in, out,
                     ProductKind{});
}

template <class T, class W>
void elman_forward_pass(const W& w_x, const W& w_h, const T* bias, const T* zeros, Activation activation,
                        index_t hidden, const LayerInput<T>& in, const LayerOutput<T>& out, const ProductKind& product) {
  const SequenceShape shape = in.shape;
  const index_t batch = shape.batch, steps = shape.steps;
  const index_t padded = w_h.panels * panel_width<T>();
  // Nothing to compute, and no step to visit: x may hold 2**40 empty steps.
  if (batch == 0 || hidden == 0) return;

  // Workspace: the input projection of every step, computed before the loop.
  // A streaming step's fits on the stack: no allocation on that hot path.
  Workspace<T> workspace(checked_mul(checked_mul(batch, steps), padded));
  T* xproj = workspace.data();

  // Outputs past each length are zero; the recurrence never touches them.
  zero_padding(out.h_seq, hidden, in.lengths, shape);
  // 1. The input projection of every valid step: one product.
  project_inputs(in.x, shape, in.lengths, w_x, bias, xproj);

  // 2. The recurrence.
  ElmanArgs<T, W> args{};
  static_cast<TimeLoop&>(args) = whole_batch(shape, in.lengths, w_h.panels, hidden, in.reverse);
  args.h0 = in.h0;
  args.h_seq = out.h_seq;
  args.h_n = out.h_n;
  args.w_h = w_h;
  args.zeros = zeros;
  args.xproj = xproj;
  args.activation = activation;
  run_recurrence(args, 1, [](const ElmanArgs<T, W>& a) { elman_forward(a); }, product);
}

template <class T>
void ElmanLayer<T>::backward(const SequenceCache<T>& cache, const OutputGradients<T>& dout,
                             const LayerGradients<T>& grads) const {
  const LayerInput<T> in = cache.input();
  const SequenceShape shape = in.shape;
  const index_t batch = shape.batch, steps = shape.steps;
  const index_t input = this->input_size(), hidden = this->hidden_size();
  const index_t padded = w_h_.padded_n();
  // Hidden size 0: dx (zero) is the only gradient that holds anything, and
  // there is no step worth visiting (x may hold 2**40 empty steps).
  if (hidden == 0) {
    std::fill_n(grads.dx, checked_mul(checked_mul(batch, steps), input), T(0));
    return;
  }

  // 1. The sequential part: dz for every valid step, and dh0.
  AlignedBuffer<T> dz(checked_mul(checked_mul(batch, steps), padded), AlignedBuffer<T>::uninitialized);
  const PackedMatrix<T> w_h_t = pack_transpose(W_h_.data(), hidden, hidden);
  ElmanBackwardArgs<T> args{};
  static_cast<TimeLoop&>(args) = whole_batch(shape, in.lengths, w_h_t.view().panels, hidden, in.reverse);
  args.h_seq = cache.h_seq.data();
  args.dh_seq = dout.dh_seq;
  args.dh_n = dout.dh_n;
  args.dz = dz.data();
  args.dh0 = grads.dh0;
  args.w_h_t = w_h_t.view();
  args.activation = activation_;
  run_recurrence(args, 1, [](const ElmanBackwardArgs<T>& a) { elman_backward(a); });

  // 2. Weight and bias gradients: one product over all valid steps for
  // [dW_x | dW_h] (gradients.h), then its rows split.
  const StepRows<T> rows(in.x, input, cache.h_seq.data(), in.h0, hidden, in.lengths, shape, in.reverse,
                         {{dz.data(), padded}});
  const index_t count = checked_mul(batch, steps);
  const RowBlock<T> blocks[] = {{rows.x.data(), input}, {rows.prev.data(), hidden}};
  AlignedBuffer<T> both(checked_mul(hidden, input + hidden), AlignedBuffer<T>::uninitialized);
  sum_of_outer_products(dz.data(), padded, blocks, 2, count, hidden, both.data());
  for (index_t i = 0; i < hidden; ++i) {
    const T* row = both.data() + i * (input + hidden);
    std::copy(row, row + input, grads.dW_x + i * input);
    std::copy(row + input, row + input + hidden, grads.dW_h + i * hidden);
  }
  sum_of_rows(dz.data(), padded, count, hidden, grads.db_x);
  std::memcpy(grads.db_h, grads.db_x, sizeof(T) * std::size_t(hidden));

  // 3. dx = dz W_x.
  input_gradient(dz.data(), padded, shape, in.lengths, pack_transpose(W_x_.data(), hidden, input).view(), grads.dx);
}

template class ElmanLayer<float>;
template void elman_forward_pass(const QuantView&, const QuantView&, const float*, const float*, Activation, index_t,
                                 const LayerInput<float>&, const LayerOutput<float>&, const ProductKind&);
template class ElmanLayer<double>;

}  // namespace rnnext
