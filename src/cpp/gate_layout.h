// How cells with several gate blocks (LSTM: 4, GRU: 3) lay out their gates.
//
// Weights arrive in PyTorch's order: G blocks of H rows, one per gate. The
// core stores them gate-interleaved instead: for each block q of NR hidden
// units (NR = panel_width<T>()), the G panels of that block sit side by side,
//   column (q*G + g)*NR + j  <->  gate g of unit q*NR + j.
// A recurrent product then delivers all gates of a unit block one after the
// other while they are in registers, so the cell's arithmetic is fused into
// the product's epilogue, and a thread that owns a range of unit blocks owns
// every gate of those units. Elman is the case G = 1.
// Baseline code: used when packing and after the backward loop.
#pragma once

#include "aligned_buffer.h"
#include "common.h"

namespace rnnext {

template <class T>
struct GateLayout {
  index_t gates, hidden;

  static constexpr index_t nr = panel_width<T>();
  index_t blocks() const { return (hidden + nr - 1) / nr; }
  index_t padded() const { return blocks() * nr; }  // Hp: units per gate, padded
  index_t width() const { return checked_mul(gates, padded()); }  // G * Hp
  // The interleaved column of unit j of gate g.
  index_t column(index_t g, index_t j) const { return (j / nr * gates + g) * nr + j % nr; }

  // W (G*H, k) row-major -> (G*Hp, k) in interleaved row order, zero rows
  // for the padding units.
  AlignedBuffer<T> interleave_rows(const T* w, index_t k) const {
    AlignedBuffer<T> out(checked_mul(width(), k));
    for (index_t g = 0; g < gates; ++g)
      for (index_t j = 0; j < hidden; ++j) {
        const T* src = w + (g * hidden + j) * k;
        T* dst = out.data() + column(g, j) * k;
        for (index_t i = 0; i < k; ++i) dst[i] = src[i];
      }
    return out;
  }

  // The inverse for gradients: (G*Hp, k) interleaved -> (G*H, k) rows; src
  // rows may be wider (ld elements, k of them from column `first`).
  void deinterleave_rows(const T* src, index_t k, T* w, index_t ld = -1, index_t first = 0) const {
    if (ld < 0) ld = k;
    for (index_t g = 0; g < gates; ++g)
      for (index_t j = 0; j < hidden; ++j) {
        const T* row = src + column(g, j) * ld + first;
        T* dst = w + (g * hidden + j) * k;
        for (index_t i = 0; i < k; ++i) dst[i] = row[i];
      }
  }

  // sum of the chosen bias vectors (G*H each, or null), interleaved and padded;
  // include(g) says which gates take b2 (GRU keeps b_hn out of the projection).
  template <class Include>
  AlignedBuffer<T> interleave_bias(const T* b1, const T* b2, Include include) const {
    AlignedBuffer<T> out(width());
    for (index_t g = 0; g < gates; ++g)
      for (index_t j = 0; j < hidden; ++j) {
        T v = T(0);
        if (b1) v += b1[g * hidden + j];
        if (b2 && include(g)) v += b2[g * hidden + j];
        out.data()[column(g, j)] = v;
      }
    return out;
  }
};

}  // namespace rnnext
