// The products of reduced-precision inference (API.md section 5): float32
// rows times bfloat16 or int8 weights (quant_packing.h), float32 results
// handed tile by tile to the same epilogues as the float32 kernels, so every
// cell's gate arithmetic, cell state and outputs stay float32.
//
// Each row of A is converted as the product reads it, one row block at a time:
//   bfloat16: rounded to nearest even (subnormals flushed to zero, as the
//             hardware's dot products treat them);
//   int8:     q = round(a * 127 / max|a|) per row (per sequence and step),
//             stored as q + 128 for the u8 x s8 dot products; the shift is
//             taken back with the column sums, and the tile dequantized with
//             the row's and the column's scales in the epilogue.
// So a row's result depends on that row alone: never on its batch, its row
// block or the thread count. int8 sums are exact int32; bfloat16 sums run in
// the hardware's order (odd element, then even, per pair, pairs in k order),
// which the emulation repeats.
// Included from kernels_impl.h inside an instruction-set namespace; native
// dot products where the file's flags provide them, emulated otherwise.
#pragma once

// (<cstring>, <vector> and <immintrin.h> come from kernels_impl.h, outside the namespace.)
#include "gemm.h"
#include "simd.h"

#if RNNEXT_VBYTES == 64 && defined(__AVX512VNNI__)
#define RNNEXT_NATIVE_INT8 1
#endif
#if RNNEXT_VBYTES == 64 && defined(__AVX512BF16__)
#define RNNEXT_NATIVE_BF16 1
#endif

using ivec = simd<float>::I;

RNNEXT_INLINE ivec splat_word(std::uint32_t w) {
  return std::int32_t(w) - ivec{};
}

// acc += the four u8 x s8 products of each lane's bytes (a: one word, every lane).
RNNEXT_INLINE ivec dot_u8s8(ivec acc, std::uint32_t a, ivec b) {
#ifdef RNNEXT_NATIVE_INT8
  return (ivec)_mm512_dpbusd_epi32((__m512i)acc, _mm512_set1_epi32(std::int32_t(a)), (__m512i)b);
#else
  const ivec b0 = (b << 24) >> 24, b1 = (b << 16) >> 24, b2 = (b << 8) >> 24, b3 = b >> 24;
  return acc + std::int32_t(a & 255) * b0 + std::int32_t((a >> 8) & 255) * b1 +
         std::int32_t((a >> 16) & 255) * b2 + std::int32_t(a >> 24) * b3;
#endif
}

RNNEXT_INLINE vec<float> bits_to_float(ivec x) {
  vec<float> f;
  std::memcpy(&f, &x, sizeof(f));
  return f;
}

RNNEXT_INLINE float word_to_float(std::uint32_t x) {
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

// acc += odd x odd, then += even x even, for each lane's pair of bfloat16
// (each product exact in float32; two roundings, as VDPBF16PS).
RNNEXT_INLINE vec<float> dot_bf16(vec<float> acc, std::uint32_t a, ivec b) {
#ifdef RNNEXT_NATIVE_BF16
  return (vec<float>)_mm512_dpbf16_ps((__m512)acc, (__m512bh)_mm512_set1_epi32(std::int32_t(a)), (__m512bh)b);
#else
  const vec<float> b_odd = bits_to_float(b & std::int32_t(0xFFFF0000u)), b_even = bits_to_float(b << 16);
  acc = acc + word_to_float(a & 0xFFFF0000u) * b_odd;
  return acc + word_to_float(a << 16) * b_even;
#endif
}

// float32 -> bfloat16 bits, rounded to nearest even; subnormals to signed
// zero, NaN stays NaN (quiet).
RNNEXT_INLINE std::uint16_t to_bfloat16(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7F800000u) == 0) return std::uint16_t((u >> 16) & 0x8000u);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return std::uint16_t((u >> 16) | 0x40u);
  return std::uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// round(x) to nearest even, as lrintf under the default rounding mode, lane by lane.
