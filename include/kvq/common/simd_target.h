#pragma once
// Which SIMD target kvq's kernels run on. Every kernel is compiled for all
// targets of the architecture (Highway's foreach_target) and dispatched at
// run time to the best one this CPU supports; these functions name that
// choice and let benchmarks and tests pin a weaker target (an AVX-512 machine
// can then measure and test its AVX2, SSE4 and scalar paths too).
#include <string>
#include <vector>

namespace kvq {

// The target that dispatch picks now, e.g. "AVX3", "AVX2", "SSE4", "NEON", "SVE",
// or the portable scalar one ("EMU128", or "SCALAR" in some Highway builds).
std::string SimdTarget();

// Every target that is both compiled in and supported by this CPU, best first.
std::vector<std::string> SimdTargets();

// Restricts dispatch to the target of that name (case-insensitive; one of
// SimdTargets()). Throws InputError naming the supported ones otherwise.
// Not thread-safe against running kernels: call it between them.
void PinSimdTarget(const std::string& name);

// Undoes PinSimdTarget: back to the best target of the CPU.
void UnpinSimdTarget();

}  // namespace kvq
