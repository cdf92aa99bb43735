// Decode throughput: tokens/s of incremental decoding (kvq generate's
// Decoder) at a given context (default 4096) on a random-weight
// Qwen2.5-0.5B-shaped model (bf16 weights on disk), with an fp16 cache and
// with int4:g32:token, beside the prefill's tokens/s over the same context,
// and DecodeAttention alone at that context (no prefill: a quick figure at
// 32k). Each timed step is one Model::ForwardAt + lm_head + argmax; the weights are
// read as stored (bf16, MatVec), never copied to float32.
//
// Floor: decoding one token must read every weight once and the whole KV
// cache once, so at best it takes (those bytes) / (the machine's read
// bandwidth). The benchmark measures the bandwidth (a streaming read of
// 512 MiB, all threads, best of 5) and prints that floor and kvq's decode as
// a fraction of it. The cache is simulated (docs/generate.md): attention
// reads its float32 values, 4 bytes per element whatever the format.
//
// Anchor: llama.cpp's decode at the same depth, same machine, same session:
// bench/reference/llama/llama_decode.mjs (prebuilt llama.cpp from npm, the
// same model as a BF16 GGUF from bench/reference/write_gguf.py, f16 cache,
// 2 threads or --threads 1; what `llama-bench -d DEPTH -n 32` times). kvq's
// fp16-cache decode target: at least as fast. Figures: docs/long-context.md.
//
// Arguments (after the benchmark flags): the context length. The model is
// written once under $TMPDIR/kvq-bench-models (about 1 GB).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "bench_common.h"
#include "kvq/common/error.h"
#include "kvq/common/huge_pages.h"
#include "kvq/common/random.h"
#include "kvq/generate/generate.h"
#include "kvq/model/config.h"

namespace {

int64_t g_context = 4096;
constexpr int kSteps = 16;

// llama_decode.mjs on the project machine kind (2-core AMD EPYC, Zen 3, ggml
// haswell backend) at depth 4096, 2026-12-03, quiet machine, 2 threads:
// decode and prefill tokens/s.
constexpr double kLlamaCppDecode = 10.93, kLlamaCppPrefill = 58.1;

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Read bandwidth in bytes/s: a sum over a buffer far larger than the caches,
// every thread streaming its own part, best of 5. The sum is of 64-bit
// integers, which the compiler vectorises freely (a float sum may not be
// reordered without -ffast-math and would measure add latency instead).
double MeasureReadBandwidth() {
  constexpr size_t kWords = size_t{64} << 20;  // 512 MiB
  kvq::HugeVector<uint64_t> buffer(kWords);
  std::fill(buffer.begin(), buffer.end(), uint64_t{1});
  const uint64_t* data = buffer.data();
  double best = 0;
  for (int run = 0; run < 5; ++run) {
    const auto start = std::chrono::steady_clock::now();
    uint64_t sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
    for (size_t i = 0; i < kWords; ++i) sum += data[i];
    const double seconds = Seconds(start);
    benchmark::DoNotOptimize(sum);
    best = std::max(best, static_cast<double>(kWords * sizeof(uint64_t)) / seconds);
  }
  return best;
}

// Bytes one decode step must read: every weight matrix and the lm_head as
// stored (bf16: 2 bytes), and K and V of every layer and kv head at
// `context` tokens as the simulated cache holds them (float32).
double BytesPerToken(const kvq::ModelConfig& c, int64_t context) {
  const double H = c.hidden_size, D = c.head_dim, I = c.intermediate_size;
  const double attention = H * (c.num_heads + 2 * c.num_kv_heads) * D + c.num_heads * D * H;
  const double weights =
      c.num_layers * (attention + 3 * H * I) + static_cast<double>(c.vocab_size) * H;
  const double cache = 2.0 * c.num_layers * c.num_kv_heads * static_cast<double>(context) * D;
  return 2 * weights + 4 * cache;
}

void Decode(benchmark::State& state, const std::string& spec, double bandwidth) {
  kvq::Model model = kvq::Model::Load(kvq::bench::RandomBf16ModelDir());
  const int vocab = model.config().vocab_size;
  kvq::SplitMix64 rng(42);
  std::vector<int32_t> prompt(static_cast<size_t>(g_context));
  for (auto& id : prompt) id = static_cast<int32_t>(rng.Next() % static_cast<uint64_t>(vocab));
  const kvq::Strategy strategy = kvq::Strategy::Parse(spec);
  auto argmax = [](const std::vector<float>& logits) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  };
  double prefill_seconds = 0, decode_seconds = 0;
  int64_t steps = 0, prefills = 0;
  for (auto _ : state) {
    kvq::Decoder decoder(model, &strategy);
    auto start = std::chrono::steady_clock::now();
    const std::vector<float>* logits = &decoder.Prefill(prompt);
    prefill_seconds += Seconds(start);
    ++prefills;
    // One untimed step: the first scans each layer's weights for NaN/Inf.
    logits = &decoder.Step(argmax(*logits));
    start = std::chrono::steady_clock::now();
    for (int i = 0; i < kSteps; ++i) logits = &decoder.Step(argmax(*logits));
    decode_seconds += Seconds(start);
    steps += kSteps;
  }
  const double tokens_per_s = static_cast<double>(steps) / decode_seconds;
  const double prefill_per_s =
      static_cast<double>(prefills * g_context) / std::max(prefill_seconds, 1e-9);
  const double bytes = BytesPerToken(model.config(), g_context);
  const double floor_per_s = bandwidth / bytes;
  state.counters["tok_per_s"] = tokens_per_s;
  state.counters["prefill_tok_per_s"] = prefill_per_s;
  state.counters["of_floor"] = tokens_per_s / floor_per_s;
  std::printf(
      "%s at context %lld: prefill %.1f tokens/s; decode %.2f tokens/s (%lld steps); "
      "memory-bound floor %.2f tokens/s (%.3f GB per token at %.1f GB/s): decode at %.0f%% of "
      "it\n",
      spec.c_str(), static_cast<long long>(g_context), prefill_per_s, tokens_per_s,
      static_cast<long long>(steps), floor_per_s, bytes / 1e9, bandwidth / 1e9,
      100 * tokens_per_s / floor_per_s);
}

