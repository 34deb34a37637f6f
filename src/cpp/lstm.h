// The LSTM layer: packed gate-interleaved weights, the multi-threaded
// forward driver, and backpropagation through time.
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
struct LstmCache;

// Gradients written by LstmWeights::backward, into caller-owned buffers.
template <class T>
struct LstmGradients {
  T* dx;    // like x
  T* dW_x;  // (4H, I)
  T* dW_h;  // (4H, H)
  T* db;    // (4H,): the gradient of b_x and of b_h alike
  T* dh0;   // (B, H)
  T* dc0;   // (B, H)
};

template <class T>
class LstmWeights {
 public:
  static constexpr index_t gates = 4;
  // W_x (4H, I), W_h (4H, H), b_x and b_h (4H,) or null; row-major, gates i, f, g, o.
  LstmWeights(const T* W_x, const T* W_h, const T* b_x, const T* b_h, index_t input_size, index_t hidden_size);

  index_t input_size() const { return w_x_.k(); }
  index_t hidden_size() const { return layout_.hidden; }

  // x (B, T, I) / h_seq (B, T, H), or time-major per `shape`; h0, c0, h_n,
  // c_n (B, H); h0, c0 and lengths may be null. With `keep`, the gates and
  // cell states stay there for backward.
  void forward(const T* x, const T* h0, const T* c0, const index_t* lengths, SequenceShape shape, bool reverse,
               T* h_seq, T* h_n, T* c_n, LstmCache<T>* keep = nullptr) const;

  // dh_seq (layout of h_seq), dh_n and dc_n (B, H) may be null (zero).
  void backward(const LstmCache<T>& cache, const T* dh_seq, const T* dh_n, const T* dc_n,
                const LstmGradients<T>& grads) const;

 private:
  GateLayout<T> layout_;
  AlignedBuffer<T> W_x_, W_h_;  // interleaved copies, for the transposes backward packs
  PackedMatrix<T> w_x_, w_h_;
  AlignedBuffer<T> bias_;   // b_x + b_h, interleaved
  AlignedBuffer<T> zeros_;  // Hp zeros: the states before step 0 when h0 / c0 are null
};

// What backward needs from a forward: the inputs as they were, every state,
// and the activated gates.
template <class T>
struct LstmCache {
  std::shared_ptr<const LstmWeights<T>> weights;
  SequenceShape shape;
  bool reverse = false;
  bool unbatched = false;
  AlignedBuffer<T> x, h0, c0;    // h0, c0 empty when the forward had none
  std::vector<index_t> lengths;  // empty: every sequence has T steps
  AlignedBuffer<T> h_seq;        // (B, T, H) in shape's layout
  AlignedBuffer<T> gates;        // (B*T, 4Hp) interleaved
  AlignedBuffer<T> c_seq;        // (B*T, Hp)

  // Runs weights->forward and keeps what backward needs; h_n, c_n (B, H).
  LstmCache(std::shared_ptr<const LstmWeights<T>> weights, const T* x, const T* h0, const T* c0,
            std::vector<index_t> lengths, SequenceShape shape, bool reverse, T* h_n, T* c_n);
  const index_t* lengths_or_null() const { return lengths.empty() ? nullptr : lengths.data(); }
  const T* h0_or_null() const { return h0.size() ? h0.data() : nullptr; }
  const T* c0_or_null() const { return c0.size() ? c0.data() : nullptr; }
};

}  // namespace rnnext
