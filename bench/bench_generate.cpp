// Decode throughput: tokens/s of incremental decoding (kvq generate's
// Decoder) at a 4096-token context on a random-weight Qwen2.5-0.5B-shaped
// model (bf16 weights on disk), with an fp16 cache and with int4:g32:token.
// The prefill (Model::Forward over the context) is outside the timed loop;
// each timed step is one Model::ForwardAt + lm_head + argmax. Decoding reads
// the float32 weights Model::ForwardAt widened once (not again per token).
//
// Measured 2026-12-03 on the shared 2-core AMD EPYC (AVX2, OpenBLAS Zen,
// load average 6 to 8 from other jobs, so noisy), 16 steps after a 4096-token
// prefill: fp16 cache 1.07 tokens/s, int4:g32:token 0.56 tokens/s (not
// investigated; same decode path, the difference may be load). Before one-row
// products used sgemv: 0.17 tokens/s. Each step still reads float32 weights
// (about 2 GB with the lm_head): reading the bf16 checkpoint directly would
// halve that traffic.
//
// Arguments (after the benchmark flags): the context length (default 4096).
// The model is written once under $TMPDIR/kvq-bench-models (about 1 GB).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "bench_common.h"
#include "kvq/common/random.h"
#include "kvq/generate/generate.h"
#include "kvq/model/random_model.h"

namespace {

int64_t g_context = 4096;
constexpr int kSteps = 16;

std::filesystem::path ModelDir() {
  const auto dir =
      std::filesystem::temp_directory_path() / "kvq-bench-models" / "qwen2.5-0.5b-bf16";
  if (!std::filesystem::exists(dir / "config.json")) {
    std::fprintf(stderr, "writing %s (once) ...\n", dir.c_str());
    kvq::WriteRandomModel(kvq::FindModelPreset("qwen2.5-0.5b").config, 1, kvq::DType::kBF16, dir);
  }
  return dir;
}

void Decode(benchmark::State& state, const std::string& spec) {
  kvq::Model model = kvq::Model::Load(ModelDir());
  const int vocab = model.config().vocab_size;
  kvq::SplitMix64 rng(42);
  std::vector<int32_t> prompt(static_cast<size_t>(g_context));
  for (auto& id : prompt) id = static_cast<int32_t>(rng.Next() % static_cast<uint64_t>(vocab));
  const kvq::Strategy strategy = kvq::Strategy::Parse(spec);
  double seconds = 0;
  int64_t steps = 0;
  for (auto _ : state) {
    state.PauseTiming();
    kvq::Decoder decoder(model, &strategy);
    const std::vector<float>* logits = &decoder.Prefill(prompt);
    // One untimed step widens the resident weights on the first iteration.
    logits = &decoder.Step(
        static_cast<int32_t>(std::max_element(logits->begin(), logits->end()) - logits->begin()));
    state.ResumeTiming();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kSteps; ++i) {
      const auto next =
          static_cast<int32_t>(std::max_element(logits->begin(), logits->end()) - logits->begin());
      logits = &decoder.Step(next);
    }
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    steps += kSteps;
  }
  const double tokens_per_s = static_cast<double>(steps) / seconds;
  state.counters["tok_per_s"] = tokens_per_s;
  std::printf("decode %s at context %lld: %.2f tokens/s (%lld steps)\n", spec.c_str(),
              static_cast<long long>(g_context), tokens_per_s, static_cast<long long>(steps));
}

}  // namespace

int main(int argc, char** argv) {
  kvq::bench::Setup(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (argc > 1) g_context = std::max<int64_t>(1, std::atoll(argv[1]));
  for (const char* spec : {"fp16", "int4:g32:token"}) {
    benchmark::RegisterBenchmark((std::string("Decode/") + spec).c_str(),
                                 [spec](benchmark::State& s) { Decode(s, spec); })
        ->Iterations(1)
        ->Unit(benchmark::kSecond)
        ->UseRealTime();
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
