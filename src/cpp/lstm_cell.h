// The LSTM cell, PyTorch's equations (gates i, f, g, o):
//   i, f, o = sigmoid(.),  g = tanh(.),  c_t = f c_{t-1} + i g,  h_t = o tanh(c_t),
// each gate's pre-activation W_x x_t + b_x + W_h h_{t-1} + b_h.
// Forward and backward of one thread's share of the time loop, side by side.
// Gates are gate-interleaved (gate_layout.h): the four panels of a unit block
// arrive from the product one after the other, and the block's cell update
// runs in the epilogue of its last panel, while that tile is in registers.
// Included from kernels_impl.h inside an instruction-set namespace.
#pragma once

#include "activations.h"
#include "cell_common.h"
#include "gemm.h"

// The forward step's epilogue. Panels i, f, g of a block leave their
// pre-activation (product + projection) in the gate row; panel o finishes
// the block: c_t, h_t, and when training the activations back into the gate
// row (backward reads them). Row pointers are offset to the slice's first
// unit block.
template <class T>
struct LstmEpilogue {
  T* const* gates;         // gate rows at t
  const T* const* c_prev;  // c_{t-1} rows (c0 rows are unpadded)
  T* const* c_out;         // c_t rows (padded; may be c_prev: updated in place)
  T* const* h_out;         // h_t rows
  index_t units;           // hidden units of this slice
  bool keep;               // training: the activations go back into the gate row
  index_t row0 = 0;
  RNNEXT_INLINE void set_rows(index_t i) { row0 = i; }
  RNNEXT_INLINE void operator()(int r, index_t panel, const vec<T>* acc) {
    constexpr index_t nr = panel_width<T>();
    constexpr int nv = tile_shape<T>::vectors_per_panel;
    constexpr int lanes = simd<T>::lanes;
    const index_t i = row0 + r, q = panel / 4, gate = panel % 4;
    T* row = gates[i] + q * 4 * nr;
    if (gate < 3) {
      T* z = row + gate * nr;
      for (int v = 0; v < nv; ++v) store(z + v * lanes, acc[v] + load(z + v * lanes));
      return;
    }
    for_unit_vectors<T>(q, units, [&](int v, index_t col, index_t n) {
      T* z = row + v * lanes;
      const vec<T> ig = sigmoid_vec(load(z)), fg = sigmoid_vec(load(z + nr));
      const vec<T> gg = tanh_vec(load(z + 2 * nr)), og = sigmoid_vec(acc[v] + load(z + 3 * nr));
      const vec<T> c = fg * load_n(c_prev[i] + col, n) + ig * gg;
      if (keep) {
        store_padded(z, ig, n);
        store_padded(z + nr, fg, n);
        store_padded(z + 2 * nr, gg, n);
        store_padded(z + 3 * nr, og, n);
      }
      store_padded(c_out[i] + col, c, n);
      store_n(h_out[i] + col, og * tanh_vec(c), n);
    });
  }
};

