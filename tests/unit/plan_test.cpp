// The planner: exact solvers against brute force, per-unit measurements
// against a full-layer evaluation, planted outliers found, the plan against
// uniform strategies and strat3, plan files, the frontier CSV and the CLI.
#include "kvq/plan/planner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <omp.h>

#include "kvq/capture/dump.h"
#include "kvq/capture/synthetic.h"
#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/common/random.h"
#include "kvq/plan/knapsack.h"
#include "test_util.h"

namespace kvq {
namespace {

// ---------------------------------------------------------------- solvers

TEST(CostGrid, MapsCostsExactly) {
  const std::vector<double> qwen{128, 64, 68, 48};
  const CostGrid g(qwen);
  EXPECT_EQ(g.step(), 4.0);
  EXPECT_EQ(g.Steps(68), 17);
  EXPECT_EQ(g.StepsWithin(6720), 1680);
  EXPECT_EQ(g.StepsWithin(6719.99), 1679);
  // int4:g32:dim+sink4 over prompts of 512: ((512 - 4) * 48 + 4 * 128) / 512.
  const double sink = (508.0 * 48 + 4 * 128) / 512;
  const std::vector<double> mixed{sink, 128, 1.0 / 3};
  const CostGrid m(mixed);
  EXPECT_DOUBLE_EQ(m.step(), 1.0 / 24);  // lcm(8, 3) = 24, gcd of the scaled costs 1.
  EXPECT_EQ(m.Steps(sink), 1167);
  EXPECT_EQ(m.Steps(1.0 / 3), 8);
  const std::vector<double> bad{std::sqrt(2.0)};
  EXPECT_THROW(CostGrid{bad}, InputError);
}

// Brute force: every combination, values summed in group order.
KnapsackSolution BruteForce(const std::vector<std::vector<KnapsackItem>>& groups,
                            int64_t capacity) {
  KnapsackSolution best;
  std::vector<int> idx(groups.size(), 0);
  while (true) {
    int64_t cost = 0;
    double value = 0;
    for (size_t g = 0; g < groups.size(); ++g) {
      cost += groups[g][static_cast<size_t>(idx[g])].cost;
      value += groups[g][static_cast<size_t>(idx[g])].value;
    }
    if (cost <= capacity &&
        (!best.feasible || value < best.value || (value == best.value && cost < best.cost))) {
      best.feasible = true;
      best.value = value;
      best.cost = cost;
      best.choice = idx;
    }
    size_t g = 0;
    while (g < groups.size() && ++idx[g] == static_cast<int>(groups[g].size())) idx[g++] = 0;
    if (g == groups.size()) return best;
  }
}

TEST(Knapsack, MatchesBruteForceOnRandomInstances) {
  SplitMix64 rng(7);
  int feasible = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::vector<std::vector<KnapsackItem>> groups(1 + rng.Next() % 5);
    int64_t max_total = 0;
    for (auto& g : groups) {
      g.resize(1 + rng.Next() % 4);
      int64_t hi = 0;
      for (auto& item : g) {
        item.cost = static_cast<int64_t>(rng.Next() % 9);
        // Coarse values make ties common; they must not change the optimum.
        item.value = std::round(rng.Uniform() * 8) / 4;
        hi = std::max(hi, item.cost);
      }
      max_total += hi;
    }
    const auto capacity = static_cast<int64_t>(rng.Next() % static_cast<uint64_t>(max_total + 2));
    const KnapsackSolution dp = SolveMultipleChoiceKnapsack(groups, capacity);
    const KnapsackSolution bf = BruteForce(groups, capacity);
    ASSERT_EQ(dp.feasible, bf.feasible) << "trial " << trial;
    if (!bf.feasible) continue;
    ++feasible;
    EXPECT_EQ(dp.value, bf.value) << "trial " << trial;
    EXPECT_EQ(dp.cost, bf.cost) << "trial " << trial;  // The least cost among optima.
    int64_t cost = 0;
    double value = 0;
    for (size_t g = 0; g < groups.size(); ++g) {
      cost += groups[g][static_cast<size_t>(dp.choice[g])].cost;
      value += groups[g][static_cast<size_t>(dp.choice[g])].value;
    }
    EXPECT_EQ(cost, dp.cost);
    EXPECT_EQ(value, dp.value);
    EXPECT_LE(cost, capacity);
  }
  EXPECT_GT(feasible, 200);
}

// Non-finite figures never reach the table as such: costs are refused by the
// grid (InputError), NaN and -inf values by the solver (RuntimeError naming
// the group and item), and +inf values are chosen only when nothing else fits.
TEST(Knapsack, NonFiniteCostsAndValuesAreRefusedByName) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const double cost : {nan, kInf, -kInf, -1.0}) {
    const std::vector<double> costs{64, cost};
    EXPECT_THROW(CostGrid{costs}, InputError) << cost;
  }
  for (const double value : {nan, -kInf}) {
    const std::vector<std::vector<KnapsackItem>> groups{{{0, 1.0}, {1, 0.5}},
                                                        {{0, 2.0}, {1, value}}};
    try {
      SolveMultipleChoiceKnapsack(groups, 2);
      ADD_FAILURE() << "value " << value << " was accepted";
    } catch (const RuntimeError& e) {
      EXPECT_NE(std::string(e.what()).find("group 1 item 1 has the value"), std::string::npos)
          << e.what();
    }
  }
  const std::vector<std::vector<KnapsackItem>> groups{{{0, kInf}, {1, 3.0}}, {{0, 2.0}, {1, 1.0}}};
  const KnapsackSolution roomy = SolveMultipleChoiceKnapsack(groups, 2);
  ASSERT_TRUE(roomy.feasible);
  EXPECT_EQ(roomy.choice, (std::vector<int>{1, 1}));
  EXPECT_EQ(roomy.value, 4.0);
  const KnapsackSolution forced = SolveMultipleChoiceKnapsack(groups, 0);
  ASSERT_TRUE(forced.feasible);
  EXPECT_EQ(forced.choice, (std::vector<int>{0, 0}));
  EXPECT_EQ(forced.value, kInf);
}

