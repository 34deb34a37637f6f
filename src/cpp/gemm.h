// Register-blocked micro-kernel over packed weights, with a pluggable
// epilogue that receives each finished tile while it is still in registers
// (bias, activation, or a cell's gate arithmetic).
// Included from kernels_impl.h inside an instruction-set namespace.
#pragma once

#include "simd.h"

template <class T>
struct tile_shape {
  static constexpr int lanes = simd<T>::lanes;
  static constexpr int vectors_per_panel = int(panel_width<T>()) / lanes;
  // Accumulator vectors per tile: 16 of AVX-512's 32 registers, 8 of the 16
  // of SSE/AVX2. Enough independent FMA chains to hide their latency, and
  // each loaded weight vector is reused by `rows` rows.
  static constexpr int accumulators = RNNEXT_VBYTES == 64 ? 16 : 8;
  static constexpr int rows = vectors_per_panel >= accumulators ? 1 : accumulators / vectors_per_panel;  // MR
};

// Weight panels processed together before moving to the next rows: about
// this many bytes of them, so they stay in L2 while every row passes by.
constexpr index_t kPanelGroupBytes = 512 * 1024;

// rows x (panels * NR) tile:  acc[r] = a[r, 0:k] · W^T[0:k, tile columns].
// Each output lane is a plain k-ordered sum of products, whatever the tile
// shape, so results do not depend on how rows are grouped.
//   a:      `rows` pointers to k elements each, a_step apart (1: contiguous rows;
//           more: columns of a row-major matrix, read as rows without a transpose)
//   panel:  the first packed panel (k * NR elements); the next ones follow
template <class T, int rows, int panels, class Epilogue>
RNNEXT_INLINE void gemm_tile(const T* const* a, index_t k, index_t a_step, const T* panel, index_t panel_size,
                             index_t first_panel, Epilogue& epilogue) {
  using V = vec<T>;
  constexpr int nv = tile_shape<T>::vectors_per_panel;
  constexpr index_t nr = panel_width<T>();
  constexpr int lanes = simd<T>::lanes;
  V acc[rows][panels * nv];
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < panels * nv; ++j) acc[r][j] = V{};
#pragma GCC unroll 4
  for (index_t kk = 0; kk < k; ++kk) {
    V b[panels * nv];
    for (int p = 0; p < panels; ++p)
      for (int v = 0; v < nv; ++v) b[p * nv + v] = load(panel + p * panel_size + kk * nr + v * lanes);
    for (int r = 0; r < rows; ++r) {
      const V av = splat(a[r][kk * a_step]);
      for (int j = 0; j < panels * nv; ++j) acc[r][j] += av * b[j];
    }
  }
  // The epilogue gets a copy: were acc's own address taken, GCC would keep
  // the accumulators in memory and store every one of them at every k
  // (measured: the LSTM's recurrent product at 67 GFLOP/s on one core).
  for (int r = 0; r < rows; ++r)
    for (int p = 0; p < panels; ++p) {
      V tile[nv];
      for (int v = 0; v < nv; ++v) tile[v] = acc[r][p * nv + v];
      epilogue(r, first_panel + p, tile);
    }
}

constexpr int floor_pow2(int n) { return n >= 2 ? 2 * floor_pow2(n / 2) : 1; }

// Panels [p, end) for one block of `rows` rows, `panels` at a time, then
// halving for the leftover panels.
template <class T, int rows, int panels, class Epilogue>
RNNEXT_INLINE void gemm_panels(const T* const* a, index_t a_step, const PackedView<T>& w, index_t p, index_t end,
                               Epilogue& epilogue) {
  for (; p + panels <= end; p += panels)
    gemm_tile<T, rows, panels>(a, w.k, a_step, w.data + p * w.panel_stride, w.panel_stride, p, epilogue);
  if constexpr (panels > 1) gemm_panels<T, rows, panels / 2>(a, a_step, w, p, end, epilogue);
}

