// The Elman RNN layer: packed weights and the multi-threaded forward driver.
#pragma once

#include "aligned_buffer.h"
#include "common.h"
#include "packing.h"
#include "sequence.h"

namespace rnnext {

template <class T>
class ElmanWeights {
 public:
  // W_x (H, I), W_h (H, H), b_x and b_h (H,) or null; all row-major contiguous.
  ElmanWeights(const T* W_x, const T* W_h, const T* b_x, const T* b_h, index_t input_size,
               index_t hidden_size, Activation activation);

  index_t input_size() const { return w_x_.k(); }
  index_t hidden_size() const { return w_h_.n(); }
  Activation activation() const { return activation_; }

  // h_seq[b, t] = f(W_x x[b, t] + b_x + W_h h[b, t-1] + b_h) for t < lengths[b];
  // zero past it. x (B, T, I) / h_seq (B, T, H), or time-major per `shape`;
  // h0 and h_n (B, H); h0 and lengths may be null.
  void forward(const T* x, const T* h0, const index_t* lengths, SequenceShape shape, bool reverse,
               T* h_seq, T* h_n) const;

 private:
  Activation activation_;
  PackedMatrix<T> w_x_, w_h_;
  AlignedBuffer<T> bias_;   // b_x + b_h, padded
  AlignedBuffer<T> zeros_;  // the state before step 0 when h0 is null
};

}  // namespace rnnext
