#include "gru.h"

#include <vector>

#include "kernels.h"
#include "recurrence.h"

namespace rnnext {

template <class T>
GruWeights<T>::GruWeights(const T* W_x, const T* W_h, const T* b_x, const T* b_h, index_t input_size,
                          index_t hidden_size, bool linear_before_reset)
    : linear_before_reset_(linear_before_reset),
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
void GruWeights<T>::forward(const T* x, const T* h0, const index_t* lengths, SequenceShape shape, bool reverse,
                            T* h_seq, T* h_n, GruCache<T>* keep) const {
  const index_t batch = shape.batch, steps = shape.steps, hidden = hidden_size(), hp = layout_.padded();
  if (batch == 0) return;
  const index_t rows = checked_mul(batch, steps);
  Workspace<T> gate_space(keep ? 0 : checked_mul(rows, layout_.width()));
  Workspace<T> hn_space(keep ? 0 : checked_mul(rows, hp));
  if (keep) {
    keep->gates = AlignedBuffer<T>(checked_mul(rows, layout_.width()), AlignedBuffer<T>::uninitialized);
    keep->hn = AlignedBuffer<T>(checked_mul(rows, hp), AlignedBuffer<T>::uninitialized);
  }
  T* gates = keep ? keep->gates.data() : gate_space.data();
  T* hn = keep ? keep->hn.data() : hn_space.data();

  zero_padding(h_seq, hidden, lengths, shape);
  project_inputs(x, shape, lengths, w_x_.view(), bias_.data(), gates);

  GruArgs<T> args{};
  static_cast<TimeLoop&>(args) = whole_batch(shape, lengths, layout_.blocks(), hidden, reverse);
  args.h0 = h0;
  args.h_seq = h_seq;
  args.h_n = h_n;
  args.gates = gates;
  args.hn = hn;
  args.b_hn = b_hn_.data();
  args.w_h = w_h_.view();
  args.w_hn = w_hn_.view();
  args.zeros = zeros_.data();
  args.linear_before_reset = linear_before_reset_;
  run_recurrence(args, 3, [](const GruArgs<T>& a) { gru_forward_slice(a); });
}

template <class T>
void GruWeights<T>::backward(const GruCache<T>& cache, const T* dh_seq, const T* dh_n,
                             const GruGradients<T>& grads) const {
  const SequenceShape shape = cache.shape;
  const index_t batch = shape.batch, steps = shape.steps;
  const index_t input = input_size(), hidden = hidden_size(), hp = layout_.padded();
  const index_t width = layout_.width(), width_h = layout_h_.width();
  const index_t* lengths = cache.lengths_or_null();
  const index_t count = checked_mul(batch, steps);
  const bool lbr = linear_before_reset_;

  // 1. The sequential part. Zeroed: kernels leave whole vectors of padding
  // units unwritten, and the products read whole rows.
  AlignedBuffer<T> dz(checked_mul(count, width)), dz_h(checked_mul(count, width_h));
  AlignedBuffer<T> dn(lbr ? 0 : checked_mul(count, hp)), direct(checked_mul(batch, hp));
  const PackedMatrix<T> w_h_t = pack_transpose(W_h_.data(), width_h, hidden);
  const PackedMatrix<T> w_hn_t = lbr ? PackedMatrix<T>() : pack_transpose(W_hn_.data(), hp, hidden);
  GruBackwardArgs<T> args{};
  static_cast<TimeLoop&>(args) = whole_batch(shape, lengths, layout_.blocks(), hidden, cache.reverse);
  args.h_seq = cache.h_seq.data();
  args.h0 = cache.h0_or_null();
  args.zeros = zeros_.data();
  args.dh_seq = dh_seq;
  args.dh_n = dh_n;
  args.gates = cache.gates.data();
  args.hn = cache.hn.data();
  args.dz = dz.data();
  args.dz_h = dz_h.data();
  args.dn = dn.data();
  args.direct = direct.data();
  args.dh0 = grads.dh0;
  args.w_h_t = w_h_t.view();
  args.w_hn_t = w_hn_t.view();
  args.linear_before_reset = lbr;
  run_recurrence(args, 3, [](const GruBackwardArgs<T>& a) { gru_backward_slice(a); });

  // 2. Weight and bias gradients: single products over all valid steps.
  const StepRows<T> rows(cache.x.data(), input, cache.h_seq.data(), cache.h0_or_null(), hidden, lengths, shape,
                         cache.reverse, {{dz.data(), width}, {dz_h.data(), width_h}, {dn.data(), lbr ? 0 : hp}});
  gated_gradients(layout_, dz.data(), rows.x.data(), count, input, grads.dW_x, grads.db_x);
  gated_gradients(layout_h_, dz_h.data(), rows.prev.data(), count, hidden, grads.dW_h, grads.db_h);
  if (!lbr) {  // the n rows: dn against r * h_{t-1}, kept in the cache's hn rows
    std::vector<const T*> rh(count);
    for (index_t r = 0; r < count; ++r)
      rh[r] = rows.x[r] == rows.zero.data() ? rows.zero.data() : cache.hn.data() + r * hp;
    gated_gradients(GateLayout<T>{1, hidden}, dn.data(), rh.data(), count, hidden,
                    grads.dW_h + 2 * hidden * hidden, grads.db_h + 2 * hidden);
  }

  // 3. dx = dz W_x.
  input_gradient(dz.data(), width, shape, lengths, pack_transpose(W_x_.data(), width, input).view(), grads.dx);
}

template <class T>
GruCache<T>::GruCache(std::shared_ptr<const GruWeights<T>> w, const T* x_in, const T* h0_in,
                      std::vector<index_t> lengths_in, SequenceShape shape_in, bool reverse_in, T* h_n)
    : weights(std::move(w)),
      shape(shape_in),
      reverse(reverse_in),
      x(copy_of(x_in, checked_mul(checked_mul(shape_in.batch, shape_in.steps), weights->input_size()))),
      h0(h0_in ? copy_of(h0_in, checked_mul(shape_in.batch, weights->hidden_size())) : AlignedBuffer<T>()),
      lengths(std::move(lengths_in)),
      h_seq(checked_mul(checked_mul(shape_in.batch, shape_in.steps), weights->hidden_size()),
            AlignedBuffer<T>::uninitialized) {
  weights->forward(x.data(), h0_or_null(), lengths_or_null(), shape, reverse, h_seq.data(), h_n, this);
}

template class GruWeights<float>;
template class GruWeights<double>;
template struct GruCache<float>;
template struct GruCache<double>;

}  // namespace rnnext
