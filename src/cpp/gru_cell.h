// The GRU cell, PyTorch's equations (gates r, z, n):
//   r, z = sigmoid(.),  h_t = (1 - z) n + z h_{t-1},
//   n = tanh(W_in x + b_in + r (W_hn h + b_hn))     linear_before_reset (PyTorch)
//   n = tanh(W_in x + b_in + W_hn (r h) + b_hn)     otherwise (ONNX's default)
// Forward and backward of one thread's share of the time loop, side by side,
// gate-interleaved as the LSTM (gate_layout.h). With linear_before_reset a
// step is one product, the cell fused into the epilogue of each block's n
// panel; otherwise it is a product for r and z, whose epilogue forms r h, and
// a product W_hn (r h) whose epilogue finishes the step.
// Included from kernels_impl.h inside an instruction-set namespace.
#pragma once

#include "activations.h"
#include "cell_common.h"
#include "gemm.h"

// Adds a panel's product to the pre-activation already in the gate row.
template <class T>
RNNEXT_INLINE void stash_panel(T* z, const vec<T>* acc) {
  constexpr int nv = tile_shape<T>::vectors_per_panel;
  constexpr int lanes = simd<T>::lanes;
  for (int v = 0; v < nv; ++v) store(z + v * lanes, acc[v] + load(z + v * lanes));
}

// Row pointers of a GRU forward step, offset to the thread's first block.
template <class T>
struct GruRows {
  T* const* gates;         // gate rows at t (3 panels per block)
  const T* const* h_prev;  // h_{t-1} rows
  T* const* h_out;         // h_t rows
  T* const* hn;            // hn rows at t (Hp)
  index_t units;
  index_t row0 = 0;
  RNNEXT_INLINE void set_rows(index_t i) { row0 = i; }
};

// linear_before_reset: the step's only product, h_{t-1} W_h^T (3 panels per
// block). Panels r, z stash; panel n finishes the block.
template <class T>
struct GruEpilogue : GruRows<T> {
  const T* b_hn;
  bool keep;  // training: r, z, n back into the gate row, hn into its row
  RNNEXT_INLINE void operator()(int r, index_t panel, const vec<T>* acc) {
    constexpr index_t nr = panel_width<T>();
    constexpr int lanes = simd<T>::lanes;
    const index_t i = this->row0 + r, q = panel / 3, gate = panel % 3;
    T* row = this->gates[i] + q * 3 * nr;
    if (gate < 2) return stash_panel(row + gate * nr, acc);
    for_unit_vectors<T>(q, this->units, [&](int v, index_t col, index_t n) {
      T* z = row + v * lanes;
      const vec<T> rg = sigmoid_vec(load(z)), zg = sigmoid_vec(load(z + nr));
      const vec<T> hn = acc[v] + load(b_hn + col);
      const vec<T> ng = tanh_vec(load(z + 2 * nr) + rg * hn);
      const vec<T> h = (1.0f - zg) * ng + zg * load_n(this->h_prev[i] + col, n);
      if (keep) {
        store_padded(z, rg, n);
        store_padded(z + nr, zg, n);
        store_padded(z + 2 * nr, ng, n);
        store_padded(this->hn[i] + col, hn, n);
      }
      store_n(this->h_out[i] + col, h, n);
    });
  }
};

// Not linear_before_reset, first product h_{t-1} [W_hr; W_hz]^T (2 panels
// per block): r and z, and r h into the hn row for the second product.
template <class T>
struct GruResetEpilogue : GruRows<T> {
  RNNEXT_INLINE void operator()(int r, index_t panel, const vec<T>* acc) {
    constexpr index_t nr = panel_width<T>();
    constexpr int lanes = simd<T>::lanes;
    const index_t i = this->row0 + r, q = panel / 2, gate = panel % 2;
    T* row = this->gates[i] + q * 3 * nr;
    if (gate == 0) return stash_panel(row, acc);
    for_unit_vectors<T>(q, this->units, [&](int v, index_t col, index_t n) {
      T* z = row + v * lanes;
      const vec<T> rg = sigmoid_vec(load(z)), zg = sigmoid_vec(acc[v] + load(z + nr));
      store_padded(z, rg, n);
      store_padded(z + nr, zg, n);
      store_padded(this->hn[i] + col, rg * load_n(this->h_prev[i] + col, n), n);
    });
  }
};