RNNEXT_INLINE ivec round_to_int(vec<float> x) {
#if RNNEXT_VBYTES == 64 && defined(__AVX512F__)
  return (ivec)_mm512_cvtps_epi32((__m512)x);
#elif RNNEXT_VBYTES == 32 && defined(__AVX2__)
  return (ivec)_mm256_cvtps_epi32((__m256)x);
#elif RNNEXT_VBYTES == 16 && defined(__SSE2__)
  return (ivec)_mm_cvtps_epi32((__m128)x);
#else
  ivec r;
  for (int i = 0; i < simd<float>::lanes; ++i) r[i] = std::int32_t(__builtin_lrintf(x[i]));
  return r;
#endif
}

// float32 -> bfloat16 bits lane by lane (to_bfloat16's rule), in the low halves.
RNNEXT_INLINE simd<float>::U to_bfloat16(vec<float> x) {
  using U = simd<float>::U;
  U u;
  std::memcpy(&u, &x, sizeof(u));
  const U rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  const U zero = (u >> 16) & 0x8000u, nan = (u >> 16) | 0x40u;
  U out = (u & 0x7F800000u) == 0 ? zero : rounded;
  return (u & 0x7FFFFFFFu) > 0x7F800000u ? nan : out;
}

// One row of A (k values, `step` apart) as the product's operand: `groups`
// words. Returns the row's scale (int8; NaN when the row holds Inf or NaN,
// so its results are NaN as in float32), or 1 (bfloat16). Contiguous rows
// run on vectors, with the same results as the scalar rule.
inline float quantize_row(QuantKind kind, const float* a, index_t k, index_t step, index_t groups,
                          std::uint32_t* out) {
  constexpr int lanes = simd<float>::lanes;
  const index_t whole = step == 1 ? k / lanes * lanes : 0;
  if (kind == QuantKind::bfloat16) {
    std::uint16_t* h = reinterpret_cast<std::uint16_t*>(out);
    for (index_t i = 0; i < whole; i += lanes) {
      const simd<float>::U bits = to_bfloat16(load(a + i));
      for (int j = 0; j < lanes; ++j) h[i + j] = std::uint16_t(bits[j]);
    }
    for (index_t i = whole; i < k; ++i) h[i] = to_bfloat16(a[i * step]);
    for (index_t i = k; i < 2 * groups; ++i) h[i] = 0;
    return 1.0f;
  }
  vec<float> mv{};
  ivec bad{};
  for (index_t i = 0; i < whole; i += lanes) {
    const vec<float> v = load(a + i);
    const vec<float> av = select(v < 0.0f, -v, v);
    bad |= !(av <= 3.4028235e38f);
    mv = select(av > mv, av, mv);
  }
  float m = 0.0f;
  bool finite = true;
  for (int j = 0; j < lanes; ++j) {
    m = mv[j] > m ? mv[j] : m;
    finite = finite && bad[j] == 0;
  }
  for (index_t i = whole; i < k; ++i) {
    const float v = __builtin_fabsf(a[i * step]);
    finite = finite && v <= 3.4028235e38f;
    m = v > m ? v : m;
  }
  std::uint8_t* q = reinterpret_cast<std::uint8_t*>(out);
  if (!finite || m == 0.0f) {
    std::memset(q, 128, std::size_t(4 * groups));
    return finite ? 0.0f : __builtin_nanf("");
  }
  const float inv = 127.0f / m;
  for (index_t i = 0; i < whole; i += lanes) {
    ivec r = round_to_int(load(a + i) * inv);
    r = select(r > 127, ivec{} + 127, r);
    r = select(r < -127, ivec{} - 127, r);
    r += 128;
    for (int j = 0; j < lanes; ++j) q[i + j] = std::uint8_t(r[j]);
  }
  for (index_t i = whole; i < k; ++i) {
    long r = __builtin_lrintf(a[i * step] * inv);  // round to nearest even
    r = r > 127 ? 127 : r < -127 ? -127 : r;
    q[i] = std::uint8_t(r + 128);
  }
  for (index_t i = k; i < 4 * groups; ++i) q[i] = 128;
  return m / 127.0f;
}

// An int8 tile's float32 values: the u8 shift taken back with the column
// sums, then the row's and the columns' scales (col: the vector's first).
RNNEXT_INLINE vec<float> dequantize(ivec sums, const QuantView& w, index_t col, float row_scale) {
  ivec off;
  std::memcpy(&off, w.offset + col, sizeof(off));
  return __builtin_convertvector(sums - off, vec<float>) * (row_scale * load(w.scale + col));
}