// A hand-built table: `layers` layers, 1 kv head (2 units per layer), the
// candidates fp16 (128 B), int8:token (68), int8:tensor (64), int4:g32:dim
// (48) with random deficits and nmse (fp16 exact: 0).
UnitTable RandomTable(SplitMix64& rng, int layers) {
  UnitTable t;
  t.geometry = {layers, 1, 64};
  t.chunk_len = 128;
  t.k_formats = ParseFormatList("fp16,int8:token,int8:tensor,int4:g32:dim");
  t.v_formats = t.k_formats;
  for (int l = 0; l < layers; ++l) {
    for (KvTensor tensor : {KvTensor::kK, KvTensor::kV}) {
      UnitMeasure u;
      u.tensor = tensor;
      u.layer = l;
      u.head = 0;
      for (const FormatSpec& f : t.k_formats) {
        CandidateMeasure c;
        c.bytes_per_token = FormatCost(f, 64, 128).per_token;
        const bool exact = f.kind == FormatKind::kFp16;
        c.deficit = exact ? 0 : std::round(rng.Uniform() * 64) / 4096;
        c.nmse = exact ? 0 : rng.Uniform() * 1e-2;
        u.candidates.push_back(c);
      }
      t.units.push_back(u);
    }
  }
  return t;
}

// Brute force over every assignment: (max layer deficit, sum of layer
// deficits) lexicographically for worst-cos, the summed nmse for mean-nmse;
// sums in unit order from 0 as the planner defines them.
struct BruteBest {
  double worst = std::numeric_limits<double>::infinity(), total = 0, nmse = 0;
};
BruteBest BruteForcePlan(const UnitTable& t, PlanObjective objective, double budget) {
  BruteBest best;
  bool found = false;
  const size_t n = t.units.size();
  std::vector<int> idx(n, 0);
  while (true) {
    double bytes = 0, nmse = 0, worst = 0, total = 0;
    for (int l = 0; l < t.geometry.num_layers; ++l) {
      double d = 0;
      for (size_t u = static_cast<size_t>(l) * 2; u < static_cast<size_t>(l) * 2 + 2; ++u) {
        const auto& c = t.units[u].candidates[static_cast<size_t>(idx[u])];
        bytes += c.bytes_per_token;
        d += c.deficit;
        nmse += c.nmse;
      }
      worst = std::max(worst, d);
      total += d;
    }
    if (bytes <= budget) {
      const bool better =
          objective == PlanObjective::kMeanNmse
              ? (!found || nmse < best.nmse)
              : (!found || worst < best.worst || (worst == best.worst && total < best.total));
      if (better) best = {worst, total, nmse};
      found = true;
    }
    size_t u = 0;
    while (u < n && ++idx[u] == static_cast<int>(t.units[u].candidates.size())) idx[u++] = 0;
    if (u == n) break;
  }
  EXPECT_TRUE(found);
  return best;
}