// Not linear_before_reset, second product (r h) W_hn^T: n and h_t.
template <class T>
struct GruNewEpilogue : GruRows<T> {
  RNNEXT_INLINE void operator()(int r, index_t panel, const vec<T>* acc) {
    constexpr index_t nr = panel_width<T>();
    constexpr int lanes = simd<T>::lanes;
    const index_t i = this->row0 + r;
    T* row = this->gates[i] + panel * 3 * nr;
    for_unit_vectors<T>(panel, this->units, [&](int v, index_t col, index_t n) {
      T* z = row + v * lanes;
      const vec<T> zg = load(z + nr), ng = tanh_vec(acc[v] + load(z + 2 * nr));
      store_padded(z + 2 * nr, ng, n);
      store_n(this->h_out[i] + col, (1.0f - zg) * ng + zg * load_n(this->h_prev[i] + col, n), n);
    });
  }
};

template <class T, class W>
void gru_forward_kernel(const GruArgs<T, W>& a) {
  constexpr index_t nr = panel_width<T>();
  const index_t hidden = a.hidden_size, hp = round_up(hidden, nr), width = 3 * hp;
  const index_t gates_h = a.linear_before_reset ? 3 : 2;  // gate panels per block in w_h
  auto h_row = [&](index_t b, index_t t) { return a.h_seq + a.offset(b, t); };
  auto h_first = [&](index_t b) { return a.h0 ? a.h0 + b * hidden : a.zeros; };

  const index_t max_length = longest_sequence(a);

  const T* prev[kRowChunk];       // whole rows, for the product
  const T* prev_units[kRowChunk];  // the slice's units, for the epilogue
  T* gate_rows[kRowChunk];
  T* h_out[kRowChunk];
  T* hn[kRowChunk];
  const T* rh[kRowChunk];
  // One product of step s over a slice's blocks: w's blocks for the slice,
  // the epilogue made from the slice's rows.
  auto product = [&](index_t s, const W& w, index_t gates, bool of_rh, auto make_epilogue) {
    each_slice(a, [&](const TimeLoop& slice) {
      const index_t col0 = first_unit<T>(slice);
      auto epilogue = make_epilogue(GruRows<T>{gate_rows, prev_units, h_out, hn, end_unit<T>(slice) - col0}, col0);
      for_active_rows(a, s, a.reverse,
          [&](index_t i, index_t b, index_t t) {
            const index_t t_prev = a.reverse ? t + 1 : t - 1;
            prev[i] = s == 0 ? h_first(b) : h_row(b, t_prev);
            prev_units[i] = prev[i] + col0;
            gate_rows[i] = a.gates + a.row(b, t) * width + col0 * 3;
            h_out[i] = h_row(b, t) + col0;
            hn[i] = a.hn + a.row(b, t) * hp + col0;
            rh[i] = a.hn + a.row(b, t) * hp;
          },
          [&](index_t count) {
            gemm_rows<T>(count, unit_blocks(w, slice, gates), [&](index_t i) { return of_rh ? rh[i] : prev[i]; },
                         epilogue);
          });
    });
  };
  for (index_t s = 0; s < max_length; ++s) {
    if (a.linear_before_reset) {
      product(s, a.w_h, gates_h, false, [&](GruRows<T> rows, index_t col0) { return GruEpilogue<T>{rows, a.b_hn + col0, a.keep}; });
    } else {
      product(s, a.w_h, gates_h, false, [](GruRows<T> rows, index_t) { return GruResetEpilogue<T>{rows}; });
      // after every r h of the step: the next product reads whole r h rows
      product(s, a.w_hn, 1, true, [](GruRows<T> rows, index_t) { return GruNewEpilogue<T>{rows}; });
    }
  }

  each_slice(a, [&](const TimeLoop& slice) {
    const index_t col0 = first_unit<T>(slice), col1 = end_unit<T>(slice);
    for (index_t b = a.batch_begin; b < a.batch_end; ++b) {
      const index_t len = a.length(b);
      const T* h = len == 0 ? h_first(b) : h_row(b, a.reverse ? 0 : len - 1);
      for (index_t j = col0; j < col1; ++j) a.h_n[b * hidden + j] = h[j];
    }
  });
}

