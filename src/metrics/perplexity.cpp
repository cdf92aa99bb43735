#include "kvq/metrics/perplexity.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kvq/common/csv.h"
#include "kvq/common/error.h"
#include "kvq/common/fast_math.h"
#include "kvq/common/huge_pages.h"
#include "kvq/common/layout.h"
#include "kvq/quant/quantize.h"

namespace kvq {
namespace {

bool NeedsCalibration(const Strategy& strategy, const ModelConfig& c) {
  for (KvTensor tensor : {KvTensor::kK, KvTensor::kV})
    for (int l = 0; l < c.num_layers; ++l)
      for (int h = 0; h < c.num_kv_heads; ++h)
        if (strategy.Format(tensor, l, h).NeedsStats()) return true;
  return false;
}

LayerContext MakeContext(const ModelConfig& c, int64_t chunk_len, const float* k_bias,
                         std::shared_ptr<const RopeTable> rope) {
  LayerContext ctx;
  ctx.num_kv_heads = c.num_kv_heads;
  ctx.head_dim = c.head_dim;
  ctx.chunk_len = chunk_len;
  ctx.rope = std::move(rope);
  if (k_bias) ctx.k_bias.assign(k_bias, k_bias + c.num_kv_heads * c.head_dim);
  return ctx;
}

// Baseline pass: records, for every strategy that needs it, the statistics
// of each (tensor, layer, kv head) over the whole stream.
class CalibrationHook : public LayerHook {
 public:
  CalibrationHook(const ModelConfig& c, const std::vector<const Strategy*>& strategies,
                  std::shared_ptr<const RopeTable> rope)
      : c_(c), strategies_(strategies), rope_(std::move(rope)), stats_(strategies.size()) {}

  void OnKV(LayerKV& kv) override {
    const LayerContext ctx = MakeContext(c_, kv.chunk_len, kv.k_bias, rope_);
    buffer_.resize(static_cast<size_t>(kv.tokens * c_.num_kv_heads * c_.head_dim));
    for (KvTensor tensor : {KvTensor::kK, KvTensor::kV}) {
      ToHeadMajor(tensor == KvTensor::kK ? kv.k : kv.v, kv.tokens, c_.num_kv_heads, c_.head_dim,
                  buffer_.data());
      for (size_t s = 0; s < strategies_.size(); ++s) {
        auto& per_layer = stats_[s][static_cast<int>(tensor)];
        per_layer.push_back(CalibrateLayer(*strategies_[s], tensor, kv.layer, ctx, buffer_));
      }
    }
  }

  // [strategy][tensor][layer]
  std::vector<std::array<std::vector<LayerStats>, 2>>& stats() { return stats_; }

 private:
  const ModelConfig& c_;
  std::vector<const Strategy*> strategies_;
  std::shared_ptr<const RopeTable> rope_;
  std::vector<std::array<std::vector<LayerStats>, 2>> stats_;
  std::vector<float> buffer_;
};

class QuantizeHook : public LayerHook {
 public:
  QuantizeHook(const ModelConfig& c, const Strategy& strategy,
               const std::array<std::vector<LayerStats>, 2>* stats,
               std::shared_ptr<const RopeTable> rope)
      : c_(c), strategy_(strategy), stats_(stats), rope_(std::move(rope)) {}

  void OnKV(LayerKV& kv) override {
    const LayerContext ctx = MakeContext(c_, kv.chunk_len, kv.k_bias, rope_);
    buffer_.resize(static_cast<size_t>(kv.tokens * c_.num_kv_heads * c_.head_dim));
    for (KvTensor tensor : {KvTensor::kK, KvTensor::kV}) {
      float* x = tensor == KvTensor::kK ? kv.k : kv.v;
      ToHeadMajor(x, kv.tokens, c_.num_kv_heads, c_.head_dim, buffer_.data());
      const LayerStats* stats =
          stats_ ? &(*stats_)[static_cast<int>(tensor)][static_cast<size_t>(kv.layer)] : nullptr;
      QuantizeLayer(strategy_, tensor, kv.layer, ctx, buffer_, buffer_, stats);
      ToTokenMajor(buffer_.data(), kv.tokens, c_.num_kv_heads, c_.head_dim, x);
    }
  }

