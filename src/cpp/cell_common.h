// What the cells' time loops share: gathering the rows still running at a
// step, and loads and stores of a row's last, partial vector.
// Included from kernels_impl.h inside an instruction-set namespace.
#pragma once

#include "simd.h"

// Rows gathered per product call: enough to fill the micro-kernel's row
// blocks, few enough for the pointer arrays to live on the stack.
constexpr index_t kRowChunk = 64;

// For step s of the sequences [b0, b1): calls add(slot, b, t) for each one
// still running (t: the time it reads at step s; from its end when reversed)
// and flush(count) after every kRowChunk of them and at the end.
template <class Length, class Add, class Flush>
RNNEXT_INLINE void for_active_rows(index_t s, index_t b0, index_t b1, Length length, bool reverse, Add add,
                                   Flush flush) {
  index_t count = 0;
  for (index_t b = b0; b < b1; ++b) {
    const index_t len = length(b);
    if (s >= len) continue;
    add(count, b, reverse ? len - 1 - s : s);
    if (++count == kRowChunk) {
      flush(count);
      count = 0;
    }
  }
  if (count > 0) flush(count);
}

// Calls f(v, col, n) for each vector v of a unit block's panel whose first
// unit col (counted from the slice's first unit) is one of the slice's
// `units`; n = units - col, a whole vector when n >= lanes.
template <class T, class F>
RNNEXT_INLINE void for_unit_vectors(index_t block, index_t units, F f) {
  constexpr int nv = int(panel_width<T>()) / simd<T>::lanes;
  for (int v = 0; v < nv; ++v) {
    const index_t col = block * panel_width<T>() + v * simd<T>::lanes;
    if (col >= units) break;
    f(v, col, units - col);
  }
}

// The first n lanes of p (n >= lanes: a whole vector), zero in the others.
template <class T>
RNNEXT_INLINE vec<T> load_n(const T* p, index_t n) {
  return n >= simd<T>::lanes ? load(p) : load_partial(p, n);
}

// Stores the first n lanes (an unpadded, user-visible row).
template <class T>
RNNEXT_INLINE void store_n(T* p, vec<T> v, index_t n) {
  if (n >= simd<T>::lanes) store(p, v);
  else store_partial(p, v, n);
}

// Stores a whole vector of a padded workspace row with the lanes past n set
// to zero: padding units then hold zeros whatever the data (0 * Inf in a
// padding lane of the input projection is NaN), so they never reach a
// gradient through the products that read whole padded rows.
template <class T>
RNNEXT_INLINE void store_padded(T* p, vec<T> v, index_t n) {
  store(p, v);
  for (index_t i = n; i < simd<T>::lanes; ++i) p[i] = T(0);
}
