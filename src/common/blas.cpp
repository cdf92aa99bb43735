#include "kvq/common/blas.h"

#include <cblas.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

extern "C" {
// Exported by DYNAMIC_ARCH builds of OpenBLAS (Debian's): drop and redo the
// kernel choice, which reads OPENBLAS_CORETYPE.
void gotoblas_dynamic_init(void);
void gotoblas_dynamic_quit(void);
}

namespace kvq {
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

std::string BlasKernelName() { return openblas_get_corename(); }

}  // namespace kvq
