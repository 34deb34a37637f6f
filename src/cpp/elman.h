// The Elman RNN layer: packed weights, the multi-threaded forward driver, and
// backpropagation through time.
#pragma once

#include <memory>
#include <vector>

#include "aligned_buffer.h"
#include "common.h"
#include "packing.h"
#include "sequence.h"

namespace rnnext {

template <class T>
struct ElmanCache;

// Gradients written by ElmanWeights::backward, into caller-owned buffers.
template <class T>
struct ElmanGradients {
  T* dx;    // like x
  T* dW_x;  // (H, I)
  T* dW_h;  // (H, H)
  T* db;    // (H,): the gradient of b_x and of b_h alike
  T* dh0;   // (B, H)
};

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

  // Backpropagation through time from a forward's cache. dh_seq (layout of
  // h_seq) and dh_n (B, H) may be null (zero); steps past a length get none.
  void backward(const ElmanCache<T>& cache, const T* dh_seq, const T* dh_n,
                const ElmanGradients<T>& grads) const;

 private:
  Activation activation_;
  PackedMatrix<T> w_x_, w_h_;
  AlignedBuffer<T> W_x_, W_h_;  // unpacked copies, for the transposes backward packs
  AlignedBuffer<T> bias_;       // b_x + b_h, padded
  AlignedBuffer<T> zeros_;      // the state before step 0 when h0 is null
};

// What backward needs from a forward: the inputs as they were, and every state.
template <class T>
struct ElmanCache {
  std::shared_ptr<const ElmanWeights<T>> weights;
  SequenceShape shape;
  bool reverse = false;
  bool unbatched = false;
  AlignedBuffer<T> x;              // (B, T, I) in shape's layout
  AlignedBuffer<T> h0;             // (B, H); empty when the forward had no h0
  std::vector<index_t> lengths;    // empty: every sequence has T steps
  AlignedBuffer<T> h_seq;          // (B, T, H) in shape's layout

  // Runs weights->forward and keeps what backward needs; h_n (B, H).
  ElmanCache(std::shared_ptr<const ElmanWeights<T>> weights, const T* x, const T* h0,
             std::vector<index_t> lengths, SequenceShape shape, bool reverse, T* h_n);
  const index_t* lengths_or_null() const { return lengths.empty() ? nullptr : lengths.data(); }
  const T* h0_or_null() const { return h0.size() ? h0.data() : nullptr; }
};

}  // namespace rnnext
