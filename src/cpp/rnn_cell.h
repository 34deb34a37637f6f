// The Elman cell of the article,  h_t = f(W_x x_t + b_x + W_h h_{t-1} + b_h).
// Forward (and, later, backward) of one thread's batch rows, side by side.
// Included from kernels_impl.h inside an instruction-set namespace.
#pragma once

#include "activations.h"
#include "gemm.h"

// The step's epilogue: h_t = f(acc + xproj_t), written straight to the
// output row while the tile is in registers.
template <class T, Activation act>
struct ElmanEpilogue {
  T* const* out;          // h_t rows (hidden_size)
  const T* const* xproj;  // x_t W_x^T + b rows (padded)
  index_t hidden_size;
  index_t row0 = 0;
  RNNEXT_INLINE void set_rows(index_t i) { row0 = i; }
  RNNEXT_INLINE void operator()(int r, index_t panel, const vec<T>* acc) {
    store_panel(out[row0 + r], panel, hidden_size, acc, xproj[row0 + r],
                [](vec<T> z) { return activate<act>(z); });
  }
};

// Forward over all steps for batch rows [batch_begin, batch_end).
// Shapes (per sequence b, L = lengths[b]):
//   x[b, 0:L]  (L, I) -> xproj rows (L, Hp)  one product over the whole sequence
//   h_{t-1}    (H)    -> h_seq[b, t] (H)      one product per step
template <class T, Activation act>
void elman_forward_rows(const ElmanArgs<T>& a) {
  const index_t hidden = a.hidden_size;
  const index_t padded = a.w_h.panels * panel_width<T>();
  auto length = [&](index_t b) { return a.lengths ? a.lengths[b] : a.steps; };
  auto h_row = [&](index_t b, index_t t) { return a.h_seq + b * a.h_stride_b + t * a.h_stride_t; };
  auto xproj_row = [&](index_t b, index_t t) { return a.xproj + (b * a.steps + t) * padded; };

  // 1. Input projection of every valid step, and zeros past each length.
  index_t max_length = 0;
  for (index_t b = a.batch_begin; b < a.batch_end; ++b) {
    const index_t len = length(b);
    max_length = len > max_length ? len : max_length;
    DenseArgs<T> projection{a.x + b * a.x_stride_b, a.x_stride_t, len, a.w_x, a.bias,
                            xproj_row(b, 0), padded, padded};
    dense_kernel(projection);
    for (index_t t = len; t < a.steps; ++t) {
      T* row = h_row(b, t);
      for (index_t j = 0; j < hidden; ++j) row[j] = T(0);
    }
  }

  // 2. The recurrence. Rows still running at step s are gathered in chunks;
  // with `reverse`, sequence b reads its step len-1-s at iteration s.
  constexpr index_t chunk = 64;
  const T* prev[chunk];
  T* out[chunk];
  const T* proj[chunk];
  ElmanEpilogue<T, act> epilogue{out, proj, hidden};
  for (index_t s = 0; s < max_length; ++s) {
    index_t count = 0;
    for (index_t b = a.batch_begin; b < a.batch_end; ++b) {
      const index_t len = length(b);
      if (s >= len) continue;
      const index_t t = a.reverse ? len - 1 - s : s;
      const index_t t_prev = a.reverse ? t + 1 : t - 1;
      prev[count] = s == 0 ? (a.h0 ? a.h0 + b * hidden : a.zeros) : h_row(b, t_prev);
      out[count] = h_row(b, t);
      proj[count] = xproj_row(b, t);
      if (++count == chunk) {
        gemm_rows<T>(count, a.w_h, [&](index_t i) { return prev[i]; }, epilogue);
        count = 0;
      }
    }
    if (count > 0) gemm_rows<T>(count, a.w_h, [&](index_t i) { return prev[i]; }, epilogue);
  }

  // 3. Final states: after step len-1, or after step 0 when reversed.
  for (index_t b = a.batch_begin; b < a.batch_end; ++b) {
    const index_t len = length(b);
    const T* last = len == 0 ? (a.h0 ? a.h0 + b * hidden : a.zeros)
                             : h_row(b, a.reverse ? 0 : len - 1);
    T* dst = a.h_n + b * hidden;
    for (index_t j = 0; j < hidden; ++j) dst[j] = last[j];
  }
}

template <class T>
void elman_forward_kernel(const ElmanArgs<T>& a) {
  switch (a.activation) {
    case Activation::tanh: return elman_forward_rows<T, Activation::tanh>(a);
    case Activation::sigmoid: return elman_forward_rows<T, Activation::sigmoid>(a);
    case Activation::relu: return elman_forward_rows<T, Activation::relu>(a);
  }
}