TEST(Planner, SolverMatchesBruteForce) {
  SplitMix64 rng(11);
  for (int trial = 0; trial < 40; ++trial) {
    const int layers = 1 + static_cast<int>(rng.Next() % 3);  // Up to 4^6 assignments.
    const UnitTable t = RandomTable(rng, layers);
    const double lo = 48.0 * 2 * layers, hi = 128.0 * 2 * layers;
    const double budget = lo + std::floor(rng.Uniform() * (hi - lo + 1));
    for (PlanObjective objective : {PlanObjective::kWorstCos, PlanObjective::kMeanNmse}) {
      const PlanSolution plan = SolvePlan(t, objective, budget);
      const BruteBest bf = BruteForcePlan(t, objective, budget);
      EXPECT_LE(plan.bytes_per_token, budget);
      if (objective == PlanObjective::kWorstCos) {
        EXPECT_EQ(1.0 - plan.worst_cos, bf.worst) << "trial " << trial;
        double total = 0;
        for (double c : plan.layer_cos) total += 1.0 - c;
        EXPECT_NEAR(total, bf.total, 1e-15) << "trial " << trial;
      } else {
        EXPECT_NEAR(plan.mean_nmse * layers, bf.nmse, 1e-15) << "trial " << trial;
      }
    }
  }
}