 private:
  const ModelConfig& c_;
  const Strategy& strategy_;
  const std::array<std::vector<LayerStats>, 2>* stats_;
  std::shared_ptr<const RopeTable> rope_;
  std::vector<float> buffer_;
};

struct LogSoftmax {
  double max = 0, log_sum = 0;  // log p(v) = logit(v) - max - log_sum
  int64_t argmax = 0;
};

// The reductions below are `omp simd` loops: without -ffast-math the compiler
// may not reorder a floating-point reduction on its own, and a scalar loop
// over 150k logits per token and strategy would dominate kvq ppl. The order
// is fixed by the build's vector width, so results are reproducible.
float MaxLogit(const float* logits, int64_t vocab) {
  float max = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : max)
  for (int64_t v = 0; v < vocab; ++v) max = std::max(max, logits[v]);
  return max;
}

// Fills exps[v] = exp(logits[v] - max) and returns the normaliser. The exps
// are a loop of their own so that it vectorises; the sum is in double:
// log_sum feeds the KL through the difference of two normalisers, which must
// not carry the ~1e-5 error of a float sum over 150k terms.
LogSoftmax Normalizer(const float* logits, int64_t vocab, float* exps) {
  LogSoftmax n;
  const float max = MaxLogit(logits, vocab);
  n.argmax = std::find(logits, logits + vocab, max) - logits;  // The first, as argmax picks.
  FastExpShifted(logits, max, exps, vocab);
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t v = 0; v < vocab; ++v) sum += exps[v];
  n.max = max;
  n.log_sum = std::log(sum);
  return n;
}

}  // namespace

void PredictionStats::Merge(const PredictionStats& other) {
  predictions += other.predictions;
  nll_sum += other.nll_sum;
  kl_sum += other.kl_sum;
  kl_max = std::max(kl_max, other.kl_max);
  top1_agree += other.top1_agree;
}

double PredictionStats::ppl() const { return std::exp(nll()); }

namespace {

// The baseline's next-token distribution p (in place of the exps Normalizer
// left): p(v) = exp(logit(v) - max) / sum.
void Probabilities(const LogSoftmax& n, int64_t vocab, float* exps) {
  const auto inverse_sum = static_cast<float>(std::exp(-n.log_sum));
  for (int64_t v = 0; v < vocab; ++v) exps[v] *= inverse_sum;
}

// KL(p || q) = sum_v p(v) (lp(v) - lq(v)) with lp - lq = (b - q) - (shift_b - shift_q):
// no exp per term, and no cancellation between two large log-probabilities.
double Kl(const float* p, const float* base, const float* quant, int64_t vocab,
          const LogSoftmax& nb, const LogSoftmax& nq) {
  const double shift = (nb.max + nb.log_sum) - (nq.max + nq.log_sum);
  double kl = 0;
#pragma omp simd reduction(+ : kl)
  for (int64_t v = 0; v < vocab; ++v) {
    kl += static_cast<double>(p[v]) * ((static_cast<double>(base[v]) - quant[v]) - shift);
  }
  return std::max(0.0, kl);
}

double Nll(const float* logits, const LogSoftmax& n, int32_t target) {
  return -(logits[target] - n.max - n.log_sum);
}

}  // namespace

TokenComparison CompareNextToken(const float* base, const float* quant, int64_t vocab,
                                 int32_t target) {
  KVQ_CHECK(target >= 0 && target < vocab);
  std::vector<float> p(static_cast<size_t>(vocab)), scratch(p.size());
  const LogSoftmax nb = Normalizer(base, vocab, p.data());
  Probabilities(nb, vocab, p.data());
  const LogSoftmax nq = Normalizer(quant, vocab, scratch.data());
  return {Nll(base, nb, target), Nll(quant, nq, target), Kl(p.data(), base, quant, vocab, nb, nq),
          nb.argmax == nq.argmax};
}