// DecodeAttention alone, as one decode step calls it: one new token at
// position context - 1, Qwen2.5-0.5B's 14 query heads on 2 kv heads of 64
// dims, over 24 layers' caches of random values (the 24 layers, 201 MB at
// 4k, do not fit the caches, as in a real step). Reports ms per token, the
// CPU seconds it took (all threads: wall time on a shared machine also counts
// other jobs) and the cache bytes read per wall second.
void Attention(benchmark::State& state) {
  constexpr int kLayers = 24, kHeads = 14, kKvHeads = 2, kHeadDim = 64;
  const auto per_head = static_cast<size_t>(g_context * kHeadDim);
  kvq::SplitMix64 rng(3);
  std::vector<std::vector<float>> k(kLayers * kKvHeads), v(kLayers * kKvHeads);
  for (auto* tensors : {&k, &v}) {
    for (auto& head : *tensors) {
      head.resize(per_head);
      for (float& x : head) x = static_cast<float>(rng.Uniform() * 2 - 1);
    }
  }
  std::vector<float> q(kHeads * kHeadDim), out(q.size());
  for (float& x : q) x = static_cast<float>(rng.Uniform() * 2 - 1);
  constexpr int kRepeats = 8;
  double seconds = 0, cpu_seconds = 0;
  for (auto _ : state) {
    const double cpu_start = kvq::bench::ProcessCpuSeconds();
    const auto start = std::chrono::steady_clock::now();
    for (int repeat = 0; repeat < kRepeats; ++repeat) {
      for (int layer = 0; layer < kLayers; ++layer) {
        const std::vector<const float*> kh = {k[2 * layer].data(), k[2 * layer + 1].data()};
        const std::vector<const float*> vh = {v[2 * layer].data(), v[2 * layer + 1].data()};
        kvq::DecodeAttention(kHeads, kKvHeads, kHeadDim, g_context - 1, 1, q.data(), kh, vh,
                             out.data());
      }
    }
    seconds = Seconds(start) / kRepeats;
    cpu_seconds = (kvq::bench::ProcessCpuSeconds() - cpu_start) / kRepeats;
    benchmark::DoNotOptimize(out.data());
  }
  const double bytes = 2.0 * kLayers * kKvHeads * static_cast<double>(per_head) * sizeof(float);
  state.counters["ms_per_token"] = 1e3 * seconds;
  state.counters["cpu_ms_per_token"] = 1e3 * cpu_seconds;
  state.counters["cache_GB_per_s"] = bytes / seconds / 1e9;
  std::printf(
      "DecodeAttention at context %lld: %.2f ms per token (24 layers; %.2f CPU ms), %.1f GB/s "
      "of cache read\n",
      static_cast<long long>(g_context), 1e3 * seconds, 1e3 * cpu_seconds, bytes / seconds / 1e9);
}