TEST(Planner, BudgetBelowTheCheapestPlanNamesTheMinimum) {
  SplitMix64 rng(3);
  const UnitTable t = RandomTable(rng, 2);
  try {
    SolvePlan(t, PlanObjective::kWorstCos, 191.5);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("192.00 bytes/token"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(SolvePlan(t, PlanObjective::kWorstCos, 192));
}

TEST(Planner, FormatListsAndObjectives) {
  const auto d = DefaultPlanFormats();
  EXPECT_EQ(d.size(), 13u);
  EXPECT_EQ(d[0].Name(), "fp16");
  EXPECT_EQ(d.back().Name(), "fp8e4m3+had");
  EXPECT_EQ(ParseFormatList("int8:token,fp16,int8:token").size(), 2u);
  EXPECT_THROW(ParseFormatList("int8:tokn"), InputError);
  EXPECT_THROW(ParseFormatList("fp16,,int8:token"), InputError);
  EXPECT_EQ(ParsePlanObjective("mean-nmse"), PlanObjective::kMeanNmse);
  EXPECT_THROW(ParsePlanObjective("best"), InputError);
  const auto v_bad = ParseFormatList("int8:token+prerope");
  const auto ok = ParseFormatList("int8:token");
  EXPECT_THROW(ValidatePlanFormats(ok, v_bad, {2, 2, 64}), InputError);
  EXPECT_THROW(ValidatePlanFormats(ParseFormatList("int4:g48:dim"), ok, {2, 2, 64}), InputError);
  EXPECT_EQ(MinPlanBytes(ok, ParseFormatList("fp16,int4:g32:dim"), {24, 2, 64}, 512),
            68.0 * 48 + 48.0 * 48);
}

// ------------------------------------------------------- on synthetic dumps

// 4 layers, 4 query heads on 2 kv heads, two prompts of 128 tokens; outlier
// channels in K of (0, 0), (1, 1) and (2, 0) only (no k bias, whose layer-0
// channel would touch every head).
SyntheticDumpOptions SmallOptions() {
  SyntheticDumpOptions o;
  o.num_layers = 4;
  o.num_heads = 4;
  o.num_kv_heads = 2;
  o.tokens = 256;
  o.chunk_len = 128;
  o.has_k_bias = false;
  o.outlier_heads = {{0, 0}, {1, 1}, {2, 0}};
  return o;
}

TEST(Planner, UnitMeasurementEqualsAFullLayerEvaluation) {
  test::ScratchDir dir;
  const auto path = dir / "kv.safetensors";
  WriteSyntheticDump(path, SmallOptions());
  const KvDump dump = KvDump::Open(path);
  LayerReference ref;
  ref.Load(dump, 1);
  UnitTable t;
  t.geometry = {4, 2, 64};
  t.chunk_len = 128;
  t.k_formats = ParseFormatList("fp16,int8:tensor,int4:g32:token+had");
  t.v_formats = ParseFormatList("int8:token,fp8e4m3");
  UnitWorkspace uws;
  MeasureLayerUnits(ref, t, uws);
  FidelityWorkspace ws;
  // The same on one thread (the V candidates of a unit in one run) and on
  // 16 (one V candidate per run), bit for bit.
  const int threads = omp_get_max_threads();
  for (const int n : {1, 16}) {
    UnitTable other = t;
    other.units.clear();
    omp_set_num_threads(n);
    MeasureLayerUnits(ref, other, uws);
    omp_set_num_threads(threads);
    ASSERT_EQ(other.units.size(), t.units.size());
    for (size_t u = 0; u < t.units.size(); ++u) {
      for (size_t i = 0; i < t.units[u].candidates.size(); ++i) {
        EXPECT_EQ(other.units[u].candidates[i].deficit, t.units[u].candidates[i].deficit) << n;
        EXPECT_EQ(other.units[u].candidates[i].nmse, t.units[u].candidates[i].nmse) << n;
      }
    }
  }
  ASSERT_EQ(t.units.size(), 4u);
  for (size_t u = 0; u < t.units.size(); ++u) {
    const UnitMeasure& unit = t.units[u];
    EXPECT_EQ(unit.layer, 1);
    for (size_t i = 0; i < unit.candidates.size(); ++i) {
      const FormatSpec& f = t.Format(u, static_cast<int>(i));
      // Only this unit quantized; fp16 elsewhere is exact for an F16 dump.
      const Strategy s = Strategy::Parse(
          fmt::format("{}[1.{}]={}", KvTensorName(unit.tensor), unit.head, f.Name()));
      const LayerFidelity full = EvaluateLayer(ref, s, ws);
      const CandidateMeasure& c = unit.candidates[i];
      FidelityStats group;
      for (int h = 2 * unit.head; h < 2 * unit.head + 2; ++h) {
        group.Merge(full.heads[static_cast<size_t>(h)]);
        const int other = 2 * (1 - unit.head) + (h - 2 * unit.head);
        EXPECT_EQ(full.heads[static_cast<size_t>(other)].sum_sq_err, 0.0);
      }
      EXPECT_EQ(c.group.sum_sq_err, group.sum_sq_err) << f.Name();
      EXPECT_EQ(c.group.sum_cos, group.sum_cos) << f.Name();
      EXPECT_EQ(c.bytes_per_token, FormatCost(f, 64, 128).per_token);
      EXPECT_NEAR(c.nmse, full.all.nmse(), 1e-12 * full.all.nmse() + 1e-300) << f.Name();
      EXPECT_NEAR(c.deficit, 1.0 - full.all.cos(), 1e-13) << f.Name();
      if (f.kind == FormatKind::kFp16) {
        EXPECT_EQ(c.deficit, 0.0);
        EXPECT_EQ(c.nmse, 0.0);
      } else {
        EXPECT_GT(c.deficit, 0.0) << f.Name();
      }
    }
  }
}

TEST(Planner, FindsThePlantedOutlierHeads) {
  test::ScratchDir dir;
  const auto path = dir / "kv.safetensors";
  const SyntheticDumpOptions o = SmallOptions();
  WriteSyntheticDump(path, o);
  const KvDump dump = KvDump::Open(path);
  const auto formats = ParseFormatList("fp16,int8:tensor");
  const UnitTable t = MeasureUnits(dump, formats, formats);
  // Room for exactly three fp16 heads above int8 everywhere.
  const double budget = 64.0 * 16 + 3 * 64;
  for (PlanObjective objective : {PlanObjective::kWorstCos, PlanObjective::kMeanNmse}) {
    const PlanSolution plan = SolvePlan(t, objective, budget);
    std::set<std::pair<int, int>> marked;
    for (size_t u : Fp16Units(t, plan)) {
      EXPECT_EQ(t.units[u].tensor, KvTensor::kK);
      marked.insert({t.units[u].layer, t.units[u].head});
    }
    EXPECT_EQ(marked, (std::set<std::pair<int, int>>{{0, 0}, {1, 1}, {2, 0}}))
        << PlanObjectiveName(objective);
    EXPECT_EQ(plan.bytes_per_token, budget);
  }
  // With less room, the worst (layer 0's amplitude) comes first.
  const PlanSolution one = SolvePlan(t, PlanObjective::kWorstCos, 64.0 * 16 + 64);
  ASSERT_EQ(Fp16Units(t, one).size(), 1u);
  EXPECT_EQ(t.units[Fp16Units(t, one)[0]].layer, 0);
}

// The Qwen2.5-0.5B geometry (24 layers, 14 heads on 2 kv heads, head_dim
// 64) with the default synthetic outliers, at 2 x 64 tokens to stay fast.
TEST(Planner, AtTheStrat3BudgetBeatsStrat3AndEveryCheaperUniformStrategy) {
  test::ScratchDir dir;
  const auto path = dir / "kv.safetensors";
  SyntheticDumpOptions o;
  o.tokens = 128;
  o.chunk_len = 64;
  WriteSyntheticDump(path, o);
  const KvDump dump = KvDump::Open(path);
  PlannerOptions options;
  options.budget = 6720;
  const PlanResult r = MakePlan(dump, options);
  EXPECT_LE(r.plan.bytes_per_token, 6720);
  ASSERT_EQ(r.measured.layers.size(), 24u);

  // strat1 and strat2 are the uniform int8:tensor and int8:token below.
  std::vector<Strategy> others{Strategy::Parse("strat3"),
                               Strategy::Parse("k=int4:g32:token,v=int4:g32:dim"),
                               Strategy::Parse("k=int8:channel,v=int8:token")};
  for (const FormatSpec& f : DefaultPlanFormats()) others.push_back(Strategy::Parse(f.Name()));
  const KvGeometry g{24, 2, 64};
  std::erase_if(others, [&](const Strategy& s) {
    return s.Cost(g, 64).per_token > r.plan.bytes_per_token && s.name != "strat3";
  });
  EXPECT_GE(others.size(), 13u);
  const auto measured = MeasureStrategies(dump, others);
  for (const StrategyFidelity& s : measured) {
    EXPECT_GT(r.measured.worst_cos, s.worst_cos) << s.name;
  }
  EXPECT_EQ(measured[0].name, "strat3");
  // The prediction is close to the measurement (errors nearly add).
  EXPECT_NEAR(r.plan.worst_cos, r.measured.worst_cos, 0.1 * (1 - r.measured.worst_cos));
}

TEST(Planner, PlanFileLoadsBackAndFrontierIsMonotone) {
  test::ScratchDir dir;
  const auto path = dir / "kv.safetensors";
  WriteSyntheticDump(path, SmallOptions());
  const KvDump dump = KvDump::Open(path);
  PlannerOptions options;
  options.k_formats = ParseFormatList("fp16,int8:tensor,int8:token,int4:g32:token");
  options.v_formats = ParseFormatList("fp16,int8:token,int4:g32:dim");
  options.budget_ratio = 0.5;
  options.pareto_points = 5;
  const PlanResult r = MakePlan(dump, options);
  EXPECT_NEAR(r.plan.budget, 0.5 * 4 * 4 * 2 * 64, 1e-9);

  WriteTextFileAtomic(dir / "plan.json", PlanFileJson(r.table, r.plan, &r.measured));
  const Strategy loaded = Strategy::Parse("plan:" + (dir / "plan.json").string());
  loaded.Validate({4, 2, 64});
  for (size_t u = 0; u < r.table.units.size(); ++u) {
    const UnitMeasure& unit = r.table.units[u];
    EXPECT_EQ(loaded.Format(unit.tensor, unit.layer, unit.head),
              r.table.Format(u, r.plan.choice[u]));
  }
  EXPECT_EQ(loaded.Cost({4, 2, 64}, 128).per_token, r.plan.bytes_per_token);
  // Re-measured from the file: identical to the planner's own re-measurement.
  const auto again = MeasureStrategies(dump, std::vector<Strategy>{loaded});
  EXPECT_EQ(again[0].worst_cos, r.measured.worst_cos);
  EXPECT_EQ(again[0].mean_nmse, r.measured.mean_nmse);

  // Frontier: 5 plans, budgets from the cheapest (48 + 48 per unit... K
  // int4:g32:token, V int4:g32:dim) to all fp16, then the baselines.
  ASSERT_GE(r.pareto.size(), 5u);
  EXPECT_EQ(r.pareto[0].budget, 48.0 * 16);
  EXPECT_EQ(r.pareto[4].budget, 128.0 * 16);
  double last = -1;
  for (int i = 0; i < 5; ++i) {
    const ParetoRow& row = r.pareto[static_cast<size_t>(i)];
    EXPECT_EQ(row.kind, "plan");
    EXPECT_LE(row.bytes_per_token, row.budget);
    EXPECT_GE(row.pred_worst_cos, last);  // An exact optimum never gets worse with budget.
    last = row.pred_worst_cos;
  }
  EXPECT_EQ(r.pareto[4].measured.worst_cos, 1.0);  // All fp16: exact on an F16 dump.
  EXPECT_EQ(r.pareto[4].measured.mean_nmse, 0.0);
  EXPECT_EQ(r.pareto[4].fp16_units, 16);
  std::vector<std::string> baselines;
  for (size_t i = 5; i < r.pareto.size(); ++i) {
    EXPECT_EQ(r.pareto[i].kind, "baseline");
    baselines.push_back(r.pareto[i].strategy);
  }
  // Formats common to both lists, and strat3 (its outlier-head rules past
  // layer 3 do not apply to this 4-layer model).
  EXPECT_EQ(baselines, (std::vector<std::string>{"fp16", "int8:token", "strat3"}));
  const std::string csv = PlanFrontierCsv(r.pareto);
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "kind,strategy,budget,bytes_per_token,worst_cos,mean_nmse,worst_layer,mean_cos,"
            "pred_worst_cos,pred_mean_nmse,fp16_units");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), static_cast<long>(r.pareto.size() + 1));
  const std::string units = UnitCsv(r.table, &r.plan);
  EXPECT_EQ(std::count(units.begin(), units.end(), '\n'), 1 + 4 * 2 * (4 + 3));
}

