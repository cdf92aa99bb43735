// `kvq version`: the version and the build's compute configuration.
#include <omp.h>

#include <cstdio>
#include <string>

#include "command.h"
#include "kvq/common/blas.h"
#include "kvq/common/simd_target.h"
#include "kvq/version.h"

namespace kvq::cli {
namespace {

Runner Setup(CLI::App&) {
  return [] {
    EnsureBlasKernel();
    std::string targets;
    for (const std::string& target : SimdTargets()) targets += " " + target;
    std::printf(
        "kvq %s\nSIMD target: %s (this CPU supports:%s)\nOpenBLAS kernel: %s\n"
        "OpenMP threads: %d\n",
        kVersion, SimdTarget().c_str(), targets.c_str(), BlasKernelName().c_str(),
        omp_get_max_threads());
  };
}

KVQ_COMMAND("version", "Print the kvq version and compute configuration", Setup);

}  // namespace
}  // namespace kvq::cli
