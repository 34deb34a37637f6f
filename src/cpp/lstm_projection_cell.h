// The LSTM with projections (PyTorch's proj_size): the cell of lstm_cell.h
// gives m_t = o * tanh(c_t), and the state is h_t = m_t W_hr^T. Forward and
// backward of one thread's sequences, side by side; the cell arithmetic is
// lstm_cell.h's (LstmEpilogue, lstm_cell_backward), the projection one more
// product per step over the packed W_hr.
// Included from kernels_impl.h inside an instruction-set namespace.
#pragma once

#include "cell_common.h"
#include "gemm.h"
#include "lstm_cell.h"

// Writes the first n columns of row out[i] from each tile, plus the row
// addend[i] when there is one (unpadded rows: the projection's h_t, the
// backward's dh_t).
template <class T>
struct RowsEpilogue {
  T* const* out;
  const T* const* addend;  // or null
  index_t n;
  index_t row0 = 0;
  RNNEXT_INLINE void set_rows(index_t i) { row0 = i; }
  RNNEXT_INLINE void operator()(int r, index_t panel, const vec<T>* acc) {
    constexpr int nv = tile_shape<T>::vectors_per_panel;
    constexpr int lanes = simd<T>::lanes;
    const index_t i = row0 + r;
    const T* add = addend ? addend[i] : nullptr;
    for (int v = 0; v < nv; ++v) {
      const index_t col = panel * panel_width<T>() + v * lanes;
      if (col >= n) break;
      vec<T> z = acc[v];
      if (add) z += load_n(add + col, n - col);
      store_n(out[i] + col, z, n - col);
    }
  }
};

template <class T>
void lstm_proj_forward_kernel(const LstmProjArgs<T>& a) {
  constexpr index_t nr = panel_width<T>();
  const index_t hidden = a.hidden_size, hp = round_up(hidden, nr), width = 4 * hp, proj = a.proj;
  auto h_row = [&](index_t b, index_t t) { return a.h_seq + a.offset(b, t); };
  auto c_row = [&](index_t b, index_t t) { return a.c_seq ? a.c_seq + a.row(b, t) * hp : a.c_state + b * hp; };
  auto m_row = [&](index_t b, index_t t) { return a.m_seq ? a.m_seq + a.row(b, t) * hp : a.m_state + b * hp; };
  auto h_first = [&](index_t b) { return a.h0 ? a.h0 + b * proj : a.zeros; };
  auto c_first = [&](index_t b) { return a.c0 ? a.c0 + b * hidden : a.zeros; };

  const T* prev[kRowChunk];
  T* gate_rows[kRowChunk];
  const T* c_prev[kRowChunk];
  T* c_out[kRowChunk];
  T* m_out[kRowChunk];
  T* h_out[kRowChunk];
  LstmEpilogue<T> cell{gate_rows, c_prev, c_out, m_out, hidden, a.c_seq != nullptr};
  RowsEpilogue<T> projection{h_out, nullptr, proj};
  const index_t max_length = longest_sequence(a);
  for (index_t s = 0; s < max_length; ++s) {
    for_active_rows(a, s, a.reverse,
        [&](index_t i, index_t b, index_t t) {
          const index_t t_prev = a.reverse ? t + 1 : t - 1;
          prev[i] = s == 0 ? h_first(b) : h_row(b, t_prev);
          c_prev[i] = s == 0 ? c_first(b) : c_row(b, t_prev);
          c_out[i] = c_row(b, t);
          gate_rows[i] = a.gates + a.row(b, t) * width;
          m_out[i] = m_row(b, t);
          h_out[i] = h_row(b, t);
        },
        [&](index_t count) {
          gemm_rows<T>(count, a.w_h, [&](index_t i) { return prev[i]; }, cell);
          gemm_rows<T>(count, a.w_hr, [&](index_t i) { return static_cast<const T*>(m_out[i]); }, projection);
        });
  }

  for (index_t b = a.batch_begin; b < a.batch_end; ++b) {
    const index_t len = a.length(b), t = a.reverse ? 0 : len - 1;
    const T* h = len == 0 ? h_first(b) : h_row(b, t);
    const T* c = len == 0 ? c_first(b) : c_row(b, t);
    for (index_t j = 0; j < proj; ++j) a.h_n[b * proj + j] = h[j];
    for (index_t j = 0; j < hidden; ++j) a.c_n[b * hidden + j] = c[j];
  }
}

