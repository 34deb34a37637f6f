// Baseline kernels (16-byte vectors: SSE2 on x86-64, NEON on arm64), compiled
// with the default flags; the reference path every CPU can run; see kernels_impl.h.
#define RNNEXT_ISA scalar
#define RNNEXT_VBYTES 16
#include "kernels_impl.h"
