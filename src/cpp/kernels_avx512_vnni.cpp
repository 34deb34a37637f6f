// Reduced-precision kernels with AVX512_VNNI's int8 dot products (bfloat16
// emulated); see kernels_impl.h and quant_gemm.h.
#define RNNEXT_ISA avx512_vnni
#define RNNEXT_VBYTES 64
#define RNNEXT_QUANT_ONLY 1
#include "kernels_impl.h"
