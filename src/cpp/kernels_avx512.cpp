// Kernels for the avx512 instruction set (64-byte vectors); see kernels_impl.h.
#define RNNEXT_ISA avx512
#define RNNEXT_VBYTES 64
#include "kernels_impl.h"
