// The Elman RNN layer of the article, h_t = f(W_x x_t + b_x + W_h h_{t-1} + b_h):
// packed weights, the multi-threaded forward driver and backpropagation
// through time. The G = 1 case of the gate layout (gate_layout.h), whose
// interleaved order is the plain one.
#pragma once

#include "aligned_buffer.h"
#include "common.h"
#include "layer.h"
#include "packing.h"
#include "product_kind.h"

namespace rnnext {

// The forward over either kind of packed weights (W: PackedView<T>, or
// QuantView for float32): what ElmanLayer and the quantized layer share.
// bias and zeros are padded to w_h's panels; element_bytes: of W_h's elements.
template <class T, class W>
void elman_forward_pass(const W& w_x, const W& w_h, const T* bias, const T* zeros, Activation activation,
                        index_t hidden, const LayerInput<T>& in, const LayerOutput<T>& out, const ProductKind& product);

template <class T>
class ElmanLayer final : public Layer<T> {
 public:
  // W_x (H, I), W_h (H, H), b_x and b_h (H,) or null; all row-major contiguous.
  ElmanLayer(const T* W_x, const T* W_h, const T* b_x, const T* b_h, index_t input_size, index_t hidden_size,
             Activation activation);

  Activation activation() const { return activation_; }

  // h_seq[b, t] = f(W_x x[b, t] + b_x + W_h h[b, t-1] + b_h) for t < lengths[b].
  // Nothing is kept for backward beyond the states.
  const char* name() const override { return "rnn"; }
  void forward(const LayerInput<T>& in, const LayerOutput<T>& out, SequenceCache<T>* keep) const override;
  // db_x and db_h receive equal but separate gradients.
  void backward(const SequenceCache<T>& cache, const OutputGradients<T>& dout,
                const LayerGradients<T>& grads) const override;

 private:
  Activation activation_;
  PackedMatrix<T> w_x_, w_h_;
  AlignedBuffer<T> W_x_, W_h_;  // unpacked copies, for the transposes backward packs
  AlignedBuffer<T> bias_;       // b_x + b_h, padded
  AlignedBuffer<T> zeros_;      // the state before step 0 when h0 is null
};

}  // namespace rnnext
