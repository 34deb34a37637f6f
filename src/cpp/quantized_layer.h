// A layer of any cell with reduced-precision weights (API.md section 5):
// float32 inputs, states and outputs, bfloat16 or int8 weights packed once
// (quant_packing.h), the cell's own forward driver and epilogues over the
// quantized products. Inference only: backward refuses.
#pragma once

#include <cstdint>

#include "aligned_buffer.h"
#include "common.h"
#include "gate_layout.h"
#include "layer.h"
#include "quant_packing.h"

namespace rnnext {

enum class CellKind : int { rnn = 0, lstm = 1, gru = 2 };

// One weight matrix as the quantization left it: (rows, cols) row-major,
// int8 values with one float scale per row, or bfloat16 bit patterns.
struct QuantizedWeight {
  const void* data;
  const float* row_scale;  // int8 only
};

class QuantizedLayer final : public Layer<float> {
 public:
  // W_x (G*H, I), W_h (G*H, H) quantized; b_x, b_h (G*H,) float32 or null;
  // activation (rnn) and linear_before_reset (gru) as the float layers.
  QuantizedLayer(CellKind cell, QuantKind kind, QuantizedWeight W_x, QuantizedWeight W_h, const float* b_x,
                 const float* b_h, index_t input_size, index_t hidden_size, Activation activation,
                 bool linear_before_reset);

  const char* name() const override;
  QuantKind kind() const { return kind_; }
  void forward(const LayerInput<float>& in, const LayerOutput<float>& out, SequenceCache<float>* keep) const override;
  void backward(const SequenceCache<float>& cache, const OutputGradients<float>& dout,
                const LayerGradients<float>& grads) const override;

 private:
  CellKind cell_;
  QuantKind kind_;
  Activation activation_;
  bool linear_before_reset_;
  GateLayout<float> layout_;  // the projection's gates (Elman: 1)
  QuantMatrix w_x_, w_h_, w_hn_;
  AlignedBuffer<float> bias_, b_hn_, zeros_;
};

}  // namespace rnnext
