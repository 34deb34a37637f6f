// The Elman cell of the article,  h_t = f(W_x x_t + b_x + W_h h_{t-1} + b_h).
// Forward and backward of one thread's share of the time loop, side by side.
// Included from kernels_impl.h inside an instruction-set namespace.
#pragma once

#include "activations.h"
#include "cell_common.h"
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

// The recurrence over all steps for batch rows [batch_begin, batch_end) and
// hidden units [panel_begin, panel_end) * NR: one thread's share, either whole
// sequences (no synchronisation at all) or, for small batches, a slice of the
// hidden units of every sequence (claimed piece by piece, each step after
// the whole previous one, since it reads the whole previous state). The input projection is already in xproj.
// Shapes per step: h_{t-1} (rows, H) . W_h^T slice (H, cols) -> h_t[:, cols].
template <class T, Activation act, class W>
void elman_forward_rows(const ElmanArgs<T, W>& a) {
  const index_t hidden = a.hidden_size, padded = a.w_h.panels * panel_width<T>();
  auto h_row = [&](index_t b, index_t t) { return a.h_seq + a.offset(b, t); };
  auto xproj_row = [&](index_t b, index_t t) { return a.xproj + a.row(b, t) * padded; };

  const index_t max_length = longest_sequence(a);

  // Rows still running at step s are gathered in chunks; with `reverse`,
  // sequence b reads its step len-1-s at iteration s.
  const T* prev[kRowChunk];
  T* out[kRowChunk];
  const T* proj[kRowChunk];
  ElmanEpilogue<T, act> epilogue{out, proj, 0};
  for (index_t s = 0; s < max_length; ++s) {
    each_slice(a, [&](const TimeLoop& slice) {
      const index_t col0 = first_unit<T>(slice);
      const W w_h = unit_blocks(a.w_h, slice, 1);
      epilogue.hidden_size = end_unit<T>(slice) - col0;
      for_active_rows(a, s, a.reverse,
          [&](index_t i, index_t b, index_t t) {
            const index_t t_prev = a.reverse ? t + 1 : t - 1;
            prev[i] = s == 0 ? (a.h0 ? a.h0 + b * hidden : a.zeros) : h_row(b, t_prev);
            out[i] = h_row(b, t) + col0;
            proj[i] = xproj_row(b, t) + col0;
          },
          [&](index_t count) { gemm_rows<T>(count, w_h, [&](index_t i) { return prev[i]; }, epilogue); });
    });
  }

  // Final states: after step len-1, or after step 0 when reversed.
  each_slice(a, [&](const TimeLoop& slice) {
    const index_t col0 = first_unit<T>(slice), col1 = end_unit<T>(slice);
    for (index_t b = a.batch_begin; b < a.batch_end; ++b) {
      const index_t len = a.length(b);
      const T* last = len == 0 ? (a.h0 ? a.h0 + b * hidden : a.zeros) : h_row(b, a.reverse ? 0 : len - 1);
      T* dst = a.h_n + b * hidden;
      for (index_t j = col0; j < col1; ++j) dst[j] = last[j];
    }
  });
}

template <class T, class W>
void elman_forward_kernel(const ElmanArgs<T, W>& a) {
  switch (a.activation) {
    case Activation::tanh: return elman_forward_rows<T, Activation::tanh, W>(a);
    case Activation::sigmoid: return elman_forward_rows<T, Activation::sigmoid, W>(a);
    case Activation::relu: return elman_forward_rows<T, Activation::relu, W>(a);
  }
}

// The backward step's epilogue: acc = dz_t W_h = dh_{t-1} from the recurrence;
// adds the output gradient at t-1 and multiplies by f'(z_{t-1}), writing
// dz_{t-1} while the tile is in registers. At the first step (no t-1) it
// writes dh0 instead.
template <class T, Activation act>
struct ElmanBackwardEpilogue {
  T* const* out;           // dz_{t-1} rows (padded), or dh0 rows (hidden_size)
  const T* const* dh_out;  // dh_seq[t-1] rows, null entries when absent
  const T* const* h;       // h_{t-1} rows; null when writing dh0
  index_t hidden_size;
  index_t row0 = 0;
  RNNEXT_INLINE void set_rows(index_t i) { row0 = i; }
  RNNEXT_INLINE void operator()(int r, index_t panel, const vec<T>* acc) {
    constexpr int nv = tile_shape<T>::vectors_per_panel;
    constexpr int lanes = simd<T>::lanes;
    const index_t i = row0 + r, col0 = panel * panel_width<T>();
    for (int v = 0; v < nv; ++v) {
      const index_t col = col0 + v * lanes;
      if (col >= hidden_size) break;
      const index_t n = hidden_size - col < lanes ? hidden_size - col : lanes;
      vec<T> g = acc[v];
      if (h[i] == nullptr) {  // dh0
        if (n == lanes) store(out[i] + col, g);
        else store_partial(out[i] + col, g, n);
        continue;
      }
      if (dh_out[i]) g += n == lanes ? load(dh_out[i] + col) : load_partial(dh_out[i] + col, n);
      const vec<T> hv = n == lanes ? load(h[i] + col) : load_partial(h[i] + col, n);
      store(out[i] + col, activation_backward<act>(g, hv));  // dz rows are padded
    }
  }
};

