// Types, constants and size arithmetic shared by every part of the core.
// Baseline code: no SIMD, no Python.
#pragma once

#include <cstdint>
#include <limits>
#include <stdexcept>

namespace rnnext {

// Every size, stride and offset is 64-bit: B*T*H overflows 32 bits long before
// memory runs out.
using index_t = std::int64_t;

enum class Activation : int { tanh = 0, sigmoid = 1, relu = 2 };

// Packed weight matrices are stored as column panels of this many bytes
// (32 floats, 16 doubles): two AVX-512 vectors, four AVX2 vectors, eight SSE
// vectors. The same layout serves every instruction set, so packing is done
// once, in baseline code, whatever kernel later reads it.
constexpr index_t kPanelBytes = 128;
template <class T>
constexpr index_t panel_width() { return kPanelBytes / index_t(sizeof(T)); }

constexpr index_t round_up(index_t n, index_t multiple) {
  return (n + multiple - 1) / multiple * multiple;
}

// a * b, or std::length_error (reported to Python as ValueError) when the
// product does not fit: no buffer size may wrap around.
inline index_t checked_mul(index_t a, index_t b) {
  index_t out;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &out))
    throw std::length_error("array size overflows a 64-bit integer");
  return out;
}

}  // namespace rnnext
