// The body of every kernels_<isa>.cpp: the SIMD kernels, compiled inside the
// namespace rnnext::RNNEXT_ISA with that file's instruction-set flags.
// Keeping each copy in its own namespace (and out of the standard library)
// means the linker can never fold an AVX-512 instance of an inline function
// into the baseline path.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <type_traits>
#include <vector>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "common.h"
#include "kernels.h"

#if !defined(RNNEXT_ISA) || !defined(RNNEXT_VBYTES)
#error "define RNNEXT_ISA and RNNEXT_VBYTES before including kernels_impl.h"
#endif

#define RNNEXT_STRINGIFY2(x) #x
#define RNNEXT_STRINGIFY(x) RNNEXT_STRINGIFY2(x)

namespace rnnext {
namespace RNNEXT_ISA {

#include "activations.h"
#include "gemm.h"
#include "quant_gemm.h"  // before the cells: their products find its gemm_rows
#include "elman_cell.h"
#include "lstm_cell.h"
#include "lstm_projection_cell.h"
#include "gru_cell.h"

template <Activation act, class T>
void activation_rows(const T* x, T* y, index_t n) {
  constexpr int lanes = simd<T>::lanes;
  index_t i = 0;
  for (; i + lanes <= n; i += lanes) store(y + i, activate<act>(load(x + i)));
  if (i < n) {
    T tail[lanes] = {};
    for (index_t j = i; j < n; ++j) tail[j - i] = x[j];
    store_partial(y + i, activate<act>(load(tail)), n - i);
  }
}

template <class T>
void activation_kernel(const ActivationArgs<T>& a) {
  switch (a.f) {
    case Activation::tanh: return activation_rows<Activation::tanh>(a.x, a.y, a.n);
    case Activation::sigmoid: return activation_rows<Activation::sigmoid>(a.x, a.y, a.n);
    case Activation::relu: return activation_rows<Activation::relu>(a.x, a.y, a.n);
  }
}

#ifndef RNNEXT_QUANT_ONLY
const KernelTable& table() {
#define RNNEXT_TABLE_ENTRY(name, Args) &name##_kernel<float>, &name##_kernel<double>,
  static const KernelTable t = {RNNEXT_STRINGIFY(RNNEXT_ISA), RNNEXT_KERNELS(RNNEXT_TABLE_ENTRY)};
#undef RNNEXT_TABLE_ENTRY
  return t;
}
#endif

#if defined(__AMX_TILE__)
#define RNNEXT_BF16_PATH "amx"
#elif defined(RNNEXT_NATIVE_BF16)
#define RNNEXT_BF16_PATH "avx512_bf16"
#else
#define RNNEXT_BF16_PATH RNNEXT_STRINGIFY(RNNEXT_ISA) "-emulated"
#endif
#if defined(__AMX_TILE__)
#define RNNEXT_INT8_PATH "amx"
#elif defined(RNNEXT_NATIVE_INT8)
#define RNNEXT_INT8_PATH "avx512_vnni"
#else
#define RNNEXT_INT8_PATH RNNEXT_STRINGIFY(RNNEXT_ISA) "-emulated"
#endif

const QuantKernelTable& quant_table() {
#define RNNEXT_QUANT_ENTRY(name, Args) &name##_kernel<float, QuantView>,
  static const QuantKernelTable t = {RNNEXT_STRINGIFY(RNNEXT_ISA), RNNEXT_BF16_PATH, RNNEXT_INT8_PATH,
                                     RNNEXT_QUANT_KERNELS(RNNEXT_QUANT_ENTRY)};
#undef RNNEXT_QUANT_ENTRY
  return t;
}

}  // namespace RNNEXT_ISA
}  // namespace rnnext
