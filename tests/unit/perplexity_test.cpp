// kvq ppl: baseline NLL against the fixtures' reference logits, KL against a
// direct double computation, and the quantized cache's effect end to end.
#include "kvq/metrics/perplexity.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "kvq/capture/capture.h"
#include "kvq/common/io.h"
#include "kvq/common/random.h"
#include "test_util.h"

namespace kvq {
namespace {

// log-softmax in double, straight from the definition.
std::vector<double> LogSoftmaxDouble(const float* logits, int64_t n) {
  double max = logits[0];
  for (int64_t i = 1; i < n; ++i) max = std::max(max, static_cast<double>(logits[i]));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(logits[i] - max);
  std::vector<double> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = logits[i] - max - std::log(sum);
  return out;
}

TEST(Perplexity, CompareNextTokenMatchesDoubleReference) {
  SplitMix64 rng(7);
  const int64_t vocab = 5000;
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> base(vocab), quant(vocab);
    const double spread = 1 + trial;  // From flat to very peaked distributions.
    for (int64_t v = 0; v < vocab; ++v) {
      base[v] = static_cast<float>(spread * rng.Normal());
      quant[v] = base[v] + static_cast<float>((trial % 4) * 0.05 * rng.Normal());
    }
    const auto target = static_cast<int32_t>(rng.Next() % vocab);
    const auto lp = LogSoftmaxDouble(base.data(), vocab);
    const auto lq = LogSoftmaxDouble(quant.data(), vocab);
    double kl = 0;
    int64_t argmax_b = 0, argmax_q = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      kl += std::exp(lp[v]) * (lp[v] - lq[v]);
      if (base[v] > base[argmax_b]) argmax_b = v;
      if (quant[v] > quant[argmax_q]) argmax_q = v;
    }
    const TokenComparison got = CompareNextToken(base.data(), quant.data(), vocab, target);
    EXPECT_NEAR(got.base_nll, -lp[target], 1e-5 * std::abs(lp[target]));
    EXPECT_NEAR(got.nll, -lq[target], 1e-5 * std::abs(lq[target]));
    EXPECT_NEAR(got.kl, kl, 1e-4 * kl + 1e-10) << "trial " << trial;
    EXPECT_GE(got.kl, 0.0);
    EXPECT_EQ(got.top1_agree, argmax_b == argmax_q);
  }
  // Identical distributions: KL exactly 0 after clamping, top-1 agrees.
  std::vector<float> same(vocab, 0.5f);
  same[3] = 2;
  const TokenComparison self = CompareNextToken(same.data(), same.data(), vocab, 3);
  EXPECT_LE(self.kl, 1e-12);
  EXPECT_TRUE(self.top1_agree);
}

class FixtureNll : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureNll, BaselineMatchesReferenceLogits) {
  const auto dir = test::DataDir() / GetParam();
  Model model = Model::Load(dir);
  const auto ids = ReadInputIdsJson(dir / "input_ids.json");
  const auto expected = SafeTensorsFile::Open(dir / "expected.safetensors");
  const TensorView& logits_view = expected.Get("logits");
  std::vector<float> logits(static_cast<size_t>(logits_view.numel()));
  logits_view.ToFloat(logits);
  const int64_t vocab = model.config().vocab_size;
  double nll = 0;
  for (size_t t = 0; t + 1 < ids.size(); ++t) {
    nll -= LogSoftmaxDouble(logits.data() + t * vocab, vocab)[static_cast<size_t>(ids[t + 1])];
  }
  nll /= static_cast<double>(ids.size() - 1);
  const PerplexityReport report =
      EvaluatePerplexity(model, ids, static_cast<int64_t>(ids.size()), {Strategy::Parse("fp16")});
  EXPECT_EQ(report.baseline.predictions, static_cast<int64_t>(ids.size()) - 1);
  EXPECT_NEAR(report.baseline.nll(), nll, 1e-4 * nll);
  // fp16 on an fp32 model: a tiny, non-negative KL and identical top-1.
  const StrategyQuality& fp16 = report.strategies[0];
  EXPECT_GE(fp16.total.kl_mean(), 0.0);
  EXPECT_LT(fp16.total.kl_mean(), 1e-4);
  // The check is for an fp32 model; on the others rounding K/V to
  // fp16 may flip a near-tie between the two top logits of a random model.
  if (GetParam() == "qwen2-tiny/sharded-f32") {
    EXPECT_EQ(fp16.total.top1(), 1.0);
  } else {
    EXPECT_GE(fp16.total.top1(), 0.98);
  }
  EXPECT_FALSE(fp16.calibrated);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureNll,
                         ::testing::Values("qwen2-tiny/tied-bf16", "qwen2-tiny/untied-f16-gqa4",
                                           "qwen2-tiny/sharded-f32", "llama-tiny/plain-f16",
                                           "qwen3-tiny/tied-bf16-headdim"),
                         test::FixtureTestName);

