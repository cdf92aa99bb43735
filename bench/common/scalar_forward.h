#pragma once
// A plain forward pass that benchmarks check the native one against before
// they print a figure: one token at a time, every sum in double, weights
// widened from the model folder as stored, no BLAS, no blocking, no threads.
// It follows the architectures as transformers writes them (Qwen2 q/k/v
// bias, Llama biases, Qwen3 per-head q/k RMSNorm; rotate-half RoPE with the
// angle in float32 as there, from RopeInverseFrequencies, which the golden
// fixtures test against transformers). Costs about one pass over the
// weights plus 2 x (parameters) flops per position: seconds for a 0.5B
// model, so benchmarks check a few positions, not whole prompts.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "kvq/capture/dump.h"
#include "kvq/metrics/attention_fidelity.h"

namespace kvq::bench {

// One position's results, token-major as LayerKV: per layer q [num_heads *
// head_dim], k and v [num_kv_heads * head_dim] (post-RoPE), and the logits
// [vocab_size] when asked for.
struct ScalarToken {
  std::vector<std::vector<double>> q, k, v;  // [num_layers][...]
  std::vector<double> logits;
};

// Where attention finds the k and v of positions the pass does not compute:
// the prompt's tokens stand at [first_token, first_token + prompt length) of
// `dump`.
struct DumpHistory {
  const KvDump* dump = nullptr;
  int64_t first_token = 0;
};

// Runs the tokens of one prompt at `positions` (ascending, each below
// prompt.size()). Attention at position t reads k and v of every s <= t: the
// pass's own where s is in `positions`, else history's (required then).
std::vector<ScalarToken> ScalarForward(const std::filesystem::path& model_dir,
                                       std::span<const int32_t> prompt,
                                       std::span<const int64_t> positions,
                                       const DumpHistory& history, bool with_logits);

// Softmax attention of one query over `count` keys and values, rows of
// head_dim: sum_s softmax_s(scale q . k_s) v_s, all in double.
template <class Query, class Row>
std::vector<double> ScalarAttention(const Query* query, const Row* keys, const Row* values,
                                    int64_t count, int head_dim, double scale) {
  std::vector<double> scores(static_cast<size_t>(count));
  for (int64_t s = 0; s < count; ++s) {
    double dot = 0;
    for (int d = 0; d < head_dim; ++d) {
      dot += static_cast<double>(query[d]) * static_cast<double>(keys[s * head_dim + d]);
    }
    scores[static_cast<size_t>(s)] = dot * scale;
  }
  const double top = *std::max_element(scores.begin(), scores.end());
  double total = 0;
  for (double& score : scores) total += score = std::exp(score - top);
  std::vector<double> out(static_cast<size_t>(head_dim));
  for (int64_t s = 0; s < count; ++s) {
    for (int d = 0; d < head_dim; ++d) {
      out[static_cast<size_t>(d)] +=
          scores[static_cast<size_t>(s)] / total * static_cast<double>(values[s * head_dim + d]);
    }
  }
  return out;
}

// ref.out at (head, token) against ScalarAttention over ref's q, k and v,
// causal inside the token's prompt: max |got - expected| / max(largest
// |expected|, 1).
double AttentionErrorVsScalar(const LayerReference& ref, int head, int64_t token);

// RequireValid (bench_common.h) that every layer's q, k and v in the dump at
// `dump_path`, at `positions` of prompt `prompt_index`, match ScalarForward
// (the rest of the prompt's k and v taken from the dump) within `bound`, as
// max |got - expected| / max |expected| per tensor and position. `label`
// starts the line.
void RequireDumpMatchesScalarForward(const std::filesystem::path& model_dir,
                                     const std::filesystem::path& dump_path, int64_t prompt_index,
                                     std::span<const int64_t> positions, double bound,
                                     const std::string& label);

// RequireValid that kvq ppl's baseline nll_sum over ids[0, 4) as one prompt
// (three predictions) matches -log softmax of ScalarForward's logits within
// 1e-6 relative (measured: 1e-8; float32 logits against double ones).
void RequirePerplexityMatchesScalarForward(const std::filesystem::path& model_dir,
                                           std::span<const int32_t> ids, const std::string& label);

}  // namespace kvq::bench
