// `kvq version`: the version and the build's compute configuration.
#include <omp.h>

#include <cstdio>

#include "command.h"
#include "kvq/common/blas.h"
#include "kvq/version.h"

namespace kvq::cli {
namespace {

Runner Setup(CLI::App&) {
  return [] {
    EnsureBlasKernel();
    std::printf("kvq %s\nOpenBLAS kernel: %s\nOpenMP threads: %d\n", kVersion,
                BlasKernelName().c_str(), omp_get_max_threads());
  };
}

KVQ_COMMAND("version", "Print the kvq version and compute configuration", Setup);

}  // namespace
}  // namespace kvq::cli
