#pragma once
// OpenBLAS kernel selection. OpenBLAS picks its GEMM kernel from the CPU
// model at load time; releases older than the CPU fall back to a generic SSE3
// kernel (Prescott) that is 10x slower. When that happened, no
// OPENBLAS_CORETYPE was given, and the CPU has AVX-512 (or AVX2 + FMA),
// kvq switches OpenBLAS to its SkylakeX (or Haswell) kernels.
#include <string>

namespace kvq {

// Idempotent and thread-safe; call before the first GEMM.
void EnsureBlasKernel();

// The kernel OpenBLAS uses now, e.g. "SkylakeX" (for benchmark reports).
std::string BlasKernelName();

}  // namespace kvq
