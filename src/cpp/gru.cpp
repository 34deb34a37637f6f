#include "gru.h"

#include <vector>

#include "kernels.h"
#include "recurrence.h"

namespace rnnext {

template <class T>
GruLayer<T>::GruLayer(const T* W_x, const T* W_h, const T* b_x, const T* b_h, index_t input_size,
                      index_t hidden_size, bool linear_before_reset)
    : Layer<T>(input_size, hidden_size, 3, false),
      linear_before_reset_(linear_before_reset),
      layout_{3, hidden_size},
      layout_h_{linear_before_reset ? 3 : 2, hidden_size},
      W_x_(layout_.interleave_rows(W_x, input_size)),
      W_h_(layout_h_.interleave_rows(W_h, hidden_size)),
      W_hn_(linear_before_reset ? AlignedBuffer<T>()
                                : GateLayout<T>{1, hidden_size}.interleave_rows(
                                      W_h + 2 * hidden_size * hidden_size, hidden_size)),
      w_x_(W_x_.data(), layout_.width(), input_size, input_size),
      w_h_(W_h_.data(), layout_h_.width(), hidden_size, hidden_size),
      // b_hn stays out of the projection when it is multiplied by r.
      bias_(layout_.interleave_bias(b_x, b_h, [linear_before_reset](index_t g) { return g < 2 || !linear_before_reset; })),
      b_hn_(layout_.padded()),
      zeros_(layout_.padded()) {
  if (!linear_before_reset) w_hn_ = PackedMatrix<T>(W_hn_.data(), layout_.padded(), hidden_size, hidden_size);
  if (linear_before_reset && b_h)
    for (index_t j = 0; j < hidden_size; ++j) b_hn_.data()[j] = b_h[2 * hidden_size + j];
}

template <class T>
void GruLayer<T>::forward(const LayerInput<T>& in, const LayerOutput<T>& out, SequenceCache<T>* keep) const {
  gru_forward_pass(layout_, w_x_.view(), w_h_.view(), w_hn_.view(), bias_.data(), b_hn_.data(), zeros_.data(),
                   linear_before_reset_, in, out, keep, ProductKind{});
}

template <class T, class W>
void gru_forward_pass(const GateLayout<T>& layout, const W& w_x, const W& w_h, const W& w_hn, const T* bias,
                      const T* b_hn, const T* zeros, bool linear_before_reset, const LayerInput<T>& in,
                      const LayerOutput<T>& out, SequenceCache<T>* keep, const ProductKind& product) {
  const SequenceShape shape = in.shape;
  const index_t batch = shape.batch, steps = shape.steps, hidden = layout.hidden, hp = layout.padded();
  if (batch == 0) return;
  const index_t rows = checked_mul(batch, steps);
  StepBuffer<T> gate_rows(keep ? &keep->gates : nullptr, checked_mul(rows, layout.width()));
  StepBuffer<T> hn_rows(keep ? &keep->extra : nullptr, checked_mul(rows, hp));
  T* gates = gate_rows.data();
  T* hn = hn_rows.data();

  zero_padding(out.h_seq, hidden, in.lengths, shape);
  project_inputs(in.x, shape, in.lengths, w_x, bias, gates);

  GruArgs<T, W> args{};
  static_cast<TimeLoop&>(args) = whole_batch(shape, in.lengths, layout.blocks(), hidden, in.reverse);
  args.h0 = in.h0;
  args.h_seq = out.h_seq;
  args.h_n = out.h_n;
  args.gates = gates;
  args.hn = hn;
  args.b_hn = b_hn;
  args.w_h = w_h;
  args.w_hn = w_hn;
  args.zeros = zeros;
  args.linear_before_reset = linear_before_reset;
  args.keep = keep != nullptr;
  run_recurrence(args, 3, [](const GruArgs<T, W>& a) { gru_forward(a); }, product);
}

template <class T>
void GruLayer<T>::backward(const SequenceCache<T>& cache, const OutputGradients<T>& dout,
                           const LayerGradients<T>& grads) const {
  const LayerInput<T> in = cache.input();
  const SequenceShape shape = in.shape;
  const index_t batch = shape.batch, steps = shape.steps;
  const index_t input = this->input_size(), hidden = this->hidden_size(), hp = layout_.padded();
  const index_t width = layout_.width(), width_h = layout_h_.width();
  const index_t* lengths = in.lengths;
  const index_t count = checked_mul(batch, steps);
  const bool lbr = linear_before_reset_;

  // 1. The sequential part. Zeroed: kernels leave whole vectors of padding
  // units unwritten, and the products read whole rows.
  AlignedBuffer<T> dz(checked_mul(count, width)), dz_h(checked_mul(count, width_h));
  AlignedBuffer<T> dn(lbr ? 0 : checked_mul(count, hp)), direct(checked_mul(batch, hp));
  const PackedMatrix<T> w_h_t = pack_transpose(W_h_.data(), width_h, hidden);
  const PackedMatrix<T> w_hn_t = lbr ? PackedMatrix<T>() : pack_transpose(W_hn_.data(), hp, hidden);
  GruBackwardArgs<T> args{};
  static_cast<TimeLoop&>(args) = whole_batch(shape, lengths, layout_.blocks(), hidden, in.reverse);
  args.h_seq = cache.h_seq.data();
  args.h0 = in.h0;
  args.zeros = zeros_.data();
  args.dh_seq = dout.dh_seq;
  args.dh_n = dout.dh_n;
  args.gates = cache.gates.data();
  args.hn = cache.extra.data();
  args.dz = dz.data();
  args.dz_h = dz_h.data();
  args.dn = dn.data();
  args.direct = direct.data();
  args.dh0 = grads.dh0;
  args.w_h_t = w_h_t.view();
  args.w_hn_t = w_hn_t.view();
  args.linear_before_reset = lbr;
  run_recurrence(args, 3, [](const GruBackwardArgs<T>& a) { gru_backward(a); });

  // 2. Weight and bias gradients: single products over all valid steps.
  const StepRows<T> rows(in.x, input, cache.h_seq.data(), in.h0, hidden, lengths, shape,
                         in.reverse, {{dz.data(), width}, {dz_h.data(), width_h}, {dn.data(), lbr ? 0 : hp}});
  gated_gradients(layout_, dz.data(), rows.x.data(), count, input, grads.dW_x, grads.db_x);
  gated_gradients(layout_h_, dz_h.data(), rows.prev.data(), count, hidden, grads.dW_h, grads.db_h);
  if (!lbr) {  // the n rows: dn against r * h_{t-1}, kept in the cache's hn rows
    std::vector<const T*> rh(count);
    for (index_t r = 0; r < count; ++r)
      rh[r] = rows.x[r] == rows.zero.data() ? rows.zero.data() : cache.extra.data() + r * hp;
    gated_gradients(GateLayout<T>{1, hidden}, dn.data(), rh.data(), count, hidden,
                    grads.dW_h + 2 * hidden * hidden, grads.db_h + 2 * hidden);
  }

  // 3. dx = dz W_x.
  input_gradient(dz.data(), width, shape, lengths, pack_transpose(W_x_.data(), width, input).view(), grads.dx);
}

template class GruLayer<float>;
template void gru_forward_pass(const GateLayout<float>&, const QuantView&, const QuantView&, const QuantView&,
                               const float*, const float*, const float*, bool, const LayerInput<float>&,
                               const LayerOutput<float>&, SequenceCache<float>*, const ProductKind&);
template class GruLayer<double>;

}  // namespace rnnext
