#include "elman.h"

#include "kernels.h"
#include "threading.h"

namespace rnnext {

template <class T>
ElmanWeights<T>::ElmanWeights(const T* W_x, const T* W_h, const T* b_x, const T* b_h,
                              index_t input_size, index_t hidden_size, Activation activation)
    : activation_(activation),
      w_x_(W_x, hidden_size, input_size, input_size),
      w_h_(W_h, hidden_size, hidden_size, hidden_size),
      bias_(pad_bias(b_x, b_h, hidden_size)),
      zeros_(round_up(hidden_size, panel_width<T>())) {}

template <class T>
void ElmanWeights<T>::forward(const T* x, const T* h0, const index_t* lengths,
                              SequenceShape shape, bool reverse, T* h_seq, T* h_n) const {
  const index_t batch = shape.batch, steps = shape.steps;
  const index_t input = input_size(), hidden = hidden_size();
  if (batch == 0) return;
  // Workspace: the input projection of every step, computed before the loop.
  AlignedBuffer<T> xproj(checked_mul(checked_mul(batch, steps), w_h_.padded_n()));

  ElmanArgs<T> args{};
  args.x = x;
  args.x_stride_b = shape.stride_b(input);
  args.x_stride_t = shape.stride_t(input);
  args.h0 = h0;
  args.h_seq = h_seq;
  args.h_stride_b = shape.stride_b(hidden);
  args.h_stride_t = shape.stride_t(hidden);
  args.h_n = h_n;
  args.lengths = lengths;
  args.steps = steps;
  args.input_size = input;
  args.hidden_size = hidden;
  args.w_x = w_x_.view();
  args.w_h = w_h_.view();
  args.bias = bias_.data();
  args.zeros = zeros_.data();
  args.xproj = xproj.data();
  args.activation = activation_;
  args.reverse = reverse;

  // Threads own whole sequences for the whole loop: no barrier per step.
  const double flops = 2.0 * double(batch) * double(steps) * double(hidden) * double(input + hidden);
  run_parallel(threads_for(batch, flops), [&](int index, int count) {
    ElmanArgs<T> mine = args;
    split_range(batch, index, count, &mine.batch_begin, &mine.batch_end);
    if (mine.batch_begin < mine.batch_end) elman_forward_slice(mine);
  });
}

template class ElmanWeights<float>;
template class ElmanWeights<double>;

}  // namespace rnnext
