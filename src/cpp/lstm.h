// The LSTM layer (PyTorch's equations, gates i, f, g, o): packed
// gate-interleaved weights, the multi-threaded forward driver and
// backpropagation through time.
#pragma once

#include "aligned_buffer.h"
#include "common.h"
#include "gate_layout.h"
#include "layer.h"
#include "packing.h"
#include "product_kind.h"

namespace rnnext {

// The forward over either kind of packed weights (W: PackedView<T>, or
// QuantView for float32): what LstmLayer and the quantized layer share.
// element_bytes: of W_h's elements.
template <class T, class W>
void lstm_forward_pass(const GateLayout<T>& layout, const W& w_x, const W& w_h, const T* bias, const T* zeros,
                       const LayerInput<T>& in, const LayerOutput<T>& out, SequenceCache<T>* keep,
                       const ProductKind& product);

template <class T>
class LstmLayer final : public Layer<T> {
 public:
  // W_x (4H, I), W_h (4H, S), b_x and b_h (4H,) or null; row-major, gates i,
  // f, g, o. With projections (proj_size P > 0): W_hr (P, H), and S = P.
  LstmLayer(const T* W_x, const T* W_h, const T* b_x, const T* b_h, index_t input_size, index_t hidden_size,
            const T* W_hr = nullptr, index_t proj_size = 0);

  // With `keep`, the activated gates (keep->gates, (B*T, 4Hp) interleaved)
  // and every cell state (keep->extra, (B*T, Hp)) stay there for backward.
  const char* name() const override { return "lstm"; }
  void forward(const LayerInput<T>& in, const LayerOutput<T>& out, SequenceCache<T>* keep) const override;
  // db_x and db_h receive equal but separate gradients.
  void backward(const SequenceCache<T>& cache, const OutputGradients<T>& dout,
                const LayerGradients<T>& grads) const override;

 private:
  // With projections (lstm_projection_cell.h); keep->cell_out gets every m_t.
  void forward_projected(const LayerInput<T>& in, const LayerOutput<T>& out, SequenceCache<T>* keep) const;
  void backward_projected(const SequenceCache<T>& cache, const OutputGradients<T>& dout,
                          const LayerGradients<T>& grads) const;

  GateLayout<T> layout_;
  index_t proj_;                // P, or 0: no projection
  AlignedBuffer<T> W_x_, W_h_;  // interleaved copies, for the transposes backward packs
  AlignedBuffer<T> W_hr_;       // (P, H) as given
  PackedMatrix<T> w_x_, w_h_, w_hr_;
  AlignedBuffer<T> bias_;   // b_x + b_h, interleaved
  AlignedBuffer<T> zeros_;  // max(Hp, P) zeros: the states before step 0 when h0 / c0 are null
};

}  // namespace rnnext
