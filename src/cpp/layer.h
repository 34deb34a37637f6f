// The contract every recurrent cell implements (Elman as G = 1, LSTM G = 4,
// GRU G = 3 in both forms): one layer-direction's packed weights, its forward
// over a batch of sequences (optionally keeping what backward needs) and its
// backpropagation through time. The binding, the head and the streaming step
// (head.h) only ever see this interface, so a cell or a precision is added
// by implementing it once.
//
// Shapes: x (B, T, I) / h_seq (B, T, S), or time-major (T, B, .) per
// SequenceShape; states h0, h_n (B, S) and c0, c_n (B, H), where the state
// size S is H but for an LSTM with projections (S = P); lengths (B,) with
// 1 <= lengths[b] <= T. Every pointer marked "or null" means zeros (states)
// or "every sequence has T steps" (lengths). Outputs never alias inputs,
// except that a one-step forward may write h_seq and h_n to the same rows.
#pragma once

#include <memory>
#include <vector>

#include "aligned_buffer.h"
#include "common.h"
#include "sequence.h"

namespace rnnext {

template <class T>
struct LayerInput {
  const T* x;
  const T* h0;              // or null
  const T* c0;              // or null; LSTM only
  const index_t* lengths;   // or null
  SequenceShape shape;
  bool reverse;             // read each sequence from its last valid step back to step 0
};

template <class T>
struct LayerOutput {
  T* h_seq;  // zero past each length
  T* h_n;
  T* c_n;    // LSTM only (null for the other cells)
};

// Gradients of a loss with respect to a forward's outputs; null is zero.
template <class T>
struct OutputGradients {
  const T* dh_seq;  // layout of h_seq; ignored past each length
  const T* dh_n;
  const T* dc_n;    // LSTM only
};

// Gradients written by backward, into caller-owned buffers shaped like the
// forward's arguments: dx like x; dW_x (G*H, I); dW_h (G*H, S); db_x, db_h
// (G*H,); dh0 (B, S), dc0 (B, H) (dc0 LSTM only); dW_hr (P, H) for an LSTM
// with projections (else null).
template <class T>
struct LayerGradients {
  T *dx, *dW_x, *dW_h, *db_x, *db_h, *dh0, *dc0;
  T* dW_hr = nullptr;
};

template <class T>
class Layer;

// What backward needs from a forward: the inputs as they were, every hidden
// state, and what the cell kept of its gates (opaque outside the cell).
template <class T>
struct SequenceCache {
  std::shared_ptr<const Layer<T>> layer;
  SequenceShape shape{};
  bool reverse = false;
  AlignedBuffer<T> x, h0, c0;    // h0, c0 empty when the forward had none
  std::vector<index_t> lengths;  // empty: every sequence has T steps
  AlignedBuffer<T> h_seq;        // (B, T, S) in shape's layout
  AlignedBuffer<T> gates;        // the cell's activated gates per step (LSTM, GRU)
  AlignedBuffer<T> extra;        // per step: c_t (LSTM), W_hn h + b_hn or r * h (GRU)
  AlignedBuffer<T> cell_out;     // per step: o * tanh(c_t), before the projection (LSTM with proj_size)

  LayerInput<T> input() const {
    return {x.data(), h0.size() ? h0.data() : nullptr, c0.size() ? c0.data() : nullptr,
            lengths.empty() ? nullptr : lengths.data(), shape, reverse};
  }
};

template <class T>
class Layer {
 public:
  virtual ~Layer() = default;

  // The cell's functional name: "rnn", "lstm" or "gru".
  virtual const char* name() const = 0;
  index_t input_size() const { return input_size_; }
  index_t hidden_size() const { return hidden_size_; }
  index_t gates() const { return gates_; }
  bool has_cell_state() const { return has_cell_state_; }
  // S: the width of h (the input of W_h, the output of a step): H, or P for
  // an LSTM with projections.
  index_t state_size() const { return state_size_; }
  bool projected() const { return projected_; }

  // Forward over the sequences; with `keep`, also fills keep->gates and
  // keep->extra (the caller has filled the rest of keep).
  virtual void forward(const LayerInput<T>& in, const LayerOutput<T>& out, SequenceCache<T>* keep) const = 0;

  // Backpropagation through time from a forward's cache.
  virtual void backward(const SequenceCache<T>& cache, const OutputGradients<T>& dout,
                        const LayerGradients<T>& grads) const = 0;

 protected:
  Layer(index_t input_size, index_t hidden_size, index_t gates, bool has_cell_state, index_t state_size = 0)
      : input_size_(input_size), hidden_size_(hidden_size), gates_(gates),
        state_size_(state_size ? state_size : hidden_size), has_cell_state_(has_cell_state),
        projected_(state_size != 0) {}

 private:
  index_t input_size_, hidden_size_, gates_, state_size_;
  bool has_cell_state_, projected_;
};

// The forward, keeping what backward needs: copies of the inputs, every
// state; out.h_seq receives the hidden states too.
template <class T>
std::unique_ptr<SequenceCache<T>> forward_keeping(std::shared_ptr<const Layer<T>> layer, const LayerInput<T>& in,
                                                  const LayerOutput<T>& out);

}  // namespace rnnext
