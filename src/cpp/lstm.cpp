#include "lstm.h"

#include <cstring>
#include <vector>

#include "gradients.h"
#include "kernels.h"
#include "recurrence.h"

namespace rnnext {

template <class T>
LstmLayer<T>::LstmLayer(const T* W_x, const T* W_h, const T* b_x, const T* b_h, index_t input_size,
                        index_t hidden_size, const T* W_hr, index_t proj_size)
    : Layer<T>(input_size, hidden_size, 4, true, proj_size),
      layout_{4, hidden_size},
      proj_(proj_size),
      W_x_(layout_.interleave_rows(W_x, input_size)),
      W_h_(layout_.interleave_rows(W_h, this->state_size())),
      W_hr_(proj_size ? copy_of(W_hr, checked_mul(proj_size, hidden_size)) : AlignedBuffer<T>()),
      w_x_(W_x_.data(), layout_.width(), input_size, input_size),
      w_h_(W_h_.data(), layout_.width(), this->state_size(), this->state_size()),
      w_hr_(proj_size ? PackedMatrix<T>(W_hr, proj_size, hidden_size, hidden_size) : PackedMatrix<T>()),
      bias_(layout_.interleave_bias(b_x, b_h, [](index_t) { return true; })),
      zeros_(layout_.padded() > proj_size ? layout_.padded() : proj_size) {}

template <class T>
void LstmLayer<T>::forward(const LayerInput<T>& in, const LayerOutput<T>& out, SequenceCache<T>* keep) const {
  if (proj_) return forward_projected(in, out, keep);
  lstm_forward_pass(layout_, w_x_.view(), w_h_.view(), bias_.data(), zeros_.data(), in, out, keep, ProductKind{});
}

template <class T, class W>
void lstm_forward_pass(const GateLayout<T>& layout, const W& w_x, const W& w_h, const T* bias, const T* zeros,
                       const LayerInput<T>& in, const LayerOutput<T>& out, SequenceCache<T>* keep,
                       const ProductKind& product) {
  const SequenceShape shape = in.shape;
  const index_t batch = shape.batch, steps = shape.steps, hidden = layout.hidden, hp = layout.padded();
  if (batch == 0) return;
  const index_t rows = checked_mul(batch, steps);
  // Gate rows start as the input projection; c_t for every step only when
  // backward will need it, else one running state per sequence.
  StepBuffer<T> gate_rows(keep ? &keep->gates : nullptr, checked_mul(rows, layout.width()));
  StepBuffer<T> c_rows(keep ? &keep->extra : nullptr, checked_mul(keep ? rows : batch, hp));
  T* gates = gate_rows.data();

  zero_padding(out.h_seq, hidden, in.lengths, shape);
  project_inputs(in.x, shape, in.lengths, w_x, bias, gates);

  LstmArgs<T, W> args{};
  static_cast<TimeLoop&>(args) = whole_batch(shape, in.lengths, layout.blocks(), hidden, in.reverse);
  args.h0 = in.h0;
  args.c0 = in.c0;
  args.h_seq = out.h_seq;
  args.h_n = out.h_n;
  args.c_n = out.c_n;
  args.gates = gates;
  args.c_seq = keep ? c_rows.data() : nullptr;
  args.c_state = keep ? nullptr : c_rows.data();
  args.w_h = w_h;
  args.zeros = zeros;
  run_recurrence(args, 4, [](const LstmArgs<T, W>& a) { lstm_forward(a); }, product);
}

template <class T>
void LstmLayer<T>::backward(const SequenceCache<T>& cache, const OutputGradients<T>& dout,
                            const LayerGradients<T>& grads) const {
  if (proj_) return backward_projected(cache, dout, grads);
  const LayerInput<T> in = cache.input();
  const SequenceShape shape = in.shape;
  const index_t batch = shape.batch, steps = shape.steps;
  const index_t input = this->input_size(), hidden = this->hidden_size(), width = layout_.width();

  // 1. The sequential part: gate gradients for every valid step, dh0, dc0.
  // Zeroed: the kernels leave whole vectors of padding units unwritten, and
  // the product dz W_h reads whole rows.
  AlignedBuffer<T> dz(checked_mul(checked_mul(batch, steps), width));
  AlignedBuffer<T> dc(checked_mul(batch, layout_.padded()));
  const PackedMatrix<T> w_h_t = pack_transpose(W_h_.data(), width, hidden);
  LstmBackwardArgs<T> args{};
  static_cast<TimeLoop&>(args) = whole_batch(shape, in.lengths, layout_.blocks(), hidden, in.reverse);
  args.h_seq = cache.h_seq.data();
  args.dh_seq = dout.dh_seq;
  args.dh_n = dout.dh_n;
  args.dc_n = dout.dc_n;
  args.gates = cache.gates.data();
  args.c_seq = cache.extra.data();
  args.c0 = in.c0;
  args.zeros = zeros_.data();
  args.dz = dz.data();
  args.dc = dc.data();
  args.dh0 = grads.dh0;
  args.dc0 = grads.dc0;
  args.w_h_t = w_h_t.view();
  run_recurrence(args, 4, [](const LstmBackwardArgs<T>& a) { lstm_backward(a); });

  // 2. Weight and bias gradients: single products over all valid steps.
  const StepRows<T> rows(in.x, input, cache.h_seq.data(), in.h0, hidden, in.lengths, shape, in.reverse,
                         {{dz.data(), width}});
  const index_t count = checked_mul(batch, steps);
  gated_gradients(layout_, dz.data(), {RowBlock<T>{rows.x.data(), input}, RowBlock<T>{rows.prev.data(), hidden}},
                  {grads.dW_x, grads.dW_h}, count, grads.db_x);
  std::memcpy(grads.db_h, grads.db_x, sizeof(T) * std::size_t(4 * hidden));

  // 3. dx = dz W_x.
  input_gradient(dz.data(), width, shape, in.lengths, pack_transpose(W_x_.data(), width, input).view(), grads.dx);
}

template <class T>
void LstmLayer<T>::forward_projected(const LayerInput<T>& in, const LayerOutput<T>& out,
                                     SequenceCache<T>* keep) const {
  const SequenceShape shape = in.shape;
  const index_t batch = shape.batch, hp = layout_.padded();
  if (batch == 0) return;
  const index_t rows = checked_mul(batch, shape.steps);
  StepBuffer<T> gate_rows(keep ? &keep->gates : nullptr, checked_mul(rows, layout_.width()));
  StepBuffer<T> c_rows(keep ? &keep->extra : nullptr, checked_mul(keep ? rows : batch, hp));
  StepBuffer<T> m_rows(keep ? &keep->cell_out : nullptr, checked_mul(keep ? rows : batch, hp));

  zero_padding(out.h_seq, proj_, in.lengths, shape);
  project_inputs(in.x, shape, in.lengths, w_x_.view(), bias_.data(), gate_rows.data());

  LstmProjArgs<T> args{};
  static_cast<TimeLoop&>(args) = whole_batch(shape, in.lengths, layout_.blocks(), layout_.hidden, in.reverse);
  args.h_stride_b = shape.stride_b(proj_);
  args.h_stride_t = shape.stride_t(proj_);
  args.h0 = in.h0;
  args.c0 = in.c0;
  args.h_seq = out.h_seq;
  args.h_n = out.h_n;
  args.c_n = out.c_n;
  args.gates = gate_rows.data();
  args.c_seq = keep ? c_rows.data() : nullptr;
  args.c_state = keep ? nullptr : c_rows.data();
  args.m_seq = keep ? m_rows.data() : nullptr;
  args.m_state = keep ? nullptr : m_rows.data();
  args.w_h = w_h_.view();
  args.w_hr = w_hr_.view();
  args.zeros = zeros_.data();
  args.proj = proj_;
  run_recurrence(args, 4, [](const LstmProjArgs<T>& a) { lstm_proj_forward(a); }, kWholeSequences);
}

template <class T>
void LstmLayer<T>::backward_projected(const SequenceCache<T>& cache, const OutputGradients<T>& dout,
                                      const LayerGradients<T>& grads) const {
  const LayerInput<T> in = cache.input();
  const SequenceShape shape = in.shape;
  const index_t batch = shape.batch, steps = shape.steps, count = checked_mul(batch, steps);
  const index_t input = this->input_size(), hidden = layout_.hidden, hp = layout_.padded(), width = layout_.width();

  // 1. The sequential part: dz and dh_t for every valid step, dh0, dc0.
  AlignedBuffer<T> dz(checked_mul(count, width)), dh_rows(checked_mul(count, proj_));
  AlignedBuffer<T> dc(checked_mul(batch, hp));
  const PackedMatrix<T> w_h_t = pack_transpose(W_h_.data(), width, proj_);
  const PackedMatrix<T> w_hr_t = pack_transpose(W_hr_.data(), proj_, hidden);
  LstmProjBackwardArgs<T> args{};
  static_cast<TimeLoop&>(args) = whole_batch(shape, in.lengths, layout_.blocks(), hidden, in.reverse);
  args.h_stride_b = shape.stride_b(proj_);
  args.h_stride_t = shape.stride_t(proj_);
  args.h_seq = cache.h_seq.data();
  args.dh_seq = dout.dh_seq;
  args.dh_n = dout.dh_n;
  args.dc_n = dout.dc_n;
  args.gates = cache.gates.data();
  args.c_seq = cache.extra.data();
  args.c0 = in.c0;
  args.zeros = zeros_.data();
  args.dz = dz.data();
  args.dh_rows = dh_rows.data();
  args.dc = dc.data();
  args.dh0 = grads.dh0;
  args.dc0 = grads.dc0;
  args.w_h_t = w_h_t.view();
  args.w_hr_t = w_hr_t.view();
  args.proj = proj_;
  run_recurrence(args, 4, [](const LstmProjBackwardArgs<T>& a) { lstm_proj_backward(a); }, kWholeSequences);

  // 2. Weight and bias gradients: single products over all valid steps
  // (StepRows zeroes the dz and dh rows of padding steps).
  const StepRows<T> rows(in.x, input, cache.h_seq.data(), in.h0, proj_, in.lengths, shape, in.reverse,
                         {{dz.data(), width}, {dh_rows.data(), proj_}});
  gated_gradients(layout_, dz.data(), {RowBlock<T>{rows.x.data(), input}, RowBlock<T>{rows.prev.data(), proj_}},
                  {grads.dW_x, grads.dW_h}, count, grads.db_x);
  std::memcpy(grads.db_h, grads.db_x, sizeof(T) * std::size_t(4 * hidden));
  // dW_hr = sum over steps of dh_t^T m_t.
  const AlignedBuffer<T> zero(hidden);
  std::vector<const T*> m(std::size_t(count), zero.data());
  for (index_t b = 0; b < batch; ++b)
    for (index_t t = 0; t < (in.lengths ? in.lengths[b] : steps); ++t)
      m[std::size_t(b * steps + t)] = cache.cell_out.data() + (b * steps + t) * hp;
  sum_of_outer_products(dh_rows.data(), proj_, m.data(), count, proj_, hidden, grads.dW_hr);

  // 3. dx = dz W_x.
  input_gradient(dz.data(), width, shape, in.lengths, pack_transpose(W_x_.data(), width, input).view(), grads.dx);
}

template class LstmLayer<float>;
template void lstm_forward_pass(const GateLayout<float>&, const QuantView&, const QuantView&, const float*,
                                const float*, const LayerInput<float>&, const LayerOutput<float>&,
                                SequenceCache<float>*, const ProductKind&);
template class LstmLayer<double>;

}  // namespace rnnext
