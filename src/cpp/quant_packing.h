// Reduced-precision weights (API.md section 5) packed for the quantized
// micro-kernels (quant_gemm.h).
//
// The layout follows packing.h's column panels of 32 outputs (128 bytes of
// float32 results, so the cells' float32 epilogues read the tiles unchanged),
// but the reduction is grouped as the dot-product instructions consume it:
//   bfloat16: pairs    (k, k+1)      -> one 32-bit word per output  (VDPBF16PS, TDPBF16PS)
//   int8:     quads    (k .. k+3)    -> one 32-bit word per output  (VPDPBUSD,  TDPBUSD)
// Panel p, group g holds 32 words: word j is output p*32 + j's group g
// (zero past n and past k). The same layout serves every instruction set,
// the emulated ones included, so packing is done once, in baseline code.
#pragma once

#include <cstdint>

#include "aligned_buffer.h"
#include "common.h"

namespace rnnext {

enum class QuantKind : int { bfloat16 = 0, int8 = 1 };

// Outputs per panel: the float32 panel width.
constexpr index_t kQuantPanel = kPanelBytes / 4;

// Groups of the reduction are padded (with zeros) to a multiple of this: the
// depth of one AMX tile product, so every path reads the same whole tiles.
constexpr index_t kQuantDepth = 16;

// Reduction elements per 32-bit group.
constexpr index_t group_size(QuantKind kind) { return kind == QuantKind::int8 ? 4 : 2; }

// Largest reduction for int8: the int32 sums of u8 x s8 products (each at most
// 255 * 127) cannot overflow below this many terms.
constexpr index_t kInt8MaxInputs = 1 << 16;

// What a kernel needs to read quantized weights (plain data, no ownership).
struct QuantView {
  const std::uint32_t* data;
  index_t n;             // outputs
  index_t k;             // inputs
  index_t groups;        // ceil(k / group_size(kind)), rounded up to kQuantDepth
  index_t panels;        // ceil(n / 32)
  index_t panel_stride;  // words from one panel to the next (groups * 32)
  // int8 only, per output column (padded to whole panels), advancing with data:
  const float* scale;          // the column's weight scale
  const std::int32_t* offset;  // 128 * (sum of the column's int8 weights): what the u8 shift of the inputs adds
  QuantKind kind;
};

// Panels [p0, p1) only (packing.h's panel_range for quantized weights).
inline QuantView panel_range(QuantView w, index_t p0, index_t p1) {
  w.data += p0 * w.panel_stride;
  if (w.scale) w.scale += p0 * kQuantPanel;
  if (w.offset) w.offset += p0 * kQuantPanel;
  w.panels = p1 - p0;
  return w;
}

inline double weight_bytes(const QuantView& w) { return double(w.panels) * double(w.panel_stride) * 4.0; }

// Quantized weights for y = x W^T in the layout above. The rows of W are
// given already quantized (int8 with one float scale per row, or bfloat16 as
// 16-bit patterns); `source_row(c)` names W's row for output column c, or -1
// for a zero column (padding units of the gate layout).
class QuantMatrix {
 public:
  QuantMatrix() = default;
  template <class SourceRow>
  QuantMatrix(QuantKind kind, const void* w, const float* row_scale, index_t n, index_t k, index_t ld,
              SourceRow source_row)
      : QuantMatrix(kind, n, k) {
    for (index_t c = 0; c < n; ++c) pack_column(c, source_row(c), w, row_scale, ld);
  }
  QuantView view() const {
    return {data_.data(), n_, k_, groups_, panels_, groups_ * kQuantPanel, scale_.data(), offset_.data(), kind_};
  }
  index_t n() const { return n_; }
  index_t padded_n() const { return panels_ * kQuantPanel; }

 private:
  QuantMatrix(QuantKind kind, index_t n, index_t k);
  void pack_column(index_t c, index_t row, const void* w, const float* row_scale, index_t ld);
  QuantKind kind_ = QuantKind::bfloat16;
  index_t n_ = 0, k_ = 0, groups_ = 0, panels_ = 0;
  AlignedBuffer<std::uint32_t> data_;
  AlignedBuffer<float> scale_;
  AlignedBuffer<std::int32_t> offset_;
};

}  // namespace rnnext
