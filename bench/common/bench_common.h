#pragma once
// What every benchmark prints first, and the flags they share: the machine
// (CPU model, SIMD target, OpenBLAS kernel, threads), `--target=NAME` to pin
// the SIMD target (so that an AVX-512 machine also measures its AVX2, SSE4
// and scalar paths), and a same-run sgemm figure to compare kernels with.
#include <filesystem>
#include <string>

namespace kvq::bench {

// Removes and applies --target=NAME from argv (before benchmark::Initialize),
// then prints the machine line. Exits with status 2 on an unknown target.
void Setup(int& argc, char** argv);

// OpenBLAS sgemm GFLOP/s on this machine now (n = 2048, all threads, best
// of 3): the reference a kernel's FLOP rate is compared with, measured in
// the same run because these machines are shared and noisy.
double MeasureSgemmGflops();

// Every benchmark checks its kernel's result before it times it (the llm.c
// habit): prints "validated: <what>" when `ok`, else "NOT VALIDATED: <what>"
// and exits with status 1, so that no figure of a wrong kernel is printed.
void RequireValid(bool ok, const std::string& what);

// A random-weight model of a preset's geometry (FindModelPreset) in bf16,
// as the checkpoints ship, written once under the system temp folder
// (kvq-bench-models/<preset>-bf16) and reused by later runs.
std::filesystem::path RandomBf16ModelDir(const std::string& preset = "qwen2.5-0.5b");

// CPU seconds of the whole process (all threads) so far: on a shared machine
// the wall time also counts other jobs, while work / CPU seconds * cores
// projects the wall time the code would reach alone.
double ProcessCpuSeconds();

}  // namespace kvq::bench
