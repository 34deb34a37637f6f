#include "quantized_layer.h"

#include <cstring>
#include <stdexcept>

#include "elman.h"
#include "gru.h"
#include "kernels.h"
#include "lstm.h"

namespace rnnext {

namespace {

constexpr index_t gates_of(CellKind cell) { return cell == CellKind::lstm ? 4 : cell == CellKind::gru ? 3 : 1; }

// Packs rows [first_gate*H, (first_gate + gates)*H) of a quantized (G*H, k)
// weight in the gate-interleaved order of `gates` gates (gate_layout.h).
QuantMatrix pack(QuantKind kind, QuantizedWeight w, index_t hidden, index_t k, index_t gates, index_t first_gate) {
  const GateLayout<float> layout{gates, hidden};
  constexpr index_t nr = GateLayout<float>::nr;
  const index_t first_row = first_gate * hidden;
  return QuantMatrix(kind, w.data, w.row_scale, layout.width(), k, k, [&](index_t c) -> index_t {
    const index_t g = (c / nr) % gates, j = c / (gates * nr) * nr + c % nr;
    return j < hidden ? first_row + g * hidden + j : -1;
  });
}

}  // namespace

QuantizedLayer::QuantizedLayer(CellKind cell, QuantKind kind, QuantizedWeight W_x, QuantizedWeight W_h,
                               const float* b_x, const float* b_h, index_t input_size, index_t hidden_size,
                               Activation activation, bool linear_before_reset)
    : Layer<float>(input_size, hidden_size, gates_of(cell), cell == CellKind::lstm),
      cell_(cell),
      kind_(kind),
      activation_(activation),
      linear_before_reset_(cell != CellKind::gru || linear_before_reset),
      layout_{gates_of(cell), hidden_size},
      w_x_(pack(kind, W_x, hidden_size, input_size, gates_of(cell), 0)),
      // GRU without linear_before_reset: [W_hr; W_hz] in the step's first
      // product, W_hn (times r h) in the second.
      w_h_(pack(kind, W_h, hidden_size, hidden_size, linear_before_reset_ ? gates_of(cell) : 2, 0)),
      w_hn_(linear_before_reset_ ? QuantMatrix() : pack(kind, W_h, hidden_size, hidden_size, 1, 2)),
      bias_(layout_.interleave_bias(b_x, b_h, [&](index_t g) { return cell != CellKind::gru || g < 2 || !linear_before_reset_; })),
      b_hn_(layout_.padded()),
      zeros_(layout_.padded()) {
  if (cell == CellKind::gru && linear_before_reset_ && b_h)
    for (index_t j = 0; j < hidden_size; ++j) b_hn_.data()[j] = b_h[2 * hidden_size + j];
}

const char* QuantizedLayer::name() const {
  return cell_ == CellKind::lstm ? "lstm" : cell_ == CellKind::gru ? "gru" : "rnn";
}

void QuantizedLayer::forward(const LayerInput<float>& in, const LayerOutput<float>& out,
                             SequenceCache<float>* keep) const {
  if (keep) throw std::invalid_argument("a quantized model is for inference only: it keeps nothing for backward");
  // bfloat16 on AMX computes every row on 16-row tiles (quant_gemm.h).
  static const bool bf16_tiles = std::strcmp(quant_path(QuantKind::bfloat16), "amx") == 0;
  const ProductKind bytes{kind_ == QuantKind::int8 ? 1.0 : 2.0,
                          kind_ == QuantKind::bfloat16 && bf16_tiles ? index_t(16) : index_t(1)};
  switch (cell_) {
    case CellKind::rnn:
      return elman_forward_pass(w_x_.view(), w_h_.view(), bias_.data(), zeros_.data(), activation_,
                                hidden_size(), in, out, bytes);
    case CellKind::lstm:
      return lstm_forward_pass(layout_, w_x_.view(), w_h_.view(), bias_.data(), zeros_.data(), in, out,
                               static_cast<SequenceCache<float>*>(nullptr),
                               bytes);
    case CellKind::gru:
      return gru_forward_pass(layout_, w_x_.view(), w_h_.view(), w_hn_.view(), bias_.data(), b_hn_.data(),
                              zeros_.data(), linear_before_reset_, in, out,
                              static_cast<SequenceCache<float>*>(nullptr), bytes);
  }
}

void QuantizedLayer::backward(const SequenceCache<float>&, const OutputGradients<float>&,
                              const LayerGradients<float>&) const {
  throw std::invalid_argument("a quantized model is for inference only: it has no backward");
}

}  // namespace rnnext