PerplexityReport EvaluatePerplexity(
    Model& model, std::span<const int32_t> ids, int64_t chunk_len,
    const std::vector<Strategy>& strategies,
    const std::function<void(const PerplexityProgress&)>& progress) {
  const ModelConfig& c = model.config();
  const auto tokens = static_cast<int64_t>(ids.size());
  if (chunk_len <= 0) chunk_len = tokens;
  if (tokens == 0 || tokens % chunk_len != 0) {
    ThrowInput("--chunk-len {} does not divide the {} tokens", chunk_len, tokens);
  }
  if (chunk_len < 2) ThrowInput("--chunk-len must be at least 2 to predict a next token");
  const KvGeometry geometry{c.num_layers, c.num_kv_heads, c.head_dim};
  for (const Strategy& s : strategies) s.Validate(geometry);

  auto rope = std::make_shared<const RopeTable>(c.rope, c.head_dim, chunk_len);
  auto report_layers = [&](const std::string& phase) {
    return [&progress, phase, &c](int done) {
      if (progress) progress({phase, done, c.num_layers});
    };
  };

  // Baseline, with calibration for the strategies that need it.
  std::vector<const Strategy*> to_calibrate;
  std::vector<int> calibration_index(strategies.size(), -1);
  for (size_t s = 0; s < strategies.size(); ++s) {
    if (NeedsCalibration(strategies[s], c)) {
      calibration_index[s] = static_cast<int>(to_calibrate.size());
      to_calibrate.push_back(&strategies[s]);
    }
  }
  CalibrationHook calibration(c, to_calibrate, rope);
  std::vector<float> base_hidden;
  model.Forward(ids, chunk_len, to_calibrate.empty() ? nullptr : &calibration, &base_hidden,
                report_layers("baseline"));

  std::vector<std::vector<float>> hidden(strategies.size());
  for (size_t s = 0; s < strategies.size(); ++s) {
    const auto* stats = calibration_index[s] >= 0
                            ? &calibration.stats()[static_cast<size_t>(calibration_index[s])]
                            : nullptr;
    QuantizeHook hook(c, strategies[s], stats, rope);
    model.Forward(ids, chunk_len, &hook, &hidden[s], report_layers(strategies[s].name));
  }

  // Logits in blocks of rows; each block's baseline logits serve every strategy.
  PerplexityReport report;
  report.tokens = tokens;
  report.chunk_len = chunk_len;
  const int64_t prompts = tokens / chunk_len;
  report.baseline_prompts.resize(static_cast<size_t>(prompts));
  report.strategies.resize(strategies.size());
  for (size_t s = 0; s < strategies.size(); ++s) {
    report.strategies[s].strategy = strategies[s].name;
    report.strategies[s].calibrated = calibration_index[s] >= 0;
    report.strategies[s].prompts.resize(static_cast<size_t>(prompts));
  }
  const int64_t V = c.vocab_size, H = c.hidden_size;
  // Rows per lm_head call: OpenBLAS packs the whole [V, H] weight on every
  // call, so fewer, larger calls (256 rows: 3 x 156 MB of logits for a
  // 152k vocabulary) pack it 4x less often than 64-row ones.
  const int64_t block = std::min<int64_t>(256, tokens);
  HugeVector<float> base_logits(static_cast<size_t>(block * V)), logits(base_logits.size()),
      probs(base_logits.size());
  std::vector<LogSoftmax> base_norm(static_cast<size_t>(block));
  const int64_t blocks = (tokens + block - 1) / block;
  auto predicts = [&](int64_t t) {
    return (t + 1) % chunk_len != 0;
  };  // A prompt's last token does not.
  auto next = [&](int64_t t) { return ids[static_cast<size_t>(t + 1)]; };
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t first = b * block, rows = std::min(block, tokens - first);
    model.Logits(base_hidden.data() + first * H, rows, base_logits.data());
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      base_norm[static_cast<size_t>(r)] =
          Normalizer(base_logits.data() + r * V, V, probs.data() + r * V);
      Probabilities(base_norm[static_cast<size_t>(r)], V, probs.data() + r * V);
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t t = first + r;
      if (!predicts(t)) continue;
      PredictionStats& p = report.baseline_prompts[static_cast<size_t>(t / chunk_len)];
      ++p.predictions;
      p.nll_sum += Nll(base_logits.data() + r * V, base_norm[static_cast<size_t>(r)], next(t));
      ++p.top1_agree;
    }
    for (size_t s = 0; s < strategies.size(); ++s) {
      model.Logits(hidden[s].data() + first * H, rows, logits.data());
      std::vector<TokenComparison> row_results(static_cast<size_t>(rows));
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        if (!predicts(first + r)) continue;
        const float* quant = logits.data() + r * V;
        const float* base = base_logits.data() + r * V;
        const LogSoftmax& nb = base_norm[static_cast<size_t>(r)];
        static thread_local std::vector<float> exps;  // The quantized row's, unused after.
        exps.resize(static_cast<size_t>(V));
        const LogSoftmax nq = Normalizer(quant, V, exps.data());
        row_results[static_cast<size_t>(r)] = {0, Nll(quant, nq, next(first + r)),
                                               Kl(probs.data() + r * V, base, quant, V, nb, nq),
                                               nb.argmax == nq.argmax};
      }
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t t = first + r;
        if (!predicts(t)) continue;
        const TokenComparison& cmp = row_results[static_cast<size_t>(r)];
        PredictionStats& p = report.strategies[s].prompts[static_cast<size_t>(t / chunk_len)];
        ++p.predictions;
        p.nll_sum += cmp.nll;
        p.kl_sum += cmp.kl;
        p.kl_max = std::max(p.kl_max, cmp.kl);
        p.top1_agree += cmp.top1_agree ? 1 : 0;
      }
    }
    if (progress) progress({"logits", static_cast<int>(b + 1), static_cast<int>(blocks)});
  }
  for (const auto& p : report.baseline_prompts) report.baseline.Merge(p);
  for (auto& s : report.strategies)
    for (const auto& p : s.prompts) s.total.Merge(p);
  return report;
}

}  // namespace kvq