// The first part of a step's backward, from dh_t (everything reaching h_t):
// the z and n pre-activation gradients, and z dh, which reaches h_{t-1}
// directly. With linear_before_reset also r's (it needs only hn); otherwise
// r's waits for W_hn^T applied to dn (gru_reset_backward).
//   g, dz: gate-layout rows at the vector's offset; dz_h likewise (its own
//   layout), dn (Hp row at the vector's offset, not linear_before_reset)
template <class T>
RNNEXT_INLINE vec<T> gru_cell_backward(bool linear_before_reset, vec<T> dh, const T* g, vec<T> h_prev, vec<T> hn,
                                       T* dz, T* dz_h, T* dn, index_t n) {
  constexpr index_t nr = panel_width<T>();
  const vec<T> rg = load(g), zg = load(g + nr), ng = load(g + 2 * nr);
  const vec<T> dan = dh * (1.0f - zg) * (1.0f - ng * ng);
  const vec<T> daz = dh * (h_prev - ng) * (zg * (1.0f - zg));
  store_padded(dz + nr, daz, n);
  store_padded(dz + 2 * nr, dan, n);
  store_padded(dz_h + nr, daz, n);
  if (linear_before_reset) {
    const vec<T> dar = dan * hn * (rg * (1.0f - rg));
    store_padded(dz, dar, n);
    store_padded(dz_h, dar, n);
    store_padded(dz_h + 2 * nr, dan * rg, n);
  } else {
    store_padded(dn, dan, n);
  }
  return dh * zg;
}

// Row pointers of a GRU backward step, offset to the thread's first block.
template <class T>
struct GruBackwardRows {
  T* const* dz;            // rows at t-1 (at t in GruResetBackwardEpilogue); null: write dh0
  T* const* dz_h;
  T* const* dn;
  const T* const* gates;
  const T* const* h_prev;  // h_{t-2} rows (h_{t-1} in GruResetBackwardEpilogue)
  const T* const* hn;
  const T* const* dh_seq;  // rows at t-1, null entries when absent
  T* const* direct;        // carried z dh rows
  T* const* dh0;
  index_t units;
  bool linear_before_reset;
  index_t gates_h;  // panels per block in dz_h rows: 3, or 2
  index_t row0 = 0;
  RNNEXT_INLINE void set_rows(index_t i) { row0 = i; }
};

// acc = dz_h,t W_h: the gated part of dh_{t-1}. Adds the direct part and
// dh_seq[t-1] and runs the first part of step t-1's backward.
template <class T>
struct GruBackwardEpilogue : GruBackwardRows<T> {
  RNNEXT_INLINE void operator()(int r, index_t panel, const vec<T>* acc) {
    constexpr index_t nr = panel_width<T>();
    constexpr int lanes = simd<T>::lanes;
    const index_t i = this->row0 + r;
    for_unit_vectors<T>(panel, this->units, [&](int v, index_t col, index_t n) {
      vec<T> dh = acc[v] + load(this->direct[i] + col);
      if (this->dz[i] == nullptr) {
        store_n(this->dh0[i] + col, dh, n);
        return;
      }
      if (this->dh_seq[i]) dh += load_n(this->dh_seq[i] + col, n);
      const index_t at = panel * 3 * nr + v * lanes;
      const vec<T> hn = this->linear_before_reset ? load(this->hn[i] + col) : vec<T>{};
      store(this->direct[i] + col,
            gru_cell_backward<T>(this->linear_before_reset, dh, this->gates[i] + at, load_n(this->h_prev[i] + col, n),
                                 hn, this->dz[i] + at, this->dz_h[i] + panel * this->gates_h * nr + v * lanes,
                                 this->linear_before_reset ? nullptr : this->dn[i] + col, n));
    });
  }
};

// Not linear_before_reset: acc = dn_t W_hn = the gradient of r h at step t.
// Completes step t's backward: r's pre-activation gradient, and r acc into
// the direct part of dh_{t-1}.
template <class T>
struct GruResetBackwardEpilogue : GruBackwardRows<T> {
  RNNEXT_INLINE void operator()(int r, index_t panel, const vec<T>* acc) {
    constexpr index_t nr = panel_width<T>();
    constexpr int lanes = simd<T>::lanes;
    const index_t i = this->row0 + r;
    for_unit_vectors<T>(panel, this->units, [&](int v, index_t col, index_t n) {
      const vec<T> rg = load(this->gates[i] + panel * 3 * nr + v * lanes);
      const vec<T> dar = acc[v] * load_n(this->h_prev[i] + col, n) * (rg * (1.0f - rg));
      store_padded(this->dz[i] + panel * 3 * nr + v * lanes, dar, n);
      store_padded(this->dz_h[i] + panel * 2 * nr + v * lanes, dar, n);
      store(this->direct[i] + col, load(this->direct[i] + col) + acc[v] * rg);
    });
  }
};