// ---------------------------------------------------------------- the CLI

TEST(PlanCli, WritesAPlanThatAttnReads) {
  test::ScratchDir dir;
  const auto kv = (dir / "kv.safetensors").string();
  WriteSyntheticDump(kv, SmallOptions());
  const auto plan = (dir / "plan.json").string();
  const auto r = test::RunKvq(fmt::format(
      "plan --kv {} --budget 1216 --formats fp16,int8:tensor,int8:token --out {} --csv {} "
      "--pareto {} --pareto-points 3",
      kv, plan, (dir / "units.csv").string(), (dir / "pareto.csv").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("fp16 units (outlier heads): k[0.0] k[1.1] k[2.0]"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("measured:"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(dir / "units.csv"));
  EXPECT_TRUE(std::filesystem::exists(dir / "pareto.csv"));
  const auto a = test::RunKvq(fmt::format("attn --kv {} --strategy strat1,plan:{}", kv, plan));
  ASSERT_EQ(a.exit_code, 0) << a.output;
}

TEST(PlanCli, BadInputExitsTwoWithAClearMessage) {
  test::ScratchDir dir;
  const auto kv = (dir / "kv.safetensors").string();
  WriteSyntheticDump(kv, SmallOptions());
  const auto low = test::RunKvq(
      fmt::format("plan --kv {} --budget 100 --out {}", kv, (dir / "p.json").string()));
  EXPECT_EQ(low.exit_code, 2) << low.output;
  EXPECT_NE(low.output.find("below the cheapest plan"), std::string::npos) << low.output;
  EXPECT_NE(low.output.find("256.00 bytes/token"), std::string::npos) << low.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "p.json"));
  EXPECT_EQ(test::RunKvq(fmt::format("plan --kv {}", kv)).exit_code, 2);
  EXPECT_EQ(test::RunKvq(fmt::format("plan --kv {} --budget 0", kv)).exit_code, 2);
  EXPECT_EQ(test::RunKvq(fmt::format("plan --kv {} --budget 900 --budget-ratio 0.5", kv)).exit_code,
            2);
  const auto ratio = test::RunKvq(fmt::format("plan --kv {} --budget-ratio 0.05", kv));
  EXPECT_EQ(ratio.exit_code, 2);
  EXPECT_NE(ratio.output.find("--budget-ratio: 102.40 bytes/token"), std::string::npos)
      << ratio.output;
  const auto fmt_bad =
      test::RunKvq(fmt::format("plan --kv {} --budget 2000 --formats int8:tokn", kv));
  EXPECT_EQ(fmt_bad.exit_code, 2);
  EXPECT_NE(fmt_bad.output.find("--formats"), std::string::npos) << fmt_bad.output;
  const auto obj = test::RunKvq(fmt::format("plan --kv {} --budget 2000 --objective best", kv));
  EXPECT_EQ(obj.exit_code, 2);
  EXPECT_NE(obj.output.find("--objective"), std::string::npos) << obj.output;
  const auto out = test::RunKvq(fmt::format(
      "plan --kv {} --budget 2000 --out {}/no/such/dir/p.json", kv, dir.path().string()));
  EXPECT_EQ(out.exit_code, 1);  // an unwritable output is a runtime failure in every command
  EXPECT_NE(out.output.find("--out"), std::string::npos) << out.output;
}

}  // namespace
}  // namespace kvq
