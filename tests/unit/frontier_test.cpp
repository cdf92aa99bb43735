// The compression frontier: the planner's ladder of budgets on a synthetic
// Qwen-shaped dump with planted outlier heads (monotone predictions, each
// plan measured beside its prediction), the smallest cache per quality
// target, and the frontier figure.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kvq/capture/dump.h"
#include "kvq/capture/synthetic.h"
#include "kvq/common/csv.h"
#include "kvq/common/io.h"
#include "kvq/plan/planner.h"
#include "kvq/report/frontier.h"
#include "kvq/report/report.h"
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

// The Qwen2.5-0.5B geometry with the default planted outliers, one prompt of
// 64 tokens (to stay fast).
TEST(Frontier, LadderOnAPlantedOutlierDumpIsMonotoneAndMeasuredBesidePredicted) {
  test::ScratchDir dir;
  const auto path = dir / "kv.safetensors";
  SyntheticDumpOptions o;
  o.tokens = 64;
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

// A run folder of "Qwen/Qwen2.5-0.5B" on C4 holding only what the frontier
// reads: per strategy its bytes/token (spread over the 96 units of
// quant.csv), one layer at `worst` cosine (the others at 0.99999), its mean
// KL, and run.json's plans with their predictions.
struct Point {
  std::string name;
  double bytes, worst, kl;
  bool plan;
};
std::string FrontierHtml(const test::ScratchDir& dir, const std::vector<Point>& points) {
  const std::filesystem::path out = dir / "run";
  std::filesystem::create_directories(out / "Q" / "c4");
  std::string q =
      "strategy,tensor,layer,head,format,tokens,head_dim,max_abs,sse,mse,nmse,sqnr_db,"
      "bytes_per_token\n";
  std::string a = "strategy,layer,head,nmse,cos,cos_min\n";
  nlohmann::ordered_json ppl = {{"baseline", {{"nll", 2.0}, {"ppl", 7.39}, {"tokens", 4088}}},
                                {"strategies", nlohmann::ordered_json::array()}};
  nlohmann::ordered_json plans = nlohmann::ordered_json::array();
  for (const Point& p : points) {
    for (int l = 0; l < 24; ++l) {
      for (const char* t : {"k", "v"}) {
        for (int h = 0; h < 2; ++h) {
          q += fmt::format("{},{},{},{},int8:token,4096,64,1,1,1,0.01,20,{}\n", p.name, t, l, h,
                           CsvNumber(p.bytes / 96));
        }
      }
      a += fmt::format("{},{},all,0.001,{},0.9\n", p.name, l, l == 7 ? p.worst : 0.99999);
    }
    ppl["strategies"].push_back({{"strategy", p.name},
                                 {"calibrated", false},
                                 {"nll", 2.0},
                                 {"ppl", 7.4},
                                 {"delta_ppl", 0.01},
                                 {"kl_mean", p.kl},
                                 {"kl_max", 1.0},
                                 {"top1_agree", 0.99}});
    if (p.plan) plans.push_back({{"name", p.name}, {"status", "ok"}, {"predicted_worst_cos", 0.5}});
  }
  plans.push_back({{"name", "plan-1"}, {"status", "infeasible: below the cheapest plan"}});
  WriteTextFileAtomic(out / "Q" / "c4" / "quant.csv", q);
  WriteTextFileAtomic(out / "Q" / "c4" / "attn.csv", a);
  WriteTextFileAtomic(out / "Q" / "c4" / "ppl.json", ppl.dump(1));
  WriteTextFileAtomic(out / "Q" / "bytes.csv",
                      "strategy,bytes_per_token,per_sequence_bytes,fraction_of_fp16\n");
  nlohmann::ordered_json run = {
      {"schema", "kvq.run.v1"},
      {"settings",
       {{"corpora", {"c4"}},
        {"tokens", 4096},
        {"chunk_len", 512},
        {"strategies", "x"},
        {"floor", 0.99}}},
      {"models",
       {{{"model", "Qwen/Qwen2.5-0.5B"},
         {"dir", "/nowhere"},
         {"folder", "Q"},
         {"geometry",
          {{"num_layers", 24}, {"num_heads", 14}, {"num_kv_heads", 2}, {"head_dim", 64}}},
         {"corpora",
          {{{"corpus", "c4"}, {"folder", "Q/c4"}, {"tokens", 4096}, {"plans", plans}}}}}}}};
  WriteTextFileAtomic(out / "run.json", run.dump(1));
  return ReadTextFile(report::BuildReport(out).html);
}

TEST(FrontierReport, SmallestCachePerTargetAndTheMoonshotVerdict) {
  const std::vector<Point> reached = {{"plan-1536", 1536, 0.95, 0.2, true},
                                      {"plan-2304", 2304, 0.991, 0.02, true},
                                      {"plan-3456", 3456, 0.9985, 0.004, true},
                                      {"q8_0", 6528, 0.99995, 0.005, false},
                                      {"strat3", 6720, 0.998, 0.006, false}};
  test::ScratchDir dir;
  const std::string html = FrontierHtml(dir, reached);
  // 3,456 bytes/token: 3456 * 32768 / 2^20 = 108 MiB, 3456 / 12288 = 28.125%.
  for (const char* text :
       {"(a) every layer's attention cosine &ge; 0.998: <b>3456 bytes/token</b> (108.0 MiB at 32k "
        "tokens, 28.1% of fp16): <code>plan-3456</code> (worst-layer cos 0.9985 at layer 7",
        "(b) every layer's attention cosine &ge; 0.99: <b>2304 bytes/token</b> (72.0 MiB at 32k "
        "tokens, 18.8% of fp16): <code>plan-2304</code>",
        "(c) mean KL &le; q8_0's (0.005): <b>3456 bytes/token</b>", "<b>Moonshot reached</b>",
        "<code>plan-1</code>: infeasible",
        // The plan's measured worst cosine beside its prediction.
        "<td>0.998500</td><td>7</td><td>0.500000</td>"}) {
    EXPECT_NE(html.find(text), std::string::npos) << text;
  }
  // Half of strat3 misses 0.998: not reached, and which half says so.
  std::vector<Point> missed = reached;
  missed[2].worst = 0.9975;
  test::ScratchDir dir2;
  const std::string html2 = FrontierHtml(dir2, missed);
  for (const char* text :
       {"<b>Moonshot not reached</b>", "half of strat3, <b>not reached</b>",
        "2,304 bytes/token, <b>reached</b>",
        "(a) every layer's attention cosine &ge; 0.998: <b>6528 bytes/token</b>"}) {
    EXPECT_NE(html2.find(text), std::string::npos) << text;
  }
}

}  // namespace
}  // namespace kvq