// Steps for batch rows [batch_begin, batch_end) and unit blocks
// [panel_begin, panel_end): whole sequences, or (a.claims set) the pieces of
// the units of every sequence this thread claims, step after step.
template <class T, class W>
void lstm_forward_kernel(const LstmArgs<T, W>& a) {
  constexpr index_t nr = panel_width<T>();
  const index_t hidden = a.hidden_size, hp = round_up(hidden, nr), width = 4 * hp;
  auto h_row = [&](index_t b, index_t t) { return a.h_seq + a.offset(b, t); };
  auto c_row = [&](index_t b, index_t t) { return a.c_seq ? a.c_seq + a.row(b, t) * hp : a.c_state + b * hp; };
  auto h_first = [&](index_t b) { return a.h0 ? a.h0 + b * hidden : a.zeros; };
  auto c_first = [&](index_t b) { return a.c0 ? a.c0 + b * hidden : a.zeros; };

  const index_t max_length = longest_sequence(a);

  const T* prev[kRowChunk];
  T* gate_rows[kRowChunk];
  const T* c_prev[kRowChunk];
  T* c_out[kRowChunk];
  T* h_out[kRowChunk];
  for (index_t s = 0; s < max_length; ++s) {
    each_slice(a, [&](const TimeLoop& slice) {
      const index_t col0 = first_unit<T>(slice);
      const W w = unit_blocks(a.w_h, slice, 4);
      LstmEpilogue<T> epilogue{gate_rows, c_prev, c_out, h_out, end_unit<T>(slice) - col0, a.c_seq != nullptr};
      for_active_rows(a, s, a.reverse,
          [&](index_t i, index_t b, index_t t) {
            const index_t t_prev = a.reverse ? t + 1 : t - 1;
            prev[i] = s == 0 ? h_first(b) : h_row(b, t_prev);
            c_prev[i] = (s == 0 ? c_first(b) : c_row(b, t_prev)) + col0;
            c_out[i] = c_row(b, t) + col0;
            gate_rows[i] = a.gates + a.row(b, t) * width + col0 * 4;
            h_out[i] = h_row(b, t) + col0;
          },
          [&](index_t count) { gemm_rows<T>(count, w, [&](index_t i) { return prev[i]; }, epilogue); });
    });
  }

  each_slice(a, [&](const TimeLoop& slice) {
    const index_t col0 = first_unit<T>(slice), col1 = end_unit<T>(slice);
    for (index_t b = a.batch_begin; b < a.batch_end; ++b) {
      const index_t len = a.length(b), t = a.reverse ? 0 : len - 1;
      const T* h = len == 0 ? h_first(b) : h_row(b, t);
      const T* c = len == 0 ? c_first(b) : c_row(b, t);
      for (index_t j = col0; j < col1; ++j) {
        a.h_n[b * hidden + j] = h[j];
        a.c_n[b * hidden + j] = c[j];
      }
    }
  });
}

// One unit vector of a step's backward: from dh_t (everything reaching h_t)
// and the carried dc, the four pre-activation gradients (into the gate-layout
// row dz, at the vector's offset) and the dc carried to step t-1.
//   g:  the activated gates at t (gate layout, at the vector's offset)
template <class T>
RNNEXT_INLINE vec<T> lstm_cell_backward(vec<T> dh, vec<T> dc, const T* g, vec<T> c, vec<T> c_prev, T* dz,
                                        index_t n) {
  constexpr index_t nr = panel_width<T>();
  const vec<T> ig = load(g), fg = load(g + nr), gg = load(g + 2 * nr), og = load(g + 3 * nr);
  const vec<T> tc = tanh_vec(c);
  dc += dh * og * (1.0f - tc * tc);
  store_padded(dz, dc * gg * (ig * (1.0f - ig)), n);
  store_padded(dz + nr, dc * c_prev * (fg * (1.0f - fg)), n);
  store_padded(dz + 2 * nr, dc * ig * (1.0f - gg * gg), n);
  store_padded(dz + 3 * nr, dh * tc * (og * (1.0f - og)), n);
  return dc * fg;
}

// The backward step's epilogue: acc = dz_t W_h = the recurrent part of
// dh_{t-1}; adds dh_seq[t-1] and runs the cell backward of step t-1 for the
// block. At the sequence's first step it writes dh0 and dc0 instead.
template <class T>
struct LstmBackwardEpilogue {
  T* const* dz;            // dz rows at t-1, or null: write dh0 / dc0
  const T* const* gates;   // gate rows at t-1
  const T* const* c;       // c_{t-1} rows
  const T* const* c_prev;  // c_{t-2} rows (c0 rows are unpadded)
  const T* const* dh_seq;  // rows at t-1, null entries when absent
  T* const* dc;            // carried dc rows
  T* const* dh0;
  T* const* dc0;
  index_t units;
  index_t row0 = 0;
  RNNEXT_INLINE void set_rows(index_t i) { row0 = i; }
  RNNEXT_INLINE void operator()(int r, index_t panel, const vec<T>* acc) {
    constexpr index_t nr = panel_width<T>();
    constexpr int lanes = simd<T>::lanes;
    const index_t i = row0 + r;
    for_unit_vectors<T>(panel, units, [&](int v, index_t col, index_t n) {
      vec<T> dh = acc[v];
      if (dz[i] == nullptr) {
        store_n(dh0[i] + col, dh, n);
        store_n(dc0[i] + col, load(dc[i] + col), n);
        return;
      }
      if (dh_seq[i]) dh += load_n(dh_seq[i] + col, n);
      const index_t at = panel * 4 * nr + v * lanes;
      store(dc[i] + col, lstm_cell_backward<T>(dh, load(dc[i] + col), gates[i] + at, load(c[i] + col),
                                               load_n(c_prev[i] + col, n), dz[i] + at, n));
    });
  }
};

