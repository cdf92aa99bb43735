// `kvq plan` on a Qwen2.5-0.5B-shaped synthetic dump (24 layers, 14 heads on
// 2 kv heads, head_dim 64, 8 prompts x 512 tokens) with the per-tensor
// default candidates `kvq plan` uses (DefaultPlanFormats(tensor, info): 15 for
// K, 12 for V) at strat3's budget (6,720 bytes/token): the measuring pass
// (48 K units x 14 and 48 V units x 11 quantized candidates, each one kv
// head's group of 7 query heads re-attended against the layer's original
// output computed once), the exact solve, and the re-measuring pass of the
// whole plan.
//
// Target (issue 21): under 60 s on an AVX2 machine. On a shared machine the
// wall time says more about the other users than about kvq: the process CPU
// time is the figure to compare (a run on free cores takes no longer than
// cpu_s / cores).
#include <benchmark/benchmark.h>

#include <unistd.h>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include <fmt/format.h>

#include "bench_common.h"
#include "kvq/capture/dump.h"
#include "kvq/capture/synthetic.h"
#include "kvq/plan/planner.h"

namespace {

constexpr double kTargetSeconds = 60.0;

double Since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

struct TempDump {
  std::filesystem::path path;
  // Qwen2.5-0.5B geometry (24 layers unless `layers`), 8 x 512 tokens.
  explicit TempDump(int layers = 0)
      : path(std::filesystem::temp_directory_path() /
             ("kvq-bench-plan-" + std::to_string(::getpid()) + "-" + std::to_string(layers) +
              ".safetensors")) {
    kvq::SyntheticDumpOptions o;
    o.chunk_len = 512;
    if (layers > 0) o.num_layers = layers;
    kvq::WriteSyntheticDump(path, o);
  }
  ~TempDump() { std::filesystem::remove(path); }
};

// Before timing, on the first two layers: the plan's predicted worst layer
// cosine (sums of per-unit measurements) is what measuring the planned
// strategy gives.
bool PredictionMatchesMeasurement() {
  const TempDump small(2);
  const kvq::KvDump dump = kvq::KvDump::Open(small.path);
  const auto k_formats = kvq::DefaultPlanFormats(kvq::KvTensor::kK, dump.info());
  const auto v_formats = kvq::DefaultPlanFormats(kvq::KvTensor::kV, dump.info());
  const kvq::UnitTable table = kvq::MeasureUnits(dump, k_formats, v_formats);
  const kvq::PlanSolution plan = kvq::SolvePlan(table, kvq::PlanObjective::kWorstCos, 6720);
  const kvq::StrategyFidelity measured =
      kvq::MeasureStrategies(dump, std::vector<kvq::Strategy>{plan.strategy})[0];
  return std::fabs(plan.worst_cos - measured.worst_cos) <= 1e-9;
}

void BM_Plan(benchmark::State& state) {
  static const TempDump dump_file;
  const kvq::KvDump dump = kvq::KvDump::Open(dump_file.path);
  const auto k_formats = kvq::DefaultPlanFormats(kvq::KvTensor::kK, dump.info());
  const auto v_formats = kvq::DefaultPlanFormats(kvq::KvTensor::kV, dump.info());
  double measure_s = 0, solve_s = 0, validate_s = 0, cpu_s = 0;
  kvq::PlanSolution plan;
  kvq::StrategyFidelity measured;
  for (auto _ : state) {
    const double cpu_start = kvq::bench::ProcessCpuSeconds();
    auto start = std::chrono::steady_clock::now();
    const kvq::UnitTable table = kvq::MeasureUnits(dump, k_formats, v_formats);
    measure_s = Since(start);
    start = std::chrono::steady_clock::now();
    plan = kvq::SolvePlan(table, kvq::PlanObjective::kWorstCos, 6720);
    solve_s = Since(start);
    start = std::chrono::steady_clock::now();
    measured = kvq::MeasureStrategies(dump, std::vector<kvq::Strategy>{plan.strategy})[0];
    validate_s = Since(start);
    cpu_s = kvq::bench::ProcessCpuSeconds() - cpu_start;
  }
  const double total = measure_s + solve_s + validate_s;
  state.counters["seconds"] = total;
  state.counters["cpu_s"] = cpu_s;
  state.counters["measure_s"] = measure_s;
  state.counters["solve_s"] = solve_s;
  state.counters["validate_s"] = validate_s;
  state.counters["bytes_per_token"] = plan.bytes_per_token;
  state.counters["pred_worst_cos"] = plan.worst_cos;
  state.counters["meas_worst_cos"] = measured.worst_cos;
  state.SetLabel(fmt::format("{} the {:.0f} s target in wall time, {} it in process CPU time",
                             total <= kTargetSeconds ? "within" : "OVER", kTargetSeconds,
                             cpu_s <= kTargetSeconds ? "within" : "OVER"));
}

BENCHMARK(BM_Plan)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  std::printf(
      "kvq plan, Qwen2.5-0.5B-shaped synthetic dump (24 x 14/2 heads x 64, 8 x 512 tokens),\n"
      "the per-tensor default candidates (kvq plan's), worst-cos at 6,720 bytes/token\n"
      "(strat3's budget). Target (issue 21): <= %.0f s on an AVX2 machine. cpu_s is the\n"
      "process CPU time (all threads): on free cores the wall time is at most cpu_s / cores.\n\n",
      kTargetSeconds);
  kvq::bench::Setup(argc, argv);
  kvq::bench::RequireValid(PredictionMatchesMeasurement(),
                           "the plan's predicted worst cosine is the measured one (2 layers)");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
