#include "bench_common.h"

#include <sys/resource.h>

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "kvq/common/blas.h"
#include "kvq/common/error.h"
#include "kvq/common/simd_target.h"
#include "kvq/model/random_model.h"

namespace kvq::bench {
namespace {

std::string CpuModel() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    // x86: "model name"; Arm: no model name, "CPU part" names the core.
    if (line.rfind("model name", 0) == 0 || line.rfind("CPU part", 0) == 0) {
      return line.substr(line.find(':') + 2);
    }
  }
  return "unknown CPU";
}

}  // namespace

void Setup(int& argc, char** argv) {
  std::string targets;  // Before pinning, which narrows the list to one.
  for (const std::string& target : SimdTargets()) targets += " " + target;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--target=", 9) == 0) {
      try {
        PinSimdTarget(argv[i] + 9);
      } catch (const InputError& e) {
        std::fprintf(stderr, "%s\n", e.what());
        std::exit(2);
      }
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  EnsureBlasKernel();
  std::printf(
      "CPU: %s | SIMD target: %s (supported:%s; pin with --target=NAME) | OpenBLAS: %s | "
      "threads: %d\n",
      CpuModel().c_str(), SimdTarget().c_str(), targets.c_str(), BlasKernelName().c_str(),
      omp_get_max_threads());
}

double MeasureSgemmGflops() {
  EnsureBlasKernel();
  constexpr int n = 2048;
  std::vector<float> a(static_cast<size_t>(n) * n, 0.5f), b(a.size(), 0.25f), c(a.size());
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
    best = std::min(
        best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return 2.0 * n * n * n / best / 1e9;
}

void RequireValid(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "validated" : "NOT VALIDATED", what.c_str());
  std::fflush(stdout);
  if (!ok) std::exit(1);
}

std::filesystem::path RandomBf16ModelDir(const std::string& preset) {
  const auto dir = std::filesystem::temp_directory_path() / "kvq-bench-models" / (preset + "-bf16");
  if (!std::filesystem::exists(dir / "config.json")) {
    std::fprintf(stderr, "writing %s (once) ...\n", dir.c_str());
    WriteRandomModel(FindModelPreset(preset).config, 1, DType::kBF16, dir);
  }
  return dir;
}

double ProcessCpuSeconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

}  // namespace kvq::bench