template <class T>
void lstm_backward_kernel(const LstmBackwardArgs<T>& a) {
  // The product dz_t W_h runs over whole gate rows and gives the slice's units of dh_{t-1}.
  constexpr index_t nr = panel_width<T>();
  const index_t hidden = a.hidden_size, hp = round_up(hidden, nr), width = 4 * hp;
  // c before step s of sequence b (s >= 1: c of step s-1).
  auto c_before = [&](index_t b, index_t s) {
    return s == 0 ? (a.c0 ? a.c0 + b * hidden : a.zeros) : a.c_seq + a.row(b, a.time_of(b, s - 1)) * hp;
  };

  const index_t max_length = longest_sequence(a);

  // Each sequence's last step, from dh_seq, dh_n and dc_n alone.
  each_slice(a, [&](const TimeLoop& slice) {
    for (index_t b = a.batch_begin; b < a.batch_end; ++b) {
      const index_t len = a.length(b);
      for_slice_vectors<T>(first_unit<T>(slice), end_unit<T>(slice), [&](index_t col, index_t n) {
        vec<T> dh = load_n_or_zero(a.dh_n, b * hidden + col, n);
        const vec<T> dc = load_n_or_zero(a.dc_n, b * hidden + col, n);
        if (len == 0) {  // no steps: h_n is h0, c_n is c0
          store_n(a.dh0 + b * hidden + col, dh, n);
          store_n(a.dc0 + b * hidden + col, dc, n);
          return;
        }
        const index_t t = a.time_of(b, len - 1);
        if (a.dh_seq) dh += load_n(a.dh_seq + a.offset(b, t) + col, n);
        const index_t at = a.row(b, t) * width + (col / nr) * 4 * nr + col % nr;
        store(a.dc + b * hp + col,
              lstm_cell_backward<T>(dh, dc, a.gates + at, load(a.c_seq + a.row(b, t) * hp + col),
                                    load_n(c_before(b, len - 1) + col, n), a.dz + at, n));
      });
    }
  });

  const T* dz_in[kRowChunk];
  T* dz_out[kRowChunk];
  const T* gate_rows[kRowChunk];
  const T* c[kRowChunk];
  const T* c_prev[kRowChunk];
  const T* dh_seq[kRowChunk];
  T* dc[kRowChunk];
  T* dh0[kRowChunk];
  T* dc0[kRowChunk];
  for (index_t s = max_length - 1; s >= 0; --s) {
    each_slice(a, [&](const TimeLoop& slice) {
      const index_t col0 = first_unit<T>(slice);
      LstmBackwardEpilogue<T> epilogue{dz_out, gate_rows, c, c_prev, dh_seq, dc, dh0, dc0, end_unit<T>(slice) - col0};
      for_active_rows(a, s, false,
          [&](index_t i, index_t b, index_t) {
            dz_in[i] = a.dz + a.row(b, a.time_of(b, s)) * width;
            dc[i] = a.dc + b * hp + col0;
            dh0[i] = a.dh0 + b * hidden + col0;
            dc0[i] = a.dc0 + b * hidden + col0;
            if (s == 0) {
              dz_out[i] = nullptr;
              return;
            }
            const index_t t_prev = a.time_of(b, s - 1);
            dz_out[i] = a.dz + a.row(b, t_prev) * width + col0 * 4;
            gate_rows[i] = a.gates + a.row(b, t_prev) * width + col0 * 4;
            c[i] = a.c_seq + a.row(b, t_prev) * hp + col0;
            c_prev[i] = c_before(b, s - 1) + col0;
            dh_seq[i] = a.dh_seq ? a.dh_seq + a.offset(b, t_prev) + col0 : nullptr;
          },
          [&](index_t count) {
            gemm_rows<T>(count, unit_blocks(a.w_h_t, slice, 1), [&](index_t i) { return dz_in[i]; }, epilogue);
          });
    });
  }
}
