// What the cells' time loops share: one thread's slice of the hidden units,
// gathering the rows still running at a step, and loads and stores of a
// row's last, partial vector.
// Included from kernels_impl.h inside an instruction-set namespace.
#pragma once

#include "simd.h"

// Rows gathered per product call: enough to fill the micro-kernel's row
// blocks, few enough for the pointer arrays to live on the stack.
constexpr index_t kRowChunk = 64;

// The hidden units [first_unit, end_unit) of a thread's unit blocks
// [panel_begin, panel_end).
template <class T>
RNNEXT_INLINE index_t first_unit(const TimeLoop& a) { return a.panel_begin * panel_width<T>(); }
template <class T>
RNNEXT_INLINE index_t end_unit(const TimeLoop& a) {
  const index_t end = a.panel_end * panel_width<T>();
  return end < a.hidden_size ? end : a.hidden_size;
}

// The thread's unit blocks of a packed weight whose unit blocks hold `gates`
// panels each (gate_layout.h): the only panels its products read.
template <class W>
RNNEXT_INLINE W unit_blocks(const W& w, const TimeLoop& a, index_t gates) {
  return panel_range(w, a.panel_begin * gates, a.panel_end * gates);
}

// The longest of the thread's sequences: the steps its loop visits.
RNNEXT_INLINE index_t longest_sequence(const TimeLoop& a) {
  if (a.lengths == nullptr) return a.batch_end > a.batch_begin ? a.steps : 0;
  index_t longest = 0;
  for (index_t b = a.batch_begin; b < a.batch_end; ++b) longest = a.lengths[b] > longest ? a.lengths[b] : longest;
  return longest;
}

// For step s of the thread's sequences: calls add(slot, b, t) for each one
// still running (t: the time it reads at step s, from its end when
// `reverse`) and flush(count) after every kRowChunk of them and at the end.
template <class Add, class Flush>
RNNEXT_INLINE void for_active_rows(const TimeLoop& a, index_t s, bool reverse, Add add, Flush flush) {
  index_t count = 0;
  for (index_t b = a.batch_begin; b < a.batch_end; ++b) {
    const index_t len = a.length(b);
    if (s >= len) continue;
    add(count, b, reverse ? len - 1 - s : s);
    if (++count == kRowChunk) {
      flush(count);
      count = 0;
    }
  }
  if (count > 0) flush(count);
}

// One phase of a time loop (a step's product, or a pass over the units):
// f(slice) with the thread's own panels when it owns whole sequences; when
// threads share the rows, f(piece) for each piece of unit blocks it claims,
// then a wait for the pieces others run (phase_claims.h). Every thread of a
// team runs the same sequence of phases.
template <class F>
RNNEXT_INLINE void each_slice(const TimeLoop& a, F f) {
  if (a.claims == nullptr) return f(a);
  TimeLoop piece = a;
  while (a.claims->claim(&piece.panel_begin, &piece.panel_end)) {
    f(static_cast<const TimeLoop&>(piece));
    a.claims->finished();
  }
  a.claims->next_phase();
}

// Calls f(col, n) for each vector of the units [col0, col1): n = col1 - col,
// a whole vector when n >= lanes.
template <class T, class F>
RNNEXT_INLINE void for_slice_vectors(index_t col0, index_t col1, F f) {
  for (index_t col = col0; col < col1; col += simd<T>::lanes) f(col, col1 - col);
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

// The n values at p + offset as a vector (see load_n), or zeros when p is null.
template <class T>
RNNEXT_INLINE vec<T> load_n_or_zero(const T* p, index_t offset, index_t n) {
  return p ? load_n(p + offset, n) : vec<T>{};
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
