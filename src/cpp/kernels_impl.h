// The body of every kernels_<isa>.cpp: the SIMD kernels, compiled inside the
// namespace rnnext::RNNEXT_ISA with that file's instruction-set flags.
// Keeping each copy in its own namespace (and out of the standard library)
// means the linker can never fold an AVX-512 instance of an inline function
// into the baseline path.
#pragma once

#include <cstdint>

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
#include "rnn_cell.h"
#include "lstm_cell.h"
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
void activation_kernel(Activation f, const T* x, T* y, index_t n) {
  switch (f) {
    case Activation::tanh: return activation_rows<Activation::tanh>(x, y, n);
    case Activation::sigmoid: return activation_rows<Activation::sigmoid>(x, y, n);
    case Activation::relu: return activation_rows<Activation::relu>(x, y, n);
  }
}

const KernelTable& table() {
  static const KernelTable t = {
      RNNEXT_STRINGIFY(RNNEXT_ISA),
      &dense_kernel<float>,
      &dense_kernel<double>,
      &elman_forward_kernel<float>,
      &elman_forward_kernel<double>,
      &elman_backward_kernel<float>,
      &elman_backward_kernel<double>,
      &lstm_forward_kernel<float>,
      &lstm_forward_kernel<double>,
      &lstm_backward_kernel<float>,
      &lstm_backward_kernel<double>,
      &gru_forward_kernel<float>,
      &gru_forward_kernel<double>,
      &gru_backward_kernel<float>,
      &gru_backward_kernel<double>,
      &activation_kernel<float>,
      &activation_kernel<double>,
  };
  return t;
}

}  // namespace RNNEXT_ISA
}  // namespace rnnext