// Before timing: with an fp32 cache, three decode steps after a 32-token
// prefill give the logits of full forward passes over the same prefixes
// (within 5e-6 of the largest logit, the suite's bound).
bool DecodeMatchesFullForwardPasses() {
  kvq::Model model = kvq::Model::Load(kvq::bench::RandomBf16ModelDir());
  const int64_t vocab = model.config().vocab_size, hidden_size = model.config().hidden_size;
  kvq::SplitMix64 rng(7);
  std::vector<int32_t> ids(35);
  for (auto& id : ids) id = static_cast<int32_t>(rng.Next() % static_cast<uint64_t>(vocab));
  kvq::Decoder decoder(model, nullptr);
  const std::vector<float>* got = &decoder.Prefill(std::span(ids).first(32));
  std::vector<float> hidden, expected(static_cast<size_t>(vocab));
  for (size_t t = 32; t <= ids.size(); ++t) {
    if (t > 32) got = &decoder.Step(ids[t - 1]);
    const auto n = static_cast<int64_t>(t);
    model.Forward(std::span(ids).first(t), n, nullptr, &hidden);
    model.Logits(hidden.data() + (n - 1) * hidden_size, 1, expected.data());
    double largest = 0, worst = 0;
    for (int64_t i = 0; i < vocab; ++i) {
      const auto k = static_cast<size_t>(i);
      largest = std::max(largest, std::fabs(static_cast<double>(expected[k])));
      worst = std::max(worst, std::fabs(static_cast<double>((*got)[k]) - expected[k]));
    }
    if (!(worst <= 5e-6 * std::max(largest, 1.0))) {
      std::printf("decode after %zu tokens: off by %.3g\n", t, worst);
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  kvq::bench::Setup(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (argc > 1) g_context = std::max<int64_t>(1, std::atoll(argv[1]));
  // A run feeds tokens at positions context .. context + kSteps (one untimed
  // step, then kSteps timed ones).
  const auto config = kvq::ModelConfig::Load(kvq::bench::RandomBf16ModelDir() / "config.json");
  try {
    config.CheckPositions(g_context + kSteps + 1,
                          "bench_generate's context leaves no room for " +
                              std::to_string(kSteps + 1) + " decode steps; at most " +
                              std::to_string(config.max_position_embeddings - kSteps - 1));
  } catch (const kvq::InputError& e) {
    std::fprintf(stderr, "bench_generate: %s\n", e.what());
    return 2;
  }
  kvq::bench::RequireValid(DecodeMatchesFullForwardPasses(),
                           "fp32-cache decode steps give the full forward pass's logits");
  const double bandwidth = MeasureReadBandwidth();
  std::printf("read bandwidth %.1f GB/s (%d threads, streaming sum of 512 MiB, best of 5)\n",
              bandwidth / 1e9, omp_get_max_threads());
  std::printf(
      "Anchor: llama.cpp at this depth on this machine, same session: node "
      "bench/reference/llama/llama_decode.mjs --depth %lld\n  (BF16 GGUF from "
      "bench/reference/write_gguf.py, f16 cache; at depth 4096 on the project machine kind, "
      "quiet, 2 threads:\n  decode %.2f, prefill %.1f tokens/s); kvq's fp16-cache decode target: "
      "at least as fast.\n",
      static_cast<long long>(g_context), kLlamaCppDecode, kLlamaCppPrefill);
  benchmark::RegisterBenchmark("DecodeAttention", Attention)
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  for (const char* spec : {"fp16", "int4:g32:token"}) {
    benchmark::RegisterBenchmark(
        (std::string("Decode/") + spec).c_str(),
        [spec, bandwidth](benchmark::State& s) { Decode(s, spec, bandwidth); })
        ->Iterations(1)
        ->Unit(benchmark::kSecond)
        ->UseRealTime();
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
