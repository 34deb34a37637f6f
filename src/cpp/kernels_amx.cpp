// Reduced-precision kernels on AMX tiles (rows in blocks of 16 and 32),
// with AVX512_BF16 / AVX512_VNNI for the rows left over; see quant_gemm.h.
#define RNNEXT_ISA amx
#define RNNEXT_VBYTES 64
#define RNNEXT_QUANT_ONLY 1
#include "kernels_impl.h"