template <class T>
void gru_backward_kernel(const GruBackwardArgs<T>& a) {
  constexpr index_t nr = panel_width<T>();
  const bool lbr = a.linear_before_reset;
  const index_t hidden = a.hidden_size, hp = round_up(hidden, nr), width = 3 * hp;
  const index_t gates_h = lbr ? 3 : 2, width_h = gates_h * hp;
  // The state step s of sequence b read.
  auto h_before = [&](index_t b, index_t s) {
    return s == 0 ? (a.h0 ? a.h0 + b * hidden : a.zeros) : a.h_seq + a.offset(b, a.time_of(b, s - 1));
  };

  const index_t max_length = longest_sequence(a);

  // Each sequence's last step, from dh_seq and dh_n alone.
  each_slice(a, [&](const TimeLoop& slice) {
    const index_t col0 = first_unit<T>(slice), col1 = end_unit<T>(slice);
    for (index_t b = a.batch_begin; b < a.batch_end; ++b) {
      const index_t len = a.length(b);
      for_slice_vectors<T>(col0, col1, [&](index_t col, index_t n) {
        vec<T> dh = load_n_or_zero(a.dh_n, b * hidden + col, n);
        if (len == 0) {
          store_n(a.dh0 + b * hidden + col, dh, n);
          return;
        }
        const index_t t = a.time_of(b, len - 1), r = a.row(b, t), block = col / nr, lane = col % nr;
        if (a.dh_seq) dh += load_n(a.dh_seq + a.offset(b, t) + col, n);
        const vec<T> hn = lbr ? load(a.hn + r * hp + col) : vec<T>{};
        store(a.direct + b * hp + col,
              gru_cell_backward<T>(lbr, dh, a.gates + r * width + block * 3 * nr + lane,
                                   load_n(h_before(b, len - 1) + col, n), hn, a.dz + r * width + block * 3 * nr + lane,
                                   a.dz_h + r * width_h + block * gates_h * nr + lane,
                                   lbr ? nullptr : a.dn + r * hp + col, n));
      });
    }
  });

  T* dz[kRowChunk];
  T* dz_h[kRowChunk];
  T* dn[kRowChunk];
  const T* gate_rows[kRowChunk];
  const T* h_prev[kRowChunk];
  const T* hn[kRowChunk];
  const T* dh_seq[kRowChunk];
  T* direct[kRowChunk];
  T* dh0[kRowChunk];
  const T* a_rows[kRowChunk];
  auto rows_of = [&](const TimeLoop& slice) {
    return GruBackwardRows<T>{dz,     dz_h, dn,  gate_rows, h_prev, hn, dh_seq, direct,
                              dh0, end_unit<T>(slice) - first_unit<T>(slice), lbr, gates_h};
  };
  auto row_a = [&](index_t i) { return a_rows[i]; };
  for (index_t s = max_length - 1; s >= 0; --s) {
    if (!lbr) {  // finish step s: dn_t W_hn -> r's gradient and r's share of dh_{t-1}
      each_slice(a, [&](const TimeLoop& slice) {
        const index_t col0 = first_unit<T>(slice);
        GruResetBackwardEpilogue<T> reset_back{rows_of(slice)};
        for_active_rows(a, s, a.reverse,
            [&](index_t i, index_t b, index_t t) {
              const index_t r = a.row(b, t);
              a_rows[i] = a.dn + r * hp;
              dz[i] = a.dz + r * width + col0 * 3;
              dz_h[i] = a.dz_h + r * width_h + col0 * 2;
              gate_rows[i] = a.gates + r * width + col0 * 3;
              h_prev[i] = h_before(b, s) + col0;
              direct[i] = a.direct + b * hp + col0;
            },
            [&](index_t count) { gemm_rows<T>(count, unit_blocks(a.w_hn_t, slice, 1), row_a, reset_back); });
      });
    }
    each_slice(a, [&](const TimeLoop& slice) {
      const index_t col0 = first_unit<T>(slice);
      GruBackwardEpilogue<T> step_back{rows_of(slice)};
      for_active_rows(a, s, a.reverse,
          [&](index_t i, index_t b, index_t t) {
            a_rows[i] = a.dz_h + a.row(b, t) * width_h;
            direct[i] = a.direct + b * hp + col0;
            dh0[i] = a.dh0 + b * hidden + col0;
            if (s == 0) {
              dz[i] = nullptr;
              return;
            }
            const index_t t_prev = a.time_of(b, s - 1), r = a.row(b, t_prev);
            dz[i] = a.dz + r * width + col0 * 3;
            dz_h[i] = a.dz_h + r * width_h + col0 * gates_h;
            dn[i] = lbr ? nullptr : a.dn + r * hp + col0;
            gate_rows[i] = a.gates + r * width + col0 * 3;
            h_prev[i] = h_before(b, s - 1) + col0;
            hn[i] = a.hn + r * hp + col0;
            dh_seq[i] = a.dh_seq ? a.dh_seq + a.offset(b, t_prev) + col0 : nullptr;
          },
          [&](index_t count) { gemm_rows<T>(count, unit_blocks(a.w_h_t, slice, 1), row_a, step_back); });
    });
  }
}
