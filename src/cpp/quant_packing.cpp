#include "quant_packing.h"

#include <cstring>

namespace rnnext {

// Zeroed: padding columns and the last group's padding inputs stay zero.
QuantMatrix::QuantMatrix(QuantKind kind, index_t n, index_t k)
    : kind_(kind), n_(n), k_(k), groups_(round_up((k + group_size(kind) - 1) / group_size(kind), kQuantDepth)),
      panels_((n + kQuantPanel - 1) / kQuantPanel),
      data_(checked_mul(checked_mul(panels_, kQuantPanel), groups_)),
      scale_(kind == QuantKind::int8 ? panels_ * kQuantPanel : 0),
      offset_(kind == QuantKind::int8 ? panels_ * kQuantPanel : 0) {
  if (kind == QuantKind::int8 && k > kInt8MaxInputs)
    throw std::length_error("int8 weights with more than 65536 inputs per output would overflow int32 sums");
}

void QuantMatrix::pack_column(index_t c, index_t row, const void* w, const float* row_scale, index_t ld) {
  if (row < 0) return;
  std::uint32_t* out = data_.data() + (c / kQuantPanel) * groups_ * kQuantPanel + c % kQuantPanel;
  const index_t per = group_size(kind_);
  if (kind_ == QuantKind::int8) {
    const std::int8_t* src = static_cast<const std::int8_t*>(w) + row * ld;
    std::int32_t sum = 0;
    for (index_t g = 0; g * per < k_; ++g) {
      std::uint8_t bytes[4] = {0, 0, 0, 0};
      for (index_t i = 0; i < per && g * per + i < k_; ++i) {
        bytes[i] = std::uint8_t(src[g * per + i]);
        sum += src[g * per + i];
      }
      std::memcpy(out + g * kQuantPanel, bytes, 4);
    }
    scale_.data()[c] = row_scale[row];
    offset_.data()[c] = 128 * sum;
  } else {
    const std::uint16_t* src = static_cast<const std::uint16_t*>(w) + row * ld;
    for (index_t g = 0; 2 * g < k_; ++g) {  // the groups past k stay zero
      const std::uint32_t lo = src[2 * g], hi = 2 * g + 1 < k_ ? src[2 * g + 1] : 0;
      out[g * kQuantPanel] = lo | hi << 16;
    }
  }
}

}  // namespace rnnext
