// Peak memory of capture, attn and ppl over one long prompt on a
// random-weight Qwen2.5-0.5B-shaped model (bf16 weights), beside the 8 GiB
// bound of docs/long-context.md. Each command runs in its own child process
// (fork), and the parent reads the child's peak resident set from wait4's
// rusage (ru_maxrss), so the figures do not mix. Prints one line per
// command: tokens, peak RSS, the bound and the wall time.
//
//   bench_long_context [TOKENS...]   (default 4096; e.g. 8192 16384 32768)
//
// The model is written once under $TMPDIR/kvq-bench-models (about 1 GB); the
// dump of the capture step goes to a temporary folder and is removed.
// Figures: docs/long-context.md.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "bench_common.h"
#include "kvq/capture/capture.h"
#include "kvq/capture/dump.h"
#include "kvq/common/random.h"
#include "kvq/metrics/attention_fidelity.h"
#include "kvq/metrics/perplexity.h"
#include "kvq/model/random_model.h"

namespace {

constexpr double kBoundMiB = 8192;
constexpr const char* kStrategy = "int4:g32:token";

// Runs `body` in a child process; prints its peak RSS and wall time.
// Returns whether it succeeded.
bool Measure(const char* name, int64_t tokens, const std::function<void()>& body) {
  std::fflush(stdout);
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) return false;
  if (pid == 0) {
    try {
      body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s\n", name, e.what());
      ::_exit(1);
    }
    ::_exit(0);
  }
  int status = 0;
  rusage usage{};
  if (::wait4(pid, &status, 0, &usage) != pid) return false;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double peak_mib = static_cast<double>(usage.ru_maxrss) / 1024;  // ru_maxrss is in KiB.
  const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  std::printf("%-8s %6lld tokens: peak RSS %8.0f MiB  (bound %.0f MiB: %s)  %7.1f s%s\n", name,
              static_cast<long long>(tokens), peak_mib, kBoundMiB,
              peak_mib <= kBoundMiB ? "within" : "OVER", seconds, ok ? "" : "  FAILED");
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  kvq::bench::Setup(argc, argv);
  std::vector<int64_t> lengths;
  for (int i = 1; i < argc; ++i) lengths.push_back(std::atoll(argv[i]));
  if (lengths.empty()) lengths.push_back(4096);
  const auto model_dir = kvq::bench::QwenBf16ModelDir();
  const auto scratch =
      std::filesystem::temp_directory_path() / ("kvq-bench-long-" + std::to_string(::getpid()));
  std::filesystem::create_directories(scratch);
  bool ok = true;
  for (const int64_t tokens : lengths) {
    kvq::SplitMix64 rng(static_cast<uint64_t>(tokens));
    std::vector<int32_t> ids(static_cast<size_t>(tokens));
    for (auto& id : ids) id = static_cast<int32_t>(rng.Next() % kvq::kQwenVocabSize);
    const auto dump = scratch / "kv.safetensors";
    ok &= Measure("capture", tokens, [&] {
      kvq::Model model = kvq::Model::Load(model_dir);
      kvq::Capture(model, ids, {}, dump);
    });
    ok &= Measure("attn", tokens, [&] {
      const kvq::KvDump kv = kvq::KvDump::Open(dump);
      const kvq::Strategy strategy = kvq::Strategy::Parse(kStrategy);
      kvq::LayerReference ref;
      kvq::FidelityWorkspace workspace;
      for (int layer = 0; layer < kv.info().num_layers; ++layer) {
        ref.Load(kv, layer);
        kvq::EvaluateLayer(ref, strategy, workspace);
      }
    });
    ok &= Measure("ppl", tokens, [&] {
      kvq::Model model = kvq::Model::Load(model_dir);
      kvq::EvaluatePerplexity(model, ids, tokens, {kvq::Strategy::Parse(kStrategy)});
    });
    std::filesystem::remove(dump);
  }
  std::filesystem::remove_all(scratch);
  return ok ? 0 : 1;
}
