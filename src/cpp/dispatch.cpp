// Chooses the kernel table once, at first use. Compiled with baseline flags:
// this file must run on every CPU, including those it then rules out.
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels.h"

namespace rnnext {
namespace scalar { const KernelTable& table(); }
#ifdef RNNEXT_HAVE_X86_KERNELS
namespace avx2 { const KernelTable& table(); }
namespace avx512 { const KernelTable& table(); }
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

}  // namespace

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