// rows x (panels * 32) tile over quantized rows a[r] (w.groups words each);
// int8 is w.kind, as a template argument: one function per precision keeps
// each one's accumulators in registers (in one function GCC kept the int8
// ones in memory and stored them at every group).
template <bool int8, int rows, int panels, class Epilogue>
RNNEXT_INLINE void quant_tile(const std::uint32_t* const* a, const float* a_scale, const QuantView& w,
                              index_t first_panel, Epilogue& epilogue) {
  constexpr int lanes = simd<float>::lanes;
  constexpr int nv = int(kQuantPanel) / lanes;
  using Acc = std::conditional_t<int8, ivec, vec<float>>;
  const std::uint32_t* panel = w.data + first_panel * w.panel_stride;
  Acc acc[rows][panels * nv];
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < panels * nv; ++j) acc[r][j] = Acc{};
#pragma GCC unroll 2
  for (index_t g = 0; g < w.groups; ++g) {
    ivec b[panels * nv];
    for (int p = 0; p < panels; ++p)
      for (int v = 0; v < nv; ++v)
        std::memcpy(&b[p * nv + v], panel + p * w.panel_stride + g * kQuantPanel + v * lanes, sizeof(ivec));
    for (int r = 0; r < rows; ++r) {
      const std::uint32_t word = a[r][g];
      for (int j = 0; j < panels * nv; ++j) {
        if constexpr (int8) acc[r][j] = dot_u8s8(acc[r][j], word, b[j]);
        else acc[r][j] = dot_bf16(acc[r][j], word, b[j]);
      }
    }
  }
  // Unrolled: with acc indexed by a loop counter here, GCC kept it in
  // memory and stored every accumulator at every group.
#pragma GCC unroll 16
  for (int r = 0; r < rows; ++r)
#pragma GCC unroll 16
    for (int p = 0; p < panels; ++p) {
      Acc sums[nv];  // a copy: see gemm.h's gemm_tile
      for (int v = 0; v < nv; ++v) sums[v] = acc[r][p * nv + v];
      vec<float> tile[nv];
      for (int v = 0; v < nv; ++v) {
        if constexpr (int8) tile[v] = dequantize(sums[v], w, (first_panel + p) * kQuantPanel + v * lanes, a_scale[r]);
        else tile[v] = sums[v];
      }
      epilogue(r, first_panel + p, tile);
    }
}

template <bool int8, int rows, int panels, class Epilogue>
RNNEXT_INLINE void quant_panels(const std::uint32_t* const* a, const float* a_scale, const QuantView& w, index_t p,
                                index_t end, Epilogue& epilogue) {
  for (; p + panels <= end; p += panels) quant_tile<int8, rows, panels>(a, a_scale, w, p, epilogue);
  if constexpr (panels > 1) quant_panels<int8, rows, panels / 2>(a, a_scale, w, p, end, epilogue);
}

template <bool int8, int rows, class Epilogue>
RNNEXT_INLINE void quant_row_blocks(index_t i, index_t m, index_t row0, const std::uint32_t* words,
                                    const float* scales, const QuantView& w, index_t g0, index_t g1,
                                    Epilogue& epilogue) {
  constexpr int nv = int(kQuantPanel) / simd<float>::lanes;
  constexpr int per_row = tile_shape<float>::accumulators / nv;
  constexpr int panels = floor_pow2(per_row / rows > 1 ? per_row / rows : 1);
  for (; i + rows <= m; i += rows) {
    const std::uint32_t* a[rows];
    for (int r = 0; r < rows; ++r) a[r] = words + (i + r) * w.groups;
    epilogue.set_rows(row0 + i);
    quant_panels<int8, rows, panels>(a, scales + i, w, g0, g1, epilogue);
  }
  if constexpr (rows > 1) quant_row_blocks<int8, rows / 2>(i, m, row0, words, scales, w, g0, g1, epilogue);
}

// Rows converted per pass: at least this many, and as many as fit in about
// this many bytes of words (kept in L2 while every weight panel passes by once).
constexpr index_t kQuantRowChunk = 128;
constexpr index_t kQuantChunkBytes = 1 << 20;

