#include "kvq/common/blas.h"

#include <cblas.h>
#include <strings.h>

#include <cstdlib>
#include <mutex>

// The kernel fix-up below is for x86 and needs a DYNAMIC_ARCH OpenBLAS (the
// build checks for it); elsewhere (Arm, or OpenBLAS built for one CPU)
// OpenBLAS's own choice stands and EnsureBlasKernel does nothing.
#if (defined(__x86_64__) || defined(__i386__)) && defined(KVQ_OPENBLAS_DYNAMIC_ARCH)
#define KVQ_BLAS_X86_FIXUP 1
#else
#define KVQ_BLAS_X86_FIXUP 0
#endif

#if KVQ_BLAS_X86_FIXUP
extern "C" {
// Exported by DYNAMIC_ARCH builds of OpenBLAS (Debian's): drop and redo the
// kernel choice, which reads OPENBLAS_CORETYPE.
void gotoblas_dynamic_init(void);
void gotoblas_dynamic_quit(void);
}
#endif

namespace kvq {
#if KVQ_BLAS_X86_FIXUP
namespace {

bool IsGenericCore(const char* name) {
  for (const char* generic : {"Prescott", "Core2", "Nehalem", "Sandybridge", "Penryn", "Dunnington",
                              "Atom", "Katmai", "Northwood", "Banias"}) {
    if (strcasecmp(name, generic) == 0) return true;
  }
  return false;
}

const char* BestKernelForCpu() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
    return "SkylakeX";
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return nullptr;
}

}  // namespace

void EnsureBlasKernel() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;  // The user's choice stands.
    if (!IsGenericCore(openblas_get_corename())) return;
    const char* best = BestKernelForCpu();
    if (best == nullptr) return;
    ::setenv("OPENBLAS_CORETYPE", best, 0);
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    ::unsetenv("OPENBLAS_CORETYPE");
  });
}
#else
void EnsureBlasKernel() {}
#endif

std::string BlasKernelName() { return openblas_get_corename(); }

}  // namespace kvq
