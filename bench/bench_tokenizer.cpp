// Tokenizer throughput: encode the whole wikitext-2 test file (the raw file's
// bytes, 1.29 MB, 299,078 ids with the Qwen2.5 tokenizer) on one thread.
//
// Reference (notes/performance.md, this machine kind): Hugging Face
// tokenizers 0.22 (Rust) through the @anush008/tokenizers binding, 1 thread:
// 1.5-2.1 s, i.e. 0.6-0.8 MB/s. Target >= 0.8 MB/s; stretch 10x (8 MB/s).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <vector>

#include "bench_common.h"
#include "kvq/common/io.h"
#include "kvq/tokenizer/corpus.h"
#include "kvq/tokenizer/tokenizer.h"

namespace {

constexpr double kReferenceMBps = 0.8;  // best of the 0.6-0.8 MB/s range
constexpr double kStretchMBps = 8.0;

const kvq::Tokenizer& Qwen() {
  static const kvq::Tokenizer tokenizer =
      kvq::Tokenizer::Load(kvq::DataDir() / "tokenizer/qwen2.5");
  return tokenizer;
}

const std::string& WikitextRaw() {
  static const std::string text =
      kvq::ReadTextFile(kvq::DataDir() / "wikitext-2-raw-v1/wiki.test.raw");
  return text;
}

void BM_EncodeWikitextRaw(benchmark::State& state) {
  const kvq::Tokenizer& tokenizer = Qwen();
  const std::string& text = WikitextRaw();
  size_t ids = 0;
  for (auto _ : state) {
    const std::vector<int32_t> encoded = tokenizer.Encode(text);
    ids = encoded.size();
    benchmark::DoNotOptimize(encoded.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["ids"] = static_cast<double>(ids);
  state.counters["MB/s"] = benchmark::Counter(static_cast<double>(text.size()) / 1e6,
                                              benchmark::Counter::kIsIterationInvariantRate);
  state.counters["ref_MB/s"] = kReferenceMBps;
  state.counters["stretch_MB/s"] = kStretchMBps;
}
// Rates use CPU time: the machine is shared, so wall time (the Time column)
// includes waiting for a core.
BENCHMARK(BM_EncodeWikitextRaw)->Unit(benchmark::kMillisecond);

// What capture asks for: the first 4096 ids of each built-in corpus
// (corpus reading and assembly included).
void BM_CorpusTokens4096(benchmark::State& state, const char* corpus) {
  const kvq::Tokenizer& tokenizer = Qwen();
  for (auto _ : state) {
    benchmark::DoNotOptimize(kvq::CorpusTokens(tokenizer, corpus, 4096).data());
  }
}
BENCHMARK_CAPTURE(BM_CorpusTokens4096, wikitext, "wikitext")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_CorpusTokens4096, c4, "c4")->Unit(benchmark::kMillisecond);

void BM_LoadTokenizer(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        kvq::Tokenizer::Load(kvq::DataDir() / "tokenizer/qwen2.5").vocab_size());
  }
}
BENCHMARK(BM_LoadTokenizer)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace

int main(int argc, char** argv) {
  kvq::bench::Setup(argc, argv);
  {
    // Hugging Face's tokenizer gives 299,078 ids for this file, and byte-level
    // BPE decodes back to the exact text.
    const std::vector<int32_t> ids = Qwen().Encode(WikitextRaw());
    kvq::bench::RequireValid(
        ids.size() == 299078 && Qwen().Decode(ids) == WikitextRaw(),
        "wiki.test.raw encodes to Hugging Face's 299,078 ids and decodes back to the same text");
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::printf(
      "Reference: Hugging Face tokenizers 0.22 (Rust), 1 thread, whole wiki.test.raw: "
      "0.6-0.8 MB/s (1.5-2.1 s). Target >= %.1f MB/s, stretch %.1f MB/s.\n",
      kReferenceMBps, kStretchMBps);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
