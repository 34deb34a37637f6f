// The vector-op layer the kernels are written against: GCC/Clang vector
// extensions, RNNEXT_VBYTES wide (16: SSE2/NEON baseline, 32: AVX2, 64: AVX-512).
// Included only from kernels_impl.h, inside an instruction-set namespace, so
// each kernels_<isa>.cpp gets its own copy compiled with its own flags.
#pragma once

#ifndef RNNEXT_VBYTES
#error "simd.h is included from kernels_impl.h, which defines RNNEXT_VBYTES"
#endif

#define RNNEXT_INLINE inline __attribute__((always_inline))

template <class T>
struct simd;

template <>
struct simd<float> {
  typedef float V __attribute__((vector_size(RNNEXT_VBYTES)));
  typedef std::int32_t I __attribute__((vector_size(RNNEXT_VBYTES)));
  typedef std::uint32_t U __attribute__((vector_size(RNNEXT_VBYTES)));
  static constexpr int lanes = RNNEXT_VBYTES / 4;
};

template <>
struct simd<double> {
  typedef double V __attribute__((vector_size(RNNEXT_VBYTES)));
  typedef std::int64_t I __attribute__((vector_size(RNNEXT_VBYTES)));
  typedef std::uint64_t U __attribute__((vector_size(RNNEXT_VBYTES)));
  static constexpr int lanes = RNNEXT_VBYTES / 8;
};

template <class T>
using vec = typename simd<T>::V;

template <class T>
RNNEXT_INLINE vec<T> load(const T* p) {
  vec<T> v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

template <class T>
RNNEXT_INLINE void store(T* p, vec<T> v) {
  __builtin_memcpy(p, &v, sizeof(v));
}

// Stores the first n lanes (0 <= n <= lanes); used for the last, partial
// panel of an unpadded output row.
template <class T>
RNNEXT_INLINE void store_partial(T* p, vec<T> v, index_t n) {
  T lanes[simd<T>::lanes];
  __builtin_memcpy(lanes, &v, sizeof(v));
  for (index_t i = 0; i < n; ++i) p[i] = lanes[i];
}

// Loads the first n lanes (0 <= n <= lanes), zero in the others; for the last,
// partial panel of an unpadded row.
template <class T>
RNNEXT_INLINE vec<T> load_partial(const T* p, index_t n) {
  T lanes[simd<T>::lanes] = {};
  for (index_t i = 0; i < n; ++i) lanes[i] = p[i];
  return load(lanes);
}

// Every lane x. Written x - 0, which is exactly x for every x (-0 and NaN
// included), so the compiler folds it to one broadcast; 0 + x is not x for
// x = -0 and would leave a real addition in the inner loop.
template <class T>
RNNEXT_INLINE vec<T> splat(T x) {
  return x - vec<T>{};
}

// a ? b : c lane by lane; a is the integer mask of a vector comparison.
template <class M, class V>
RNNEXT_INLINE V select(M mask, V a, V b) {
  return mask ? a : b;
}
