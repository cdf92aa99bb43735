// Quantize + dequantize + error of the whole K/V of a Qwen2.5-0.5B-shaped
// 4096-token dump (24 layers x 2 kv heads x 4096 x 64, K and V: 50.3 MB of
// fp16), per strategy. bytes_per_second counts that fp16 input.
//
// Reference figures (the project machine kind's measured figures, 2 threads): STREAM
// triad 54 GB/s, read-only 39 GB/s; llama.cpp's q8_0 row quantizer 16.7 GB/s
// on 1 thread. Target: >= 27 GB/s (half the triad bandwidth) for the int8
// strategies, at most 50 ms per strategy. BM_ReadFloor measures, in the same
// run, one read of the same data widened to float (max |x|): the least a
// kernel that reads and widens the fp16 input costs. It is the memory
// bandwidth only where the widening keeps up with memory (measured: not on
// SSE4 and the scalar target, see docs/formats.md). The CPU column is
// process time (all threads).
//
// The kernels run on the best SIMD target of the CPU (printed as the
// context's simd_target); --target=NAME (before the benchmark flags) pins
// another one, e.g. --target=SSE4 on an AVX2 machine.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "kvq/common/half.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "bench/bench_quant.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "common/half-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvq {
namespace HWY_NAMESPACE {

// max |x| of n fp16 values: one read of them, widened in lanes.
float HalfAbsMax(const uint16_t* p, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  auto lane = hn::Zero(d);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) lane = hn::Max(lane, hn::Abs(LoadHalfLanes(d, p + i)));
  float m = hn::GetLane(hn::MaxOfLanes(d, lane));
  for (; i < n; ++i) m = std::max(m, std::fabs(HalfToFloat(p[i])));
  return m;
}

}  // namespace HWY_NAMESPACE
}  // namespace kvq
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "bench_common.h"
#include "kvq/capture/dump.h"
#include "kvq/capture/synthetic.h"
#include "kvq/common/error.h"
#include "kvq/common/simd_target.h"
#include "kvq/metrics/tensor_error.h"
#include "kvq/quant/quantize.h"

namespace kvq {
HWY_EXPORT(HalfAbsMax);
float HalfAbsMaxOf(const uint16_t* p, int64_t n) { return HWY_DYNAMIC_DISPATCH(HalfAbsMax)(p, n); }
}  // namespace kvq

namespace {

struct Fixture {
  std::filesystem::path path;
  kvq::SyntheticDumpOptions options;
  std::unique_ptr<kvq::KvDump> dump;
  // fp32 K and V of every layer: [layer][num_kv_heads * tokens * head_dim].
  std::vector<std::vector<float>> k, v;
  std::vector<float> out;
  kvq::LayerContext ctx;