namespace kvq {
namespace {

nlohmann::ordered_json FiguresJson(const PredictionStats& s, const PredictionStats& base) {
  return {{"nll", s.nll()},
          {"ppl", s.ppl()},
          {"delta_ppl", s.ppl() - base.ppl()},
          {"kl_mean", s.kl_mean()},
          {"kl_max", s.kl_max},
          {"top1_agree", s.top1()},
          {"predictions", s.predictions}};
}

void CsvRows(std::string& out, const std::string& name, const PredictionStats& total,
             const std::vector<PredictionStats>& prompts, const PredictionStats& base_total,
             const std::vector<PredictionStats>& base_prompts) {
  auto row = [&](const std::string& prompt, const PredictionStats& s, const PredictionStats& b) {
    out += fmt::format("{},{},{},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g}\n", CsvField(name),
                       prompt, s.predictions, s.nll(), s.ppl(), s.ppl() - b.ppl(), s.kl_mean(),
                       s.kl_max, s.top1());
  };
  row("all", total, base_total);
  for (size_t p = 0; p < prompts.size(); ++p) row(std::to_string(p), prompts[p], base_prompts[p]);
}

}  // namespace

std::string PerplexityJson(const PerplexityReport& report) {
  nlohmann::ordered_json j;
  j["tokens"] = report.tokens;
  j["chunk_len"] = report.chunk_len;
  auto& base = j["baseline"];
  base["nll"] = report.baseline.nll();
  base["ppl"] = report.baseline.ppl();
  base["tokens"] = report.baseline.predictions;
  base["prompts"] = nlohmann::ordered_json::array();
  for (const auto& p : report.baseline_prompts)
    base["prompts"].push_back({{"nll", p.nll()}, {"ppl", p.ppl()}, {"tokens", p.predictions}});
  j["strategies"] = nlohmann::ordered_json::array();
  for (const auto& s : report.strategies) {
    nlohmann::ordered_json entry = {{"strategy", s.strategy}, {"calibrated", s.calibrated}};
    entry.update(FiguresJson(s.total, report.baseline));
    entry["prompts"] = nlohmann::ordered_json::array();
    for (size_t p = 0; p < s.prompts.size(); ++p)
      entry["prompts"].push_back(FiguresJson(s.prompts[p], report.baseline_prompts[p]));
    j["strategies"].push_back(std::move(entry));
  }
  return j.dump(2) + "\n";
}

std::string PerplexityCsv(const PerplexityReport& report) {
  std::string out = "strategy,prompt,predictions,nll,ppl,delta_ppl,kl_mean,kl_max,top1_agree\n";
  CsvRows(out, "baseline", report.baseline, report.baseline_prompts, report.baseline,
          report.baseline_prompts);
  for (const auto& s : report.strategies)
    CsvRows(out, s.strategy, s.total, s.prompts, report.baseline, report.baseline_prompts);
  return out;
}

}  // namespace kvq