#ifdef __AMX_TILE__
// AMX: 32 rows x 32 columns (one panel) per block, as 2 x 2 tiles of 16 x 16
// (tmm0-3 the sums, tmm4-5 two 16-row blocks of A, tmm6-7 the panel's two
// 16-column halves), 16 groups of the reduction per tile product. Integer
// sums are exact, so these tiles give the vector path's results bit for bit
// (int8); bfloat16 tiles sum pairs in their own order (see quant_path).
struct alignas(64) AmxConfig {
  std::uint8_t palette = 1, start_row = 0, reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
  AmxConfig() {
    for (int t = 0; t < 8; ++t) {
      colsb[t] = 64;
      rows[t] = 16;
    }
  }
};

constexpr index_t kAmxDepth = 16;  // groups per tile product (64 bytes of a row)

// Rows a product runs on tiles, of the `count` in a chunk. int8: the blocks
// of 16 (tiles and VPDPBUSD give the same exact sums, so where a row falls
// changes nothing; fewer rows are faster on vectors). bfloat16: every row,
// the last block padded: TDPBF16PS sums a tile's pairs more precisely than
// VDPBF16PS does pair by pair (measured: 55 of 256 sums agree), so a row's
// result would depend on the rows beside it.
RNNEXT_INLINE index_t rows_on_tiles(QuantKind kind, index_t count) {
  return kind == QuantKind::bfloat16 ? round_up(count, 16) : count / 16 * 16;
}

// One panel for rows [0, 16 * blocks) of the chunk: sums into `out` (32 x 32 words).
template <int blocks>
RNNEXT_INLINE void amx_panel(const std::uint32_t* words, index_t groups, const std::uint32_t* panel, bool int8,
                             std::int32_t* out) {
  _tile_zero(0);
  _tile_zero(1);
  if (blocks == 2) {
    _tile_zero(2);
    _tile_zero(3);
  }
  const index_t a_stride = groups * 4;
  for (index_t g = 0; g < groups; g += kAmxDepth) {
    _tile_loadd(4, words + g, a_stride);
    if (blocks == 2) _tile_loadd(5, words + 16 * groups + g, a_stride);
    _tile_loadd(6, panel + g * kQuantPanel, kQuantPanel * 4);
    _tile_loadd(7, panel + g * kQuantPanel + 16, kQuantPanel * 4);
    if (int8) {
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 7);
      if (blocks == 2) {
        _tile_dpbusd(2, 5, 6);
        _tile_dpbusd(3, 5, 7);
      }
    } else {
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      if (blocks == 2) {
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
    }
  }
  _tile_stored(0, out, 128);
  _tile_stored(1, out + 16, 128);
  if (blocks == 2) {
    _tile_stored(2, out + 16 * 32, 128);
    _tile_stored(3, out + 16 * 32 + 16, 128);
  }
}

// Rows [0, rows) of the chunk (a multiple of 16) over panels [g0, g1); the
// epilogue sees only the first `valid` (the chunk's rows; past them, padding).
template <class Epilogue>
RNNEXT_INLINE void amx_rows(index_t rows, index_t valid, index_t row0, const std::uint32_t* words,
                            const float* scales, const QuantView& w, index_t g0, index_t g1, Epilogue& epilogue) {
  constexpr int lanes = simd<float>::lanes;
  constexpr int nv = int(kQuantPanel) / lanes;
  alignas(64) std::int32_t sums[32 * 32];
  const bool int8 = w.kind == QuantKind::int8;
  for (index_t i = 0; i < rows; i += 32) {
    const int count = rows - i >= 32 ? 32 : 16;
    epilogue.set_rows(row0 + i);
    for (index_t p = g0; p < g1; ++p) {
      const std::uint32_t* panel = w.data + p * w.panel_stride;
      if (count == 32) amx_panel<2>(words + i * w.groups, w.groups, panel, int8, sums);
      else amx_panel<1>(words + i * w.groups, w.groups, panel, int8, sums);
      const index_t col = p * kQuantPanel;
      for (int r = 0; r < count && i + r < valid; ++r) {
        vec<float> tile[nv];
        for (int v = 0; v < nv; ++v) {
          ivec acc;
          std::memcpy(&acc, sums + r * 32 + v * lanes, sizeof(acc));
          tile[v] = int8 ? dequantize(acc, w, col + v * lanes, scales[i + r]) : bits_to_float(acc);
        }
        epilogue(int(r), p, tile);
      }
    }
  }
}

