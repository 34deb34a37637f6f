// Kernels for the avx2 instruction set (32-byte vectors); see kernels_impl.h.
#define RNNEXT_ISA avx2
#define RNNEXT_VBYTES 32
#include "kernels_impl.h"