// Rows [i, m) in blocks of `rows`, then halving for the leftover rows. Fewer
// rows take more panels at once, so every tile keeps all its accumulators
// busy (a single row, the streaming case, runs 8 panels on AVX-512). Every
// tile sums in plain k order, so a row's result does not depend on the block
// it fell in, nor therefore on the thread count.
template <class T, int rows, class Epilogue, class RowA>
RNNEXT_INLINE void gemm_row_blocks(index_t i, index_t m, const PackedView<T>& w, index_t g0, index_t g1,
                                   RowA& row_a, index_t a_step, Epilogue& epilogue) {
  constexpr int nv = tile_shape<T>::vectors_per_panel;
  constexpr int per_row = tile_shape<T>::accumulators / nv;
  constexpr int panels = floor_pow2(per_row / rows > 1 ? per_row / rows : 1);  // halves evenly
  for (; i + rows <= m; i += rows) {
    const T* a[rows];
    for (int r = 0; r < rows; ++r) a[r] = row_a(i + r);
    epilogue.set_rows(i);
    gemm_panels<T, rows, panels>(a, a_step, w, g0, g1, epilogue);
  }
  if constexpr (rows > 1) gemm_row_blocks<T, rows / 2>(i, m, w, g0, g1, row_a, a_step, epilogue);
}

// Runs the epilogue over every tile of an (m rows) x (all panels) product;
// row_a(i) points to row i of A (w.k elements, a_step apart).
template <class T, class Epilogue, class RowA>
RNNEXT_INLINE void gemm_rows(index_t m, const PackedView<T>& w, RowA row_a, Epilogue& epilogue,
                             index_t a_step = 1) {
  const index_t panel_bytes = w.k * kPanelBytes;
  const index_t group = panel_bytes > 0 && panel_bytes < kPanelGroupBytes ? kPanelGroupBytes / panel_bytes : 1;
  for (index_t g0 = 0; g0 < w.panels; g0 += group) {
    const index_t g1 = g0 + group < w.panels ? g0 + group : w.panels;
    gemm_row_blocks<T, tile_shape<T>::rows>(0, m, w, g0, g1, row_a, a_step, epilogue);
  }
}

// Writes n columns of a row from a panel's accumulators (+ an addend row,
// padded, or null), through a vector function f.
template <class T, class F>
RNNEXT_INLINE void store_panel(T* out, index_t panel, index_t n, const vec<T>* acc, const T* addend,
                               F f) {
  constexpr int nv = tile_shape<T>::vectors_per_panel;
  constexpr int lanes = simd<T>::lanes;
  const index_t col0 = panel * panel_width<T>();
  for (int v = 0; v < nv; ++v) {
    const index_t col = col0 + v * lanes;
    if (col >= n) break;
    vec<T> z = acc[v];
    if (addend) z += load(addend + col);
    z = f(z);
    if (col + lanes <= n) store(out + col, z);
    else store_partial(out + col, z, n - col);
  }
}

struct identity_fn {
  template <class V>
  RNNEXT_INLINE V operator()(V x) const { return x; }
};

// c[r] = acc + bias, for dense layers and the input projection.
template <class T, class Args>
struct BiasEpilogue {
  const Args& args;
  index_t row0 = 0;
  RNNEXT_INLINE void set_rows(index_t i) { row0 = i; }
  RNNEXT_INLINE void operator()(int r, index_t panel, const vec<T>* acc) {
    store_panel(args.c + (row0 + r) * args.ldc, panel, args.n_store, acc, args.bias, identity_fn{});
  }
};

// c[r] += acc: a later block of a cache-blocked reduction.
template <class T, class Args>
struct AccumulateEpilogue {
  const Args& args;
  index_t row0 = 0;
  RNNEXT_INLINE void set_rows(index_t i) { row0 = i; }
  RNNEXT_INLINE void operator()(int r, index_t panel, const vec<T>* acc) {
    constexpr int nv = tile_shape<T>::vectors_per_panel;
    constexpr int lanes = simd<T>::lanes;
    T* out = args.c + (row0 + r) * args.ldc;
    for (int v = 0; v < nv; ++v) {
      const index_t col = panel * panel_width<T>() + v * lanes;
      if (col >= args.n_store) break;
      const index_t n = args.n_store - col < lanes ? args.n_store - col : lanes;
      if (n == lanes) store(out + col, load(out + col) + acc[v]);
      else store_partial(out + col, load_partial(out + col, n) + acc[v], n);
    }
  }
};

template <class T, class W>
void dense_kernel(const DenseArgs<T, W>& args) {
  auto row = [&](index_t i) { return args.a + i * args.lda; };
  if (args.accumulate) {
    AccumulateEpilogue<T, DenseArgs<T, W>> epilogue{args};
    gemm_rows<T>(args.m, args.w, row, epilogue, args.a_step);
  } else {
    BiasEpilogue<T, DenseArgs<T, W>> epilogue{args};
    gemm_rows<T>(args.m, args.w, row, epilogue, args.a_step);
  }
}