// The sequential part of BPTT for batch rows [batch_begin, batch_end) and
// hidden units [panel_begin, panel_end) * NR (a slice when threads share the
// rows; each step's pieces are claimed after the whole previous step, since
// each step reads whole dz rows). Shapes (per sequence b): dz rows (T, Hp) in xproj's layout, dh0 (H).
template <class T, Activation act>
void elman_backward_rows(const ElmanBackwardArgs<T>& a) {
  const index_t hidden = a.hidden_size, padded = a.w_h_t.panels * panel_width<T>();
  constexpr int lanes = simd<T>::lanes;
  auto dz_row = [&](index_t b, index_t t) { return a.dz + a.row(b, t) * padded; };

  const index_t max_length = longest_sequence(a);
  if (max_length == 0) {  // no steps: h_n is h0
    each_slice(a, [&](const TimeLoop& slice) {
      const index_t col0 = first_unit<T>(slice), col1 = end_unit<T>(slice);
      for (index_t b = a.batch_begin; b < a.batch_end; ++b)
        for (index_t j = col0; j < col1; ++j) a.dh0[b * hidden + j] = a.dh_n ? a.dh_n[b * hidden + j] : T(0);
    });
    return;
  }

  // Each sequence's last step: dz from dh_seq and dh_n alone, before the loop.
  each_slice(a, [&](const TimeLoop& slice) {
    const index_t col0 = first_unit<T>(slice), col1 = end_unit<T>(slice);
    for (index_t b = a.batch_begin; b < a.batch_end; ++b) {
      const index_t t = a.time_of(b, a.length(b) - 1);
      const T* g_seq = a.dh_seq ? a.dh_seq + a.offset(b, t) : nullptr;
      const T* g_n = a.dh_n ? a.dh_n + b * hidden : nullptr;
      const T* h = a.h_seq + a.offset(b, t);
      T* dz = dz_row(b, t);
      for (index_t col = col0; col < col1; col += lanes) {
        const index_t n = col1 - col < lanes ? col1 - col : lanes;
        vec<T> g{};
        if (g_seq) g += load_partial(g_seq + col, n);
        if (g_n) g += load_partial(g_n + col, n);
        store(dz + col, activation_backward<act>(g, load_partial(h + col, n)));
      }
    }
  });

  const T* dz_in[kRowChunk];
  T* out[kRowChunk];
  const T* dh_out[kRowChunk];
  const T* h_prev[kRowChunk];
  ElmanBackwardEpilogue<T, act> epilogue{out, dh_out, h_prev, 0};
  for (index_t s = max_length - 1; s >= 0; --s) {
    each_slice(a, [&](const TimeLoop& slice) {
      const index_t col0 = first_unit<T>(slice);
      const PackedView<T> w_h_t = unit_blocks(a.w_h_t, slice, 1);
      epilogue.hidden_size = end_unit<T>(slice) - col0;
      for_active_rows(a, s, false,
          [&](index_t i, index_t b, index_t) {
            dz_in[i] = dz_row(b, a.time_of(b, s));
            if (s > 0) {
              const index_t t_prev = a.time_of(b, s - 1);
              out[i] = dz_row(b, t_prev) + col0;
              dh_out[i] = a.dh_seq ? a.dh_seq + a.offset(b, t_prev) + col0 : nullptr;
              h_prev[i] = a.h_seq + a.offset(b, t_prev) + col0;
            } else {
              out[i] = a.dh0 + b * hidden + col0;
              dh_out[i] = nullptr;
              h_prev[i] = nullptr;
            }
          },
          [&](index_t count) { gemm_rows<T>(count, w_h_t, [&](index_t i) { return dz_in[i]; }, epilogue); });
    });
  }
}

template <class T>
void elman_backward_kernel(const ElmanBackwardArgs<T>& a) {
  switch (a.activation) {
    case Activation::tanh: return elman_backward_rows<T, Activation::tanh>(a);
    case Activation::sigmoid: return elman_backward_rows<T, Activation::sigmoid>(a);
    case Activation::relu: return elman_backward_rows<T, Activation::relu>(a);
  }
}