// Whether this thread may use the tiles (the process asked the kernel for
// them: dispatch.cpp) and has loaded the configuration.
struct AmxScope {
  AmxScope() {
    static const AmxConfig config;
    _tile_loadconfig(&config);
  }
  // Released after every product: another library's tiles in this thread
  // (oneDNN's) have their own configuration, and released tiles cost a
  // context switch nothing.
  ~AmxScope() { _tile_release(); }
};
#endif

// The quantized counterpart of gemm_rows (gemm.h): every tile of an
// (m rows) x (all panels) product; row_a(i) points to row i of A (float32,
// w.k elements, a_step apart). With AMX, blocks of 16 and 32 rows run on
// tiles, the rest on vectors.
template <class T, class Epilogue, class RowA>
RNNEXT_INLINE void gemm_rows(index_t m, const QuantView& w, RowA row_a, Epilogue& epilogue, index_t a_step = 1) {
  static_assert(sizeof(T) == 4, "quantized products have float32 rows");
  const index_t by_bytes = kQuantChunkBytes / (4 * (w.groups > 0 ? w.groups : 1));
  const index_t most = by_bytes > kQuantRowChunk ? by_bytes : kQuantRowChunk;
  const index_t chunk = m < most ? m : most;
  // Room for a last tile of 16 rows, whatever the chunk holds. A few rows
  // (a streaming step) fit on the stack; larger chunks use a per-thread
  // buffer grown once to the largest seen, so a kernel call does not
  // allocate after its first.
  constexpr index_t kStackWords = 4096;
  alignas(64) std::uint32_t stack_words[kStackWords];
  alignas(64) float stack_scales[64];
  std::uint32_t* words = stack_words;
  float* scales = stack_scales;
  const index_t need = round_up(chunk, 16) * w.groups;
  if (need > kStackWords || chunk > 64) {
    static thread_local std::vector<std::uint32_t> heap_words;
    static thread_local std::vector<float> heap_scales;
    if (index_t(heap_words.size()) < need) heap_words.resize(std::size_t(need));
    if (index_t(heap_scales.size()) < chunk) heap_scales.resize(std::size_t(chunk));
    words = heap_words.data();
    scales = heap_scales.data();
  }
  const index_t panel_bytes = w.panel_stride * 4;
  const index_t group = panel_bytes > 0 && panel_bytes < kPanelGroupBytes ? kPanelGroupBytes / panel_bytes : 1;
#ifdef __AMX_TILE__
  const bool tiles = w.groups % kAmxDepth == 0 && rows_on_tiles(w.kind, m) > 0;
  std::optional<AmxScope> scope;
  if (tiles) scope.emplace();
#endif
  for (index_t r0 = 0; r0 < m; r0 += chunk) {
    const index_t count = m - r0 < chunk ? m - r0 : chunk;
    for (index_t i = 0; i < count; ++i)
      scales[i] = quantize_row(w.kind, row_a(r0 + i), w.k, a_step, w.groups, words + i * w.groups);
    index_t on_tiles = 0;
#ifdef __AMX_TILE__
    if (tiles) on_tiles = rows_on_tiles(w.kind, count);
#endif
    for (index_t g0 = 0; g0 < w.panels; g0 += group) {
      const index_t g1 = g0 + group < w.panels ? g0 + group : w.panels;
#ifdef __AMX_TILE__
      if (on_tiles) amx_rows(on_tiles, count, r0, words, scales, w, g0, g1, epilogue);
#endif
      const index_t first = on_tiles < count ? on_tiles : count;
      if (w.kind == QuantKind::int8)
        quant_row_blocks<true, tile_shape<float>::rows>(first, count, r0, words, scales, w, g0, g1, epilogue);
      else
        quant_row_blocks<false, tile_shape<float>::rows>(first, count, r0, words, scales, w, g0, g1, epilogue);
    }
  }
}
