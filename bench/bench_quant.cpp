// Quantize + dequantize + error of the whole K/V of a Qwen2.5-0.5B-shaped
// 4096-token dump (24 layers x 2 kv heads x 4096 x 64, K and V: 50.3 MB of
// fp16), per strategy. bytes_per_second counts that fp16 input.
//
// Reference figures (../shared/notes/performance.md, 2 threads): STREAM
// triad 54 GB/s, read-only 39 GB/s; llama.cpp's q8_0 row quantizer 16.7 GB/s
// on 1 thread. Target: >= 27 GB/s (half the triad bandwidth) for the int8
// strategies, at most 50 ms per strategy.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>
#include <memory>

#include "kvq/capture/dump.h"
#include "kvq/metrics/tensor_error.h"
#include "kvq/quant/quantize.h"
#include "kvq/quant/synthetic.h"

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
    ctx = kvq::LayerContext::ForDump(info, dump->ReadKBias(0));
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

const char* kStrategies[] = {"fp16",   "strat1",       "strat2",
                             "strat3", "int8:channel", "k=int4:g32:token,v=int4:g32:dim",
                             "q8_0",   "fp8e4m3"};

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

BENCHMARK(BM_MeasureDump)->DenseRange(0, 7)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_QuantizeLayer)->DenseRange(0, 3)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
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
