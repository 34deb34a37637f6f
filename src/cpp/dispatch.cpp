// Chooses the kernel table once, at first use. Compiled with baseline flags:
// this file must run on every CPU, including those it then rules out.
#include <cstdlib>
#ifdef __linux__
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels.h"

namespace rnnext {
namespace scalar { const KernelTable& table(); const QuantKernelTable& quant_table(); }
#ifdef RNNEXT_HAVE_X86_KERNELS
namespace avx2 { const KernelTable& table(); const QuantKernelTable& quant_table(); }
namespace avx512 { const KernelTable& table(); const QuantKernelTable& quant_table(); }
// Reduced precision only: the dot-product extensions.
namespace avx512_vnni { const QuantKernelTable& quant_table(); }
namespace avx512_bf16 { const QuantKernelTable& quant_table(); }
namespace amx { const QuantKernelTable& quant_table(); }
#endif

namespace {

struct Candidate {
  const char* name;
  const KernelTable& (*table)();
  bool (*supported)();
};

bool always() { return true; }
#ifdef RNNEXT_HAVE_X86_KERNELS
// __builtin_cpu_supports also checks that the OS saves the AVX / AVX-512
// register state (XCR0), not only the CPUID bits.
bool has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
bool has_avx512() {
  return has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
}
#endif

#ifdef RNNEXT_HAVE_X86_KERNELS
bool has_vnni() { return has_avx512() && __builtin_cpu_supports("avx512vnni"); }
bool has_bf16() { return has_vnni() && __builtin_cpu_supports("avx512bf16"); }

// AMX-TILE, -INT8 and -BF16 in CPUID, their state enabled in XCR0, and the
// kernel's permission to use it (Linux asks each process to request it; a
// refusal, or an older kernel, leaves the vector paths).
bool has_amx() {
  if (!has_bf16()) return false;
  unsigned a, b, c, d;
  __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
  const unsigned amx = (1u << 22) | (1u << 24) | (1u << 25);  // AMX-BF16, AMX-TILE, AMX-INT8
  if ((d & amx) != amx) return false;
  unsigned lo, hi;
  __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  const unsigned tiles = (1u << 17) | (1u << 18);  // XTILECFG, XTILEDATA
  if ((lo & tiles) != tiles) return false;
#ifdef __linux__
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}
#endif

// Best first.
const Candidate kCandidates[] = {
#ifdef RNNEXT_HAVE_X86_KERNELS
    {"avx512", &avx512::table, &has_avx512},
    {"avx2", &avx2::table, &has_avx2},
#endif
    {"scalar", &scalar::table, &always},
};

const KernelTable& choose() {
  const char* forced = std::getenv("RNNEXT_FORCE_ISA");
  if (forced == nullptr || *forced == '\0') {
    for (const Candidate& c : kCandidates)
      if (c.supported()) return c.table();
  }
  std::string known;
  for (const Candidate& c : kCandidates) {
    if (std::strcmp(forced, c.name) == 0) {
      if (!c.supported())
        throw std::runtime_error(std::string("RNNEXT_FORCE_ISA=") + forced +
                                 ": this CPU does not support that instruction set");
      return c.table();
    }
    known += known.empty() ? c.name : std::string(", ") + c.name;
  }
  throw std::runtime_error(std::string("RNNEXT_FORCE_ISA=") + forced +
                           ": unknown instruction set; this build has " + known);
}

// The emulating table of each instruction set, by the float kernels' names.
const QuantKernelTable& emulation_of(const char* isa) {
#ifdef RNNEXT_HAVE_X86_KERNELS
  if (std::strcmp(isa, "avx512") == 0) return avx512::quant_table();
  if (std::strcmp(isa, "avx2") == 0) return avx2::quant_table();
#endif
  (void)isa;
  return scalar::quant_table();
}

const QuantKernelTable& choose_quant(QuantKind kind) {
  const char* forced = std::getenv("RNNEXT_FORCE_ISA");
  // A forced instruction set runs its own emulation, so that each path can be tested.
  if (forced != nullptr && *forced != '\0') return emulation_of(kernels().isa);
#ifdef RNNEXT_HAVE_X86_KERNELS
  static const bool amx_usable = has_amx();
  if (amx_usable) return amx::quant_table();
  if (has_bf16()) return avx512_bf16::quant_table();
  if (kind == QuantKind::int8 && has_vnni()) return avx512_vnni::quant_table();
#endif
  (void)kind;
  return emulation_of(kernels().isa);
}

}  // namespace

const QuantKernelTable& quant_kernels(QuantKind kind) {
  static const QuantKernelTable& bf16 = choose_quant(QuantKind::bfloat16);
  static const QuantKernelTable& int8 = choose_quant(QuantKind::int8);
  return kind == QuantKind::int8 ? int8 : bf16;
}

const char* quant_path(QuantKind kind) {
  const QuantKernelTable& t = quant_kernels(kind);
  return kind == QuantKind::int8 ? t.int8_path : t.bfloat16_path;
}

const KernelTable& kernels() {
  static const KernelTable& chosen = choose();
  return chosen;
}

const char* const* available_isas() {
  static const char* names[sizeof(kCandidates) / sizeof(kCandidates[0]) + 1] = {};
  static const bool filled = [] {
    int n = 0;
    for (const Candidate& c : kCandidates)
      if (c.supported()) names[n++] = c.name;
    return true;
  }();
  (void)filled;
  return names;
}

}  // namespace rnnext
