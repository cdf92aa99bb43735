#pragma once
// End-to-end quality: the model's next-token predictions with each layer's K
// and V replaced by their quantized-then-dequantized values (QuantizeLayer,
// the one quantization path) before attention reads them, compared with the
// unquantized run.
//
// The loss at position t predicts token t + 1 inside its prompt, so a prompt
// of L tokens gives L - 1 predictions. Per token, with p the baseline and q
// the quantized next-token distribution:
//   nll  = -log q(next token)            (the baseline's own: -log p)
//   kl   = KL(p || q) = sum_v p(v) (log p(v) - log q(v))
//   top1 = argmax p == argmax q
// Log-probabilities come from a max-subtracted log-sum-exp in double.
//
// Formats whose scale is sequence-global (int8:tensor, channel scales, fp8,
// nvfp4) take it from a calibration pass: the statistics of the baseline
// run's K and V over the whole token stream, as a deployment would calibrate
// offline. Per-token and per-block formats need none.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "kvq/model/model.h"
#include "kvq/quant/strategy.h"

namespace kvq {

struct PredictionStats {
  int64_t predictions = 0;
  double nll_sum = 0;  // Sum of -log q(next).
  double kl_sum = 0;
  double kl_max = 0;
  int64_t top1_agree = 0;

  void Merge(const PredictionStats& other);
  double nll() const { return predictions ? nll_sum / static_cast<double>(predictions) : 0; }
  double ppl() const;
  double kl_mean() const { return predictions ? kl_sum / static_cast<double>(predictions) : 0; }
  double top1() const {
    return predictions ? static_cast<double>(top1_agree) / static_cast<double>(predictions) : 0;
  }
};

// One token's comparison: base and quant are [vocab] logits. Returns the
// quantized side's nll of `target`, KL(base || quant) (clamped at 0: rounding
// can leave a value of order 1e-12 below it) and whether the argmaxes agree.
struct TokenComparison {
  double base_nll = 0, nll = 0, kl = 0;
  bool top1_agree = false;
};
TokenComparison CompareNextToken(const float* base, const float* quant, int64_t vocab,
                                 int32_t target);

struct StrategyQuality {
  std::string strategy;
  bool calibrated = false;  // Some format took its scale from the calibration pass.
  PredictionStats total;
  std::vector<PredictionStats> prompts;
};

struct PerplexityReport {
  int64_t tokens = 0;
  int64_t chunk_len = 0;
  PredictionStats baseline;  // kl = 0, top1 = 1 by construction.
  std::vector<PredictionStats> baseline_prompts;
  std::vector<StrategyQuality> strategies;
};

struct PerplexityProgress {
  std::string phase;  // "baseline", a strategy name, or "logits"
  int done = 0, total = 0;
};

// Runs the baseline once, then each strategy; logits are streamed in blocks
// of rows (never [tokens, vocab] at once).
PerplexityReport EvaluatePerplexity(
    Model& model, std::span<const int32_t> ids, int64_t chunk_len,
    const std::vector<Strategy>& strategies,
    const std::function<void(const PerplexityProgress&)>& progress = {});

}  // namespace kvq

namespace kvq {

// The report as JSON: {"tokens", "chunk_len", "baseline": {nll, ppl, tokens
// (predictions), prompts: [...]}, "strategies": [{strategy, calibrated, nll,
// ppl, delta_ppl, kl_mean, kl_max, top1_agree, predictions, prompts: [...]}]}.
std::string PerplexityJson(const PerplexityReport& report);
// One row per (strategy, prompt) plus a prompt=all row per strategy:
// strategy,prompt,predictions,nll,ppl,delta_ppl,kl_mean,kl_max,top1_agree
// (the baseline appears as strategy "baseline").
std::string PerplexityCsv(const PerplexityReport& report);

}  // namespace kvq