// The backward's epilogue of dm_t = dh_t W_hr: the cell backward of step t,
// from dm_t and the carried dc, for every unit of the tile.
template <class T>
struct LstmProjCellBackward {
  T* const* dz;            // dz rows at t
  const T* const* gates;   // gate rows at t
  const T* const* c;       // c_t rows
  const T* const* c_prev;  // c_{t-1} rows (c0 rows are unpadded)
  T* const* dc;            // carried dc rows
  index_t units;
  index_t row0 = 0;
  RNNEXT_INLINE void set_rows(index_t i) { row0 = i; }
  RNNEXT_INLINE void operator()(int r, index_t panel, const vec<T>* acc) {
    constexpr index_t nr = panel_width<T>();
    constexpr int lanes = simd<T>::lanes;
    const index_t i = row0 + r;
    for_unit_vectors<T>(panel, units, [&](int v, index_t col, index_t n) {
      const index_t at = panel * 4 * nr + v * lanes;
      store(dc[i] + col, lstm_cell_backward<T>(acc[v], load(dc[i] + col), gates[i] + at, load(c[i] + col),
                                               load_n(c_prev[i] + col, n), dz[i] + at, n));
    });
  }
};

template <class T>
void lstm_proj_backward_kernel(const LstmProjBackwardArgs<T>& a) {
  constexpr index_t nr = panel_width<T>();
  const index_t hidden = a.hidden_size, hp = round_up(hidden, nr), width = 4 * hp, proj = a.proj;
  auto c_before = [&](index_t b, index_t s) {
    return s == 0 ? (a.c0 ? a.c0 + b * hidden : a.zeros) : a.c_seq + a.row(b, a.time_of(b, s - 1)) * hp;
  };
  for (index_t b = a.batch_begin; b < a.batch_end; ++b)
    for (index_t j = 0; j < hidden; ++j) a.dc[b * hp + j] = a.dc_n ? a.dc_n[b * hidden + j] : T(0);

  const T* dz_next[kRowChunk];
  T* dh_out[kRowChunk];
  const T* dh_add[kRowChunk];
  RowsEpilogue<T> recurrent{dh_out, dh_add, proj};
  index_t pending = 0;
  auto flush_recurrent = [&] {
    if (pending > 0) gemm_rows<T>(pending, a.w_h_t, [&](index_t i) { return dz_next[i]; }, recurrent);
    pending = 0;
  };
  // dh = dz_next W_h (+ add): gathered, a product per kRowChunk rows.
  auto recurrent_row = [&](const T* dz, T* out, const T* add) {
    dz_next[pending] = dz;
    dh_out[pending] = out;
    dh_add[pending] = add;
    if (++pending == kRowChunk) flush_recurrent();
  };

  const T* dh[kRowChunk];
  T* dz_rows[kRowChunk];
  const T* gate_rows[kRowChunk];
  const T* c[kRowChunk];
  const T* c_prev[kRowChunk];
  T* dc[kRowChunk];
  LstmProjCellBackward<T> cell{dz_rows, gate_rows, c, c_prev, dc, hidden};
  const index_t max_length = longest_sequence(a);
  for (index_t s = max_length - 1; s >= 0; --s) {
    // dh_t: a sequence's last step has no recurrent part, only dh_n.
    for (index_t b = a.batch_begin; b < a.batch_end; ++b) {
      const index_t len = a.length(b);
      if (s >= len) continue;
      const index_t t = a.time_of(b, s);
      T* out = a.dh_rows + a.row(b, t) * proj;
      const T* add = a.dh_seq ? a.dh_seq + a.offset(b, t) : nullptr;
      if (s + 1 < len) {
        recurrent_row(a.dz + a.row(b, a.time_of(b, s + 1)) * width, out, add);
        continue;
      }
      for (index_t j = 0; j < proj; ++j) out[j] = (a.dh_n ? a.dh_n[b * proj + j] : T(0)) + (add ? add[j] : T(0));
    }
    flush_recurrent();
    // dm_t = dh_t W_hr, and the cell backward of step t.
    for_active_rows(a, s, false,
        [&](index_t i, index_t b, index_t) {
          const index_t r = a.row(b, a.time_of(b, s));
          dh[i] = a.dh_rows + r * proj;
          dz_rows[i] = a.dz + r * width;
          gate_rows[i] = a.gates + r * width;
          c[i] = a.c_seq + r * hp;
          c_prev[i] = c_before(b, s);
          dc[i] = a.dc + b * hp;
        },
        [&](index_t count) { gemm_rows<T>(count, a.w_hr_t, [&](index_t i) { return dh[i]; }, cell); });
  }

  // dh0 = dz_0 W_h (dh_n itself for a sequence of no steps), dc0 = the carried dc.
  for (index_t b = a.batch_begin; b < a.batch_end; ++b) {
    if (a.length(b) > 0) {
      recurrent_row(a.dz + a.row(b, a.time_of(b, 0)) * width, a.dh0 + b * proj, nullptr);
      continue;
    }
    for (index_t j = 0; j < proj; ++j) a.dh0[b * proj + j] = a.dh_n ? a.dh_n[b * proj + j] : T(0);
  }
  flush_recurrent();
  for (index_t b = a.batch_begin; b < a.batch_end; ++b)
    for (index_t j = 0; j < hidden; ++j) a.dc0[b * hidden + j] = a.dc[b * hp + j];
}
