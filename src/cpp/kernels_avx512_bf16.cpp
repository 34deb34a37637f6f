// Reduced-precision kernels with AVX512_BF16's and AVX512_VNNI's dot
// products; see kernels_impl.h and quant_gemm.h.
#define RNNEXT_ISA avx512_bf16
#define RNNEXT_VBYTES 64
#define RNNEXT_QUANT_ONLY 1
#include "kernels_impl.h"
