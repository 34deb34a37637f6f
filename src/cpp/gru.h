// The GRU layer: packed gate-interleaved weights, the multi-threaded forward
// driver, and backpropagation through time; both forms of the candidate
// gate (linear_before_reset, PyTorch's; or not, ONNX's default).
#pragma once

#include <memory>
#include <vector>

#include "aligned_buffer.h"
#include "common.h"
#include "gate_layout.h"
#include "packing.h"
#include "sequence.h"

namespace rnnext {

template <class T>
struct GruCache;

// Gradients written by GruWeights::backward, into caller-owned buffers.
template <class T>
struct GruGradients {
  T* dx;     // like x
  T* dW_x;   // (3H, I)
  T* dW_h;   // (3H, H)
  T* db_x;   // (3H,)
  T* db_h;   // (3H,)
  T* dh0;    // (B, H)
};

template <class T>
class GruWeights {
 public:
  static constexpr index_t gates = 3;
  // W_x (3H, I), W_h (3H, H), b_x and b_h (3H,) or null; row-major, gates r, z, n.
  GruWeights(const T* W_x, const T* W_h, const T* b_x, const T* b_h, index_t input_size, index_t hidden_size,
             bool linear_before_reset);

  index_t input_size() const { return w_x_.k(); }
  index_t hidden_size() const { return layout_.hidden; }
  bool linear_before_reset() const { return linear_before_reset_; }

  // As LstmWeights::forward, without a cell state.
  void forward(const T* x, const T* h0, const index_t* lengths, SequenceShape shape, bool reverse, T* h_seq,
               T* h_n, GruCache<T>* keep = nullptr) const;

  void backward(const GruCache<T>& cache, const T* dh_seq, const T* dh_n, const GruGradients<T>& grads) const;

 private:
  bool linear_before_reset_;
  GateLayout<T> layout_;     // 3 gates: W_x, the projection
  GateLayout<T> layout_h_;   // W_h's part in the step's first product: 3 gates, or r and z
  AlignedBuffer<T> W_x_, W_h_, W_hn_;  // interleaved copies (W_hn_: not linear_before_reset)
  PackedMatrix<T> w_x_, w_h_, w_hn_;
  AlignedBuffer<T> bias_;   // the projection's bias, interleaved
  AlignedBuffer<T> b_hn_;   // Hp (linear_before_reset)
  AlignedBuffer<T> zeros_;  // Hp zeros
};

template <class T>
struct GruCache {
  std::shared_ptr<const GruWeights<T>> weights;
  SequenceShape shape;
  bool reverse = false;
  bool unbatched = false;
  AlignedBuffer<T> x, h0;
  std::vector<index_t> lengths;
  AlignedBuffer<T> h_seq;  // (B, T, H) in shape's layout
  AlignedBuffer<T> gates;  // (B*T, 3Hp): r, z, n
  AlignedBuffer<T> hn;     // (B*T, Hp): W_hn h + b_hn, or r * h

  GruCache(std::shared_ptr<const GruWeights<T>> weights, const T* x, const T* h0, std::vector<index_t> lengths,
           SequenceShape shape, bool reverse, T* h_n);
  const index_t* lengths_or_null() const { return lengths.empty() ? nullptr : lengths.data(); }
  const T* h0_or_null() const { return h0.size() ? h0.data() : nullptr; }
};

}  // namespace rnnext