  Fixture() {
    path = std::filesystem::temp_directory_path() /
           ("kvq-bench-quant-" + std::to_string(::getpid()) + ".safetensors");
    kvq::WriteSyntheticDump(path, options);
    dump = std::make_unique<kvq::KvDump>(kvq::KvDump::Open(path));
    const auto& info = dump->info();
    const size_t n = static_cast<size_t>(info.num_kv_heads * info.tokens * info.head_dim);
    for (int l = 0; l < info.num_layers; ++l) {
      k.emplace_back(n);
      v.emplace_back(n);
      dump->ReadK(l, k.back());
      dump->ReadV(l, v.back());
    }
    out.resize(n);
    ctx = kvq::DumpLayerContext(info, dump->ReadKBias(0));
  }
  ~Fixture() {
    std::error_code ignored;
    std::filesystem::remove(path, ignored);
  }
  double InputBytes() const {
    const auto& i = dump->info();
    return 2.0 * 2 * i.num_layers * i.num_kv_heads * static_cast<double>(i.tokens) * i.head_dim;
  }
};

Fixture& Get() {
  static Fixture fixture;
  return fixture;
}

const char* kStrategies[] = {
    "fp16",   "strat1",         "strat2",
    "strat3", "int8:channel",   "k=int4:g32:token,v=int4:g32:dim",
    "q8_0",   "fp8e4m3",        "nvfp4",
    "iq4_nl", "int8:token+had", "k=int8:token+sink4+recent64,v=int8:token"};

// kvq quant's path: fp16 straight from the mapped dump, error per head.
void BM_MeasureDump(benchmark::State& state) {
  Fixture& f = Get();
  const auto strategy = kvq::Strategy::Parse(kStrategies[state.range(0)]);
  state.SetLabel(strategy.name);
  for (auto _ : state) {
    auto rows = kvq::MeasureDump(*f.dump, strategy);
    benchmark::DoNotOptimize(rows.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(f.InputBytes()) * state.iterations());
}

// The floor measured side by side: one read of the same mapped fp16 K/V,
// widened (max |x| per (layer, tensor, head) unit, the same parallel loop),
// no quantization: what reading and widening cost on this target right now.
void BM_ReadFloor(benchmark::State& state) {
  Fixture& f = Get();
  const auto& info = f.dump->info();
  const int units = info.num_layers * 2 * info.num_kv_heads;
  const int64_t per_head = info.tokens * info.head_dim;
  std::vector<const uint16_t*> src(static_cast<size_t>(units));
  for (int u = 0; u < units; ++u) {
    const int layer = u / (2 * info.num_kv_heads), head = u % info.num_kv_heads;
    const char* t = (u / info.num_kv_heads) % 2 ? "v" : "k";
    src[static_cast<size_t>(u)] =
        reinterpret_cast<const uint16_t*>(
            f.dump->Tensor("layers." + std::to_string(layer) + "." + t).data) +
        head * per_head;
  }
  std::vector<float> out(static_cast<size_t>(units));
  for (auto _ : state) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int u = 0; u < units; ++u) {
      out[static_cast<size_t>(u)] = kvq::HalfAbsMaxOf(src[static_cast<size_t>(u)], per_head);
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(f.InputBytes()) * state.iterations());
}

// The layer API on fp32 K/V already in memory (what attention and the
// forward pass call), output into one reused buffer.
void BM_QuantizeLayer(benchmark::State& state) {
  Fixture& f = Get();
  const auto strategy = kvq::Strategy::Parse(kStrategies[state.range(0)]);
  state.SetLabel(strategy.name);
  for (auto _ : state) {
    for (size_t l = 0; l < f.k.size(); ++l) {
      kvq::QuantizeLayer(strategy, kvq::KvTensor::kK, static_cast<int>(l), f.ctx, f.k[l], f.out);
      kvq::QuantizeLayer(strategy, kvq::KvTensor::kV, static_cast<int>(l), f.ctx, f.v[l], f.out);
    }
    benchmark::DoNotOptimize(f.out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(f.InputBytes()) * state.iterations());
}

// CPU time is the whole process's (both threads): on a shared, loaded machine
// wall time mostly measures the other engineers' jobs.
BENCHMARK(BM_MeasureDump)
    ->DenseRange(0, std::size(kStrategies) - 1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();
BENCHMARK(BM_ReadFloor)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
BENCHMARK(BM_QuantizeLayer)
    ->DenseRange(0, 3)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();

// Before timing: on the first two layers, every strategy's error sums from
// MeasureDump (fused kernels straight from the fp16 dump) equal those of the
// scalar reference kernels (HeadContext::use_reference) on the same values,
// within the float lanes' summation rounding.
bool MeasureDumpMatchesTheReference() {
  Fixture& f = Get();
  const auto& info = f.dump->info();
  const int64_t per_head = info.tokens * info.head_dim;
  std::vector<float> y(static_cast<size_t>(per_head));
  for (const char* spec : kStrategies) {
    const auto strategy = kvq::Strategy::Parse(spec);
    for (const kvq::ErrorRow& row : kvq::MeasureDump(*f.dump, strategy)) {
      if (row.layer >= 2) continue;
      const auto& layer = row.tensor == kvq::KvTensor::kK ? f.k : f.v;
      const float* x = layer[static_cast<size_t>(row.layer)].data() + row.head * per_head;
      kvq::HeadContext ctx = f.ctx.ForHead(row.tensor, row.head);
      ctx.use_reference = true;
      kvq::QuantizeHead(strategy.Format(row.tensor, row.layer, row.head), ctx, x, y.data(),
                        info.tokens, info.head_dim);
      double sse = 0;
      for (int64_t i = 0; i < per_head; ++i) {
        const double e = static_cast<double>(x[i]) - y[static_cast<size_t>(i)];
        sse += e * e;
      }
      if (!(std::fabs(row.error.sse - sse) <= 1e-5 * sse)) {
        std::printf("%s: layer %d head %d: sse %.9g, reference %.9g\n", spec, row.layer, row.head,
                    row.error.sse, sse);
        return false;
      }
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  kvq::bench::Setup(argc, argv);  // --target=NAME, the machine line.
  kvq::bench::RequireValid(MeasureDumpMatchesTheReference(),
                           "every strategy's error sums equal the scalar reference's "
                           "(layers 0-1, relative 1e-5)");
  benchmark::AddCustomContext("simd_target", kvq::SimdTarget());
  benchmark::AddCustomContext("input", "Qwen2.5-0.5B-shaped K+V, 4096 tokens, 50.3 MB fp16");
  benchmark::AddCustomContext(
      "reference", "STREAM triad 54 GB/s (2 thr), llama.cpp q8_0 row quantizer 16.7 GB/s (1 thr)");
  benchmark::AddCustomContext("target", ">= 27 GB/s for int8 strategies, <= 50 ms per strategy");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
#endif  // HWY_ONCE
