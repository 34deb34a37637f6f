#include "lstm.h"

#include "kernels.h"
#include "recurrence.h"

namespace rnnext {

template <class T>
LstmWeights<T>::LstmWeights(const T* W_x, const T* W_h, const T* b_x, const T* b_h, index_t input_size,
                            index_t hidden_size)
    : layout_{4, hidden_size},
      W_x_(layout_.interleave_rows(W_x, input_size)),
      W_h_(layout_.interleave_rows(W_h, hidden_size)),
      w_x_(W_x_.data(), layout_.width(), input_size, input_size),
      w_h_(W_h_.data(), layout_.width(), hidden_size, hidden_size),
      bias_(layout_.interleave_bias(b_x, b_h, [](index_t) { return true; })),
      zeros_(layout_.padded()) {}

template <class T>
void LstmWeights<T>::forward(const T* x, const T* h0, const T* c0, const index_t* lengths, SequenceShape shape,
                             bool reverse, T* h_seq, T* h_n, T* c_n, LstmCache<T>* keep) const {
  const index_t batch = shape.batch, steps = shape.steps, hidden = hidden_size(), hp = layout_.padded();
  if (batch == 0) return;
  const index_t rows = checked_mul(batch, steps);
  // Gate rows start as the input projection; c_t for every step only when
  // backward will need it, else one running state per sequence.
  Workspace<T> gate_space(keep ? 0 : checked_mul(rows, layout_.width()));
  Workspace<T> c_space(keep ? 0 : checked_mul(batch, hp));
  if (keep) {
    keep->gates = AlignedBuffer<T>(checked_mul(rows, layout_.width()), AlignedBuffer<T>::uninitialized);
    keep->c_seq = AlignedBuffer<T>(checked_mul(rows, hp), AlignedBuffer<T>::uninitialized);
  }
  T* gates = keep ? keep->gates.data() : gate_space.data();

  zero_padding(h_seq, hidden, lengths, shape);
  project_inputs(x, shape, lengths, w_x_.view(), bias_.data(), gates);

  LstmArgs<T> args{};
  static_cast<TimeLoop&>(args) = whole_batch(shape, lengths, layout_.blocks(), hidden, reverse);
  args.h0 = h0;
  args.c0 = c0;
  args.h_seq = h_seq;
  args.h_n = h_n;
  args.c_n = c_n;
  args.gates = gates;
  args.c_seq = keep ? keep->c_seq.data() : nullptr;
  args.c_state = keep ? nullptr : c_space.data();
  args.w_h = w_h_.view();
  args.zeros = zeros_.data();
  run_recurrence(args, 4, [](const LstmArgs<T>& a) { lstm_forward_slice(a); });
}

template <class T>
void LstmWeights<T>::backward(const LstmCache<T>& cache, const T* dh_seq, const T* dh_n, const T* dc_n,
                              const LstmGradients<T>& grads) const {
  const SequenceShape shape = cache.shape;
  const index_t batch = shape.batch, steps = shape.steps;
  const index_t input = input_size(), hidden = hidden_size(), width = layout_.width();
  const index_t* lengths = cache.lengths_or_null();

  // 1. The sequential part: gate gradients for every valid step, dh0, dc0.
  // Zeroed: the kernels leave whole vectors of padding units unwritten, and
  // the product dz W_h reads whole rows.
  AlignedBuffer<T> dz(checked_mul(checked_mul(batch, steps), width));
  AlignedBuffer<T> dc(checked_mul(batch, layout_.padded()));
  const PackedMatrix<T> w_h_t = pack_transpose(W_h_.data(), width, hidden);
  LstmBackwardArgs<T> args{};
  static_cast<TimeLoop&>(args) = whole_batch(shape, lengths, layout_.blocks(), hidden, cache.reverse);
  args.h_seq = cache.h_seq.data();
  args.dh_seq = dh_seq;
  args.dh_n = dh_n;
  args.dc_n = dc_n;
  args.gates = cache.gates.data();
  args.c_seq = cache.c_seq.data();
  args.c0 = cache.c0_or_null();
  args.zeros = zeros_.data();
  args.dz = dz.data();
  args.dc = dc.data();
  args.dh0 = grads.dh0;
  args.dc0 = grads.dc0;
  args.w_h_t = w_h_t.view();
  run_recurrence(args, 4, [](const LstmBackwardArgs<T>& a) { lstm_backward_slice(a); });

  // 2. Weight and bias gradients: single products over all valid steps.
  const StepRows<T> rows(cache.x.data(), input, cache.h_seq.data(), cache.h0_or_null(), hidden, lengths, shape,
                         cache.reverse, {{dz.data(), width}});
  const index_t count = checked_mul(batch, steps);
  gated_gradients(layout_, dz.data(), rows.x.data(), count, input, grads.dW_x, grads.db);
  gated_gradients(layout_, dz.data(), rows.prev.data(), count, hidden, grads.dW_h, static_cast<T*>(nullptr));

  // 3. dx = dz W_x.
  input_gradient(dz.data(), width, shape, lengths, pack_transpose(W_x_.data(), width, input).view(), grads.dx);
}

template <class T>
LstmCache<T>::LstmCache(std::shared_ptr<const LstmWeights<T>> w, const T* x_in, const T* h0_in, const T* c0_in,
                        std::vector<index_t> lengths_in, SequenceShape shape_in, bool reverse_in, T* h_n, T* c_n)
    : weights(std::move(w)),
      shape(shape_in),
      reverse(reverse_in),
      x(copy_of(x_in, checked_mul(checked_mul(shape_in.batch, shape_in.steps), weights->input_size()))),
      h0(h0_in ? copy_of(h0_in, checked_mul(shape_in.batch, weights->hidden_size())) : AlignedBuffer<T>()),
      c0(c0_in ? copy_of(c0_in, checked_mul(shape_in.batch, weights->hidden_size())) : AlignedBuffer<T>()),
      lengths(std::move(lengths_in)),
      h_seq(checked_mul(checked_mul(shape_in.batch, shape_in.steps), weights->hidden_size()),
            AlignedBuffer<T>::uninitialized) {
  weights->forward(x.data(), h0_or_null(), c0_or_null(), lengths_or_null(), shape, reverse, h_seq.data(), h_n, c_n,
                   this);
}

template class LstmWeights<float>;
template class LstmWeights<double>;
template struct LstmCache<float>;
template struct LstmCache<double>;

}  // namespace rnnext