// Greedy continuation of `prompt` by the model itself: text the model predicts
// well, so that damage to its cache shows in the perplexity (a random-weight
// model predicts real text no better than chance).
std::vector<int32_t> GreedyText(Model& model, std::vector<int32_t> ids, size_t length) {
  const int64_t vocab = model.config().vocab_size;
  std::vector<float> hidden, logits(static_cast<size_t>(vocab));
  while (ids.size() < length) {
    model.Forward(ids, static_cast<int64_t>(ids.size()), nullptr, &hidden);
    model.Logits(hidden.data() + (ids.size() - 1) * model.config().hidden_size, 1, logits.data());
    ids.push_back(
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
  }
  return ids;
}

TEST(Perplexity, DestructiveFormatHurtsAndGlobalScalesAreCalibrated) {
  const auto dir = test::DataDir() / "qwen2-tiny/sharded-f32";
  Model model = Model::Load(dir);
  auto prompt = ReadInputIdsJson(dir / "input_ids.json");
  prompt.resize(16);
  const auto ids = GreedyText(model, prompt, 160);
  const PerplexityReport report = EvaluatePerplexity(
      model, ids, 80, {Strategy::Parse("strat2"), Strategy::Parse("int2:tensor")});
  ASSERT_EQ(report.baseline_prompts.size(), 2u);
  EXPECT_EQ(report.baseline.predictions, 2 * 79);
  const PredictionStats& int8 = report.strategies[0].total;
  const PredictionStats& int2 = report.strategies[1].total;
  EXPECT_FALSE(report.strategies[0].calibrated);
  EXPECT_TRUE(report.strategies[1].calibrated);
  EXPECT_GT(int2.kl_mean(), 100 * int8.kl_mean());
  EXPECT_GT(int2.ppl(), 1.2 * report.baseline.ppl());
  EXPECT_LT(std::abs(int8.ppl() - report.baseline.ppl()), 0.01 * report.baseline.ppl());
  EXPECT_LT(int2.top1(), int8.top1());
  // Per-prompt figures add up to the totals.
  int64_t predictions = 0;
  for (const auto& p : report.strategies[1].prompts) predictions += p.predictions;
  EXPECT_EQ(predictions, int2.predictions);
}

TEST(Perplexity, CliWritesJsonAndCsv) {
  test::ScratchDir dir;
  const auto model = test::DataDir() / "qwen2-tiny/untied-f16-gqa4";
  const auto result = test::RunKvq(
      "ppl --model " + model.string() + " --input-ids " + (model / "input_ids.json").string() +
      " --chunk-len 100 --strategy strat1,strat2 --json " + (dir / "p.json").string() + " --csv " +
      (dir / "p.csv").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto json = nlohmann::json::parse(ReadTextFile(dir / "p.json"));
  EXPECT_EQ(json["baseline"]["tokens"], 198);
  ASSERT_EQ(json["strategies"].size(), 2u);
  EXPECT_EQ(json["strategies"][0]["strategy"], "strat1");
  EXPECT_EQ(json["strategies"][0]["calibrated"], true);
  for (const char* key : {"nll", "ppl", "delta_ppl", "kl_mean", "kl_max", "top1_agree"}) {
    EXPECT_TRUE(json["strategies"][1].contains(key)) << key;
  }
  EXPECT_EQ(json["strategies"][1]["prompts"].size(), 2u);
  const std::string csv = ReadTextFile(dir / "p.csv");
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "strategy,prompt,predictions,nll,ppl,delta_ppl,kl_mean,kl_max,top1_agree");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 3 * 3);
  const auto bad = test::RunKvq("ppl --model " + model.string() + " --input-ids " +
                                (model / "input_ids.json").string() + " --strategy int9:tensor");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
}

}  // namespace
}  // namespace kvq
