// Peak memory of capture, attn and ppl over one long prompt on a
// random-weight Qwen2.5-0.5B-shaped model (bf16 weights), beside the 8 GiB
// bound of docs/long-context.md. Each command runs in its own child process
// (fork), and the parent reads the child's peak resident set from wait4's
// rusage (ru_maxrss), so the figures do not mix. Prints one line per
// command: tokens, peak RSS, the bound and the wall time, after a check of
// the command's result in a further child ("validated: ..."): the capture's
// q, k and v at its first two and last positions against the scalar forward
// pass (bench/common/scalar_forward.h), attn's attention output against a
// scalar softmax, and ppl's baseline nll on the first 4 tokens against the
// scalar forward pass's logits.
//
//   bench_long_context [TOKENS...]   (default 4096; e.g. 8192 16384 32768)
//
// The model is written once under $TMPDIR/kvq-bench-models (about 1 GB); the
// dump of the capture step goes to a temporary folder and is removed.
// Figures: docs/long-context.md.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
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
#include "scalar_forward.h"

namespace {

constexpr double kBoundMiB = 8192;
constexpr const char* kStrategy = "int4:g32:token";

// Runs `body` in a child process; returns whether it exited with status 0
// and, through `peak_mib`, its peak resident set (wait4's ru_maxrss).
bool RunInChild(const char* name, const std::function<void()>& body, double& peak_mib) {
  std::fflush(stdout);
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
  peak_mib = static_cast<double>(usage.ru_maxrss) / 1024;  // ru_maxrss is in KiB.
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// One command: what it runs, and the check of its result (which calls
// RequireValid).
struct Step {
  const char* name;
  std::function<void()> body, check;
};

// Runs the body in a child process, then the check in another, so that the
// check neither counts in the figures nor grows this process before the next
// fork; prints the line of peak RSS and wall time unless the check failed.
// Returns whether both succeeded.
bool Measure(const Step& step, int64_t tokens) {
  const auto start = std::chrono::steady_clock::now();
  double peak_mib = 0, check_peak_mib = 0;
  const bool ok = RunInChild(step.name, step.body, peak_mib);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (ok && !RunInChild(step.name, step.check, check_peak_mib)) return false;
  std::printf("%-8s %6lld tokens: peak RSS %8.0f MiB  (bound %.0f MiB: %s)  %7.1f s%s\n", step.name,
              static_cast<long long>(tokens), peak_mib, kBoundMiB,
              peak_mib <= kBoundMiB ? "within" : "OVER", seconds, ok ? "" : "  FAILED");
  return ok;
}

// The attention output of the dump's last layer, as `attn` computes it
// (LayerReference::Load), at the first and the last token of every query
// head against ScalarAttention over the dump's q, k and v (float32 sums
// against double ones: measured 1.1e-6 at 1024 tokens; bench_attn's bound).
void RequireAttentionMatchesScalar(const std::filesystem::path& dump_path) {
  constexpr double kBound = 1e-5;
  const kvq::KvDump kv = kvq::KvDump::Open(dump_path);
  kvq::LayerReference ref;
  ref.Load(kv, kv.info().num_layers - 1);
  const int64_t last = ref.shape.tokens - 1;
  double worst = 0;
  for (int head = 0; head < ref.shape.num_heads; ++head) {
    for (const int64_t token : {int64_t{0}, last}) {
      worst = std::max(worst, kvq::bench::AttentionErrorVsScalar(ref, head, token));
    }
  }
  char what[200];
  std::snprintf(what, sizeof what,
                "attn %lld tokens: the last layer's attention output at tokens 0 and %lld of every "
                "head matches the scalar double softmax (worst %.2g; bound %.0g)",
                static_cast<long long>(last + 1), static_cast<long long>(last), worst, kBound);
  kvq::bench::RequireValid(worst <= kBound, what);
}

}  // namespace

int main(int argc, char** argv) {
  kvq::bench::Setup(argc, argv);
  std::vector<int64_t> lengths;
  for (int i = 1; i < argc; ++i) lengths.push_back(std::atoll(argv[i]));
  if (lengths.empty()) lengths.push_back(4096);
  const auto model_dir = kvq::bench::RandomBf16ModelDir();
  const auto scratch =
      std::filesystem::temp_directory_path() / ("kvq-bench-long-" + std::to_string(::getpid()));
  std::filesystem::create_directories(scratch);
  bool ok = true;
  for (const int64_t tokens : lengths) {
    kvq::SplitMix64 rng(static_cast<uint64_t>(tokens));
    std::vector<int32_t> ids(static_cast<size_t>(tokens));
    for (auto& id : ids) id = static_cast<int32_t>(rng.Next() % kvq::kQwenVocabSize);
    const auto dump = scratch / "kv.safetensors";
    // The capture's checks: positions 0 and 1 (no history) and the last,
    // whose attention reads the tokens in between from the dump (f16,
    // rounding 2^-11 relative; bench_forward measured worst 4.7e-4 at 4096).
    const std::vector<int64_t> positions = {0, 1, tokens - 1};
    const Step steps[] = {
        {"capture",
         [&] {
           kvq::Model model = kvq::Model::Load(model_dir);
           kvq::Capture(model, ids, {}, dump);
         },
         [&] {
           kvq::bench::RequireDumpMatchesScalarForward(model_dir, dump, 0, positions, 5e-3,
                                                       "capture " + std::to_string(tokens));
         }},
        {"attn",
         [&] {
           const kvq::KvDump kv = kvq::KvDump::Open(dump);
           const kvq::Strategy strategy = kvq::Strategy::Parse(kStrategy);
           kvq::LayerReference ref;
           kvq::FidelityWorkspace workspace;
           for (int layer = 0; layer < kv.info().num_layers; ++layer) {
             ref.Load(kv, layer);
             kvq::EvaluateLayer(ref, strategy, workspace);
           }
         },
         [&] { RequireAttentionMatchesScalar(dump); }},
        {"ppl",
         [&] {
           kvq::Model model = kvq::Model::Load(model_dir);
           kvq::EvaluatePerplexity(model, ids, tokens, {kvq::Strategy::Parse(kStrategy)});
         },
         [&] {
           kvq::bench::RequirePerplexityMatchesScalarForward(model_dir, ids,
                                                             "ppl " + std::to_string(tokens));
         }},
    };
    for (const Step& step : steps) {
      ok = Measure(step, tokens);
      if (!ok) break;
    }
    std::filesystem::remove(dump);
    if (!ok) break;
  }
  std::filesystem::remove_all(scratch);
  return ok ? 0 : 1;
}
