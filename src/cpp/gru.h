// The GRU layer (PyTorch's equations, gates r, z, n): packed gate-interleaved
// weights, the multi-threaded forward driver and backpropagation through
// time; both forms of the candidate gate (linear_before_reset, PyTorch's; or
// not, ONNX's default).
#pragma once

#include "aligned_buffer.h"
#include "common.h"
#include "gate_layout.h"
#include "layer.h"
#include "packing.h"
#include "product_kind.h"

namespace rnnext {

// The forward over either kind of packed weights (W: PackedView<T>, or
// QuantView for float32): what GruLayer and the quantized layer share.
// layout: the projection's 3 gates; w_hn unused with linear_before_reset.
template <class T, class W>
void gru_forward_pass(const GateLayout<T>& layout, const W& w_x, const W& w_h, const W& w_hn, const T* bias,
                      const T* b_hn, const T* zeros, bool linear_before_reset, const LayerInput<T>& in,
                      const LayerOutput<T>& out, SequenceCache<T>* keep, const ProductKind& product);

template <class T>
class GruLayer final : public Layer<T> {
 public:
  // W_x (3H, I), W_h (3H, H), b_x and b_h (3H,) or null; row-major, gates r, z, n.
  GruLayer(const T* W_x, const T* W_h, const T* b_x, const T* b_h, index_t input_size, index_t hidden_size,
           bool linear_before_reset);

  bool linear_before_reset() const { return linear_before_reset_; }

  // With `keep`, the activated gates (keep->gates, (B*T, 3Hp) interleaved)
  // and the candidate's recurrent part (keep->extra, (B*T, Hp): W_hn h + b_hn,
  // or r * h when not linear_before_reset) stay there for backward.
  const char* name() const override { return "gru"; }
  void forward(const LayerInput<T>& in, const LayerOutput<T>& out, SequenceCache<T>* keep) const override;
  void backward(const SequenceCache<T>& cache, const OutputGradients<T>& dout,
                const LayerGradients<T>& grads) const override;

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

}  // namespace rnnext
