// The compression frontier: the planner's ladder of budgets on a synthetic
// Qwen-shaped dump with planted outlier heads (monotone predictions, each
// plan measured beside its prediction), the smallest cache per quality
// target, and the frontier figure.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "kvq/capture/dump.h"
#include "kvq/plan/planner.h"
#include "kvq/quant/synthetic.h"
#include "kvq/report/frontier.h"
#include "svg_check.h"
#include "test_util.h"

namespace kvq {
namespace {

using report::FrontierEntry;

TEST(Frontier, LadderIsTheSameFractionsOfFp16) {
  const std::vector<double> qwen = LadderBudgets({24, 2, 64});
  EXPECT_EQ(qwen, (std::vector<double>{1536, 2304, 3456, 4608, 6720}));
  // strat3's size on Qwen2.5-0.5B is the top of the ladder, half of it the middle.
  EXPECT_EQ(Strategy::Parse("strat3").Cost({24, 2, 64}, 512).per_token, qwen[4]);
  const std::vector<double> tiny = LadderBudgets({2, 2, 16});
  const double fp16 = 2.0 * 2 * 2 * 2 * 16;
  ASSERT_EQ(tiny.size(), 5u);
  EXPECT_EQ(tiny[0], fp16 / 8);
  EXPECT_EQ(tiny[4], fp16 * 35 / 64);
}

// The Qwen2.5-0.5B geometry with the default planted outliers, 2 x 64 tokens.
TEST(Frontier, LadderOnAPlantedOutlierDumpIsMonotoneAndMeasuredBesidePredicted) {
  test::ScratchDir dir;
  const auto path = dir / "kv.safetensors";
  SyntheticDumpOptions o;
  o.tokens = 128;
  o.chunk_len = 64;
  WriteSyntheticDump(path, o);
  const KvDump dump = KvDump::Open(path);
  const auto k_formats = DefaultPlanFormats(KvTensor::kK, dump.info());
  const auto v_formats = DefaultPlanFormats(KvTensor::kV, dump.info());
  const UnitTable table = MeasureUnits(dump, k_formats, v_formats);
  const KvGeometry g{24, 2, 64};
  const double minimum = MinPlanBytes(k_formats, v_formats, g, 64);
  const double maximum = MaxPlanBytes(k_formats, v_formats, g, 64);
  // The ladder and a dense sweep from the cheapest plan to all fp16.
  std::vector<double> budgets = LadderBudgets(g);
  for (int i = 0; i <= 40; ++i) budgets.push_back(minimum + (maximum - minimum) * i / 40.0);
  std::sort(budgets.begin(), budgets.end());
  const auto rungs = SolveLadder(table, PlanObjective::kWorstCos, budgets);
  ASSERT_EQ(rungs.size(), budgets.size());
  double last = -1;
  int feasible = 0;
  for (const LadderRung& r : rungs) {
    if (!r.feasible) {
      EXPECT_LT(r.budget, minimum);
      EXPECT_NE(r.status.find("below the cheapest plan"), std::string::npos) << r.status;
      continue;
    }
    ++feasible;
    EXPECT_LE(r.plan.bytes_per_token, r.budget + 1e-9);
    // More bytes never predict a worse worst layer.
    EXPECT_GE(r.plan.worst_cos, last) << r.budget;
    last = r.plan.worst_cos;
  }
  EXPECT_GE(feasible, 41);
  EXPECT_EQ(rungs.back().plan.worst_cos, 1.0);  // All fp16 on an F16 dump.

  // The ladder's feasible plans, measured with every unit quantized: the
  // frontier entries carry the measurement beside the prediction.
  const auto ladder = SolveLadder(table, PlanObjective::kWorstCos, LadderBudgets(g));
  std::vector<Strategy> plans;
  std::map<std::string, double> predicted;
  std::vector<report::BytesRow> bytes;
  std::vector<report::AttnSummary> attention;
  for (size_t i = 0; i < ladder.size(); ++i) {
    if (!ladder[i].feasible) continue;
    Strategy s = ladder[i].plan.strategy;
    s.name = "plan-" + std::to_string(i);
    predicted[s.name] = ladder[i].plan.worst_cos;
    bytes.push_back({s.name, ladder[i].plan.bytes_per_token, 0, 0});
    plans.push_back(std::move(s));
  }
  ASSERT_GE(plans.size(), 2u);
  const auto measured = MeasureStrategies(dump, plans);
  for (const StrategyFidelity& m : measured) {
    report::AttnSummary a;
    a.strategy = m.name;
    a.worst_cos = m.worst_cos;
    a.worst_layer = m.worst_layer;
    for (size_t l = 0; l < m.layers.size(); ++l) a.cos[static_cast<int>(l)] = m.layers[l].all.cos();
    attention.push_back(a);
  }
  const auto entries = report::FrontierEntries(bytes, attention, nullptr, predicted);
  ASSERT_EQ(entries.size(), plans.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    EXPECT_TRUE(entries[i].plan);
    EXPECT_EQ(entries[i].worst_cos, measured[i].worst_cos);
    EXPECT_EQ(entries[i].predicted_worst_cos, predicted.at(entries[i].strategy));
    // Errors nearly add: the measurement lands near the prediction.
    EXPECT_NEAR(entries[i].worst_cos, entries[i].predicted_worst_cos,
                0.25 * (1 - entries[i].worst_cos) + 1e-6)
        << entries[i].strategy;
    if (i > 0) {
      EXPECT_GE(entries[i].bytes_per_token, entries[i - 1].bytes_per_token);
    }
  }
}

FrontierEntry E(const std::string& name, double bytes, double cos, double kl, bool plan = false) {
  FrontierEntry e;
  e.strategy = name;
  e.bytes_per_token = bytes;
  e.worst_cos = cos;
  e.worst_layer = 3;
  e.plan = plan;
  e.predicted_worst_cos = plan ? cos : std::numeric_limits<double>::quiet_NaN();
  e.kl_mean = kl;
  return e;
}

TEST(Frontier, SmallestCacheKeepingEachTarget) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<FrontierEntry> entries = {
      E("plan-1536", 1536, 0.95, 0.2, true), E("plan-2304", 2304, 0.991, 0.02, true),
      E("int2", 2304, 0.993, 0.03),          E("plan-3456", 3456, 0.9985, 0.004, true),
      E("q8_0", 6528, 0.9999, 0.005),        E("strat3", 6720, 0.998, nan)};
  const auto strict = report::SmallestWithCos(entries, 0.998);
  ASSERT_TRUE(strict);
  EXPECT_EQ(strict->strategy, "plan-3456");
  const auto loose = report::SmallestWithCos(entries, 0.99);
  ASSERT_TRUE(loose);
  EXPECT_EQ(loose->strategy, "int2");  // Same bytes as plan-2304, better cosine.
  EXPECT_FALSE(report::SmallestWithCos(entries, 0.99999));
  const auto kl = report::SmallestWithKl(entries, 0.005);
  ASSERT_TRUE(kl);
  EXPECT_EQ(kl->strategy, "plan-3456");
  EXPECT_FALSE(report::SmallestWithKl(entries, 0.001));
  EXPECT_DOUBLE_EQ(report::CacheMiB(6720), 6720.0 * 32768 / 1048576);  // 210 MiB
  EXPECT_DOUBLE_EQ(report::CacheMiB(12288), 384);

  const std::string svg = report::FrontierFigure(entries, "strat3", 0.005, "Qwen · c4");
  EXPECT_EQ(test::XmlError(svg), "");
  for (const char* text : {"plans (ladder)", "uniform strategies", "strat3 (reference study)",
                           "cos 0.998", "q8_0&apos;s KL", "plan-3456: 3456 bytes/token"}) {
    EXPECT_NE(svg.find(text), std::string::npos) << text;
  }
}

}  // namespace
}  // namespace kvq
