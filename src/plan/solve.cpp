// The planner's exact solver (step 3 of kvq/plan/planner.h), its budgets,
// and MakePlan, which runs every step.
#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include <fmt/format.h>

#include "kvq/capture/dump.h"
#include "kvq/common/error.h"
#include "kvq/plan/knapsack.h"
#include "kvq/plan/planner.h"
#include "plan/planner_internal.h"

namespace kvq {
namespace {

using plan_detail::Fp16Bytes;
using plan_detail::UnitName;

size_t UnitsPerLayer(const KvGeometry& g) { return 2 * static_cast<size_t>(g.num_kv_heads); }

// Bytes/token of the cheapest (or the costliest) plan: every unit in its
// cheapest (costliest) candidate.
double ExtremePlanBytes(std::span<const FormatSpec> k_formats,
                        std::span<const FormatSpec> v_formats, const KvGeometry& g,
                        int64_t prompt_len, bool costliest) {
  double total = 0;
  for (auto formats : {k_formats, v_formats}) {
    KVQ_CHECK(!formats.empty());
    double pick = FormatCost(formats[0], g.head_dim, prompt_len).per_token;
    for (const FormatSpec& f : formats) {
      const double c = FormatCost(f, g.head_dim, prompt_len).per_token;
      pick = costliest ? std::max(pick, c) : std::min(pick, c);
    }
    total += pick * g.num_layers * g.num_kv_heads;
  }
  return total;
}

[[noreturn]] void ThrowBudgetTooLow(double budget, double minimum) {
  ThrowInput(
      "budget {:.2f} bytes/token is below the cheapest plan with these formats: {:.2f} "
      "bytes/token (every unit in its cheapest format); raise the budget or add cheaper formats",
      budget, minimum);
}

// The frontier of one layer's (cost, deficit) combinations: costs strictly
// increasing, deficits strictly decreasing; each point remembers its
// per-unit choices.
struct FrontierPoint {
  int64_t cost = 0;
  double deficit = 0;
  std::vector<int> choice;
};

std::vector<FrontierPoint> LayerFrontier(const UnitTable& table, const CostGrid& grid,
                                         size_t first_unit, size_t count) {
  std::vector<FrontierPoint> frontier{FrontierPoint{}};
  std::vector<FrontierPoint> merged;
  for (size_t u = first_unit; u < first_unit + count; ++u) {
    const auto& candidates = table.units[u].candidates;
    merged.clear();
    for (const FrontierPoint& p : frontier) {
      for (size_t i = 0; i < candidates.size(); ++i) {
        FrontierPoint q;
        q.cost = p.cost + grid.Steps(candidates[i].bytes_per_token);
        // Summed in unit order from 0, as the predicted layer cos is.
        q.deficit = p.deficit + candidates[i].deficit;
        q.choice = p.choice;
        q.choice.push_back(static_cast<int>(i));
        merged.push_back(std::move(q));
      }
    }
    // Dominated points (no cheaper and no better) can be dropped: any plan
    // using one is matched by the dominating point at no more cost and no
    // more deficit. Stable sort: ties keep the earlier combination.
    std::stable_sort(merged.begin(), merged.end(), [](const auto& a, const auto& b) {
      return a.cost != b.cost ? a.cost < b.cost : a.deficit < b.deficit;
    });
    frontier.clear();
    for (FrontierPoint& p : merged) {
      if (frontier.empty() || p.deficit < frontier.back().deficit) frontier.push_back(std::move(p));
    }
  }
  return frontier;
}

// Index of the cheapest frontier point with deficit <= tau, or -1.
int CheapestWithin(const std::vector<FrontierPoint>& frontier, double tau) {
  // Deficits strictly decrease along the frontier: binary search.
  const auto it = std::partition_point(frontier.begin(), frontier.end(),
                                       [tau](const FrontierPoint& p) { return p.deficit > tau; });
  return it == frontier.end() ? -1 : static_cast<int>(it - frontier.begin());
}

std::vector<int> SolveWorstCos(const UnitTable& table, const CostGrid& grid, int64_t capacity) {
  const KvGeometry& g = table.geometry;
  const size_t per_layer = UnitsPerLayer(g);
  std::vector<std::vector<FrontierPoint>> frontiers;
  std::vector<double> thresholds;
  for (int l = 0; l < g.num_layers; ++l) {
    frontiers.push_back(LayerFrontier(table, grid, static_cast<size_t>(l) * per_layer, per_layer));
    for (const FrontierPoint& p : frontiers.back()) thresholds.push_back(p.deficit);
  }
  std::sort(thresholds.begin(), thresholds.end());
  thresholds.erase(std::unique(thresholds.begin(), thresholds.end()), thresholds.end());
  // Stage 1: the least threshold tau on every layer's deficit whose cheapest
  // plan fits. The least cost of "every layer <= tau" is a sum of per-layer
  // minima (layers are independent given tau) and does not increase with
  // tau; the optimum is one of the frontier deficits.
  const auto fits = [&](double tau) {
    int64_t total = 0;
    for (const auto& f : frontiers) {
      const int i = CheapestWithin(f, tau);
      if (i < 0) return false;
      total += f[static_cast<size_t>(i)].cost;
    }
    return total <= capacity;
  };
  size_t lo = 0, hi = thresholds.size() - 1;
  KVQ_CHECK(fits(thresholds[hi]));
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (fits(thresholds[mid])) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  const double tau = thresholds[lo];
  // Stage 2: among plans with every layer <= tau, the least total deficit
  // (the best mean cos), by the multiple-choice knapsack over layers.
  std::vector<std::vector<KnapsackItem>> groups(frontiers.size());
  std::vector<std::vector<size_t>> index(frontiers.size());
  for (size_t l = 0; l < frontiers.size(); ++l) {
    for (size_t i = 0; i < frontiers[l].size(); ++i) {
      if (frontiers[l][i].deficit > tau) continue;
      groups[l].push_back({frontiers[l][i].cost, frontiers[l][i].deficit});
      index[l].push_back(i);
    }
  }
  const KnapsackSolution s = SolveMultipleChoiceKnapsack(groups, capacity);
  KVQ_CHECK(s.feasible);
  std::vector<int> choice;
  for (size_t l = 0; l < frontiers.size(); ++l) {
    const FrontierPoint& p = frontiers[l][index[l][static_cast<size_t>(s.choice[l])]];
    choice.insert(choice.end(), p.choice.begin(), p.choice.end());
  }
  return choice;
}

}  // namespace

const char* PlanObjectiveName(PlanObjective objective) {
  return objective == PlanObjective::kWorstCos ? "worst-cos" : "mean-nmse";
}

PlanObjective ParsePlanObjective(std::string_view text) {
  if (text == "worst-cos") return PlanObjective::kWorstCos;
  if (text == "mean-nmse") return PlanObjective::kMeanNmse;
  ThrowInput("objective '{}' is not known (worst-cos or mean-nmse)", text);
}

double MinPlanBytes(std::span<const FormatSpec> k_formats, std::span<const FormatSpec> v_formats,
                    const KvGeometry& geometry, int64_t prompt_len) {
  return ExtremePlanBytes(k_formats, v_formats, geometry, prompt_len, false);
}

double MaxPlanBytes(std::span<const FormatSpec> k_formats, std::span<const FormatSpec> v_formats,
                    const KvGeometry& geometry, int64_t prompt_len) {
  return ExtremePlanBytes(k_formats, v_formats, geometry, prompt_len, true);
}

PlanSolution SolvePlan(const UnitTable& table, PlanObjective objective, double budget) {
  const KvGeometry& g = table.geometry;
  const size_t per_layer = UnitsPerLayer(g);
  KVQ_CHECK(g.num_layers > 0 && table.units.size() == per_layer * g.num_layers);
  std::vector<double> costs;
  double minimum = 0;
  for (const UnitMeasure& u : table.units) {
    KVQ_CHECK(u.candidates.size() == table.formats(u.tensor).size() && !u.candidates.empty());
    double cheapest = u.candidates[0].bytes_per_token;
    for (const CandidateMeasure& c : u.candidates) {
      costs.push_back(c.bytes_per_token);
      cheapest = std::min(cheapest, c.bytes_per_token);
    }
    minimum += cheapest;
  }
  if (!(budget > 0) || !std::isfinite(budget)) {
    ThrowInput("budget {} is not a positive number of bytes/token", budget);
  }
  const CostGrid grid(costs);
  const int64_t capacity = grid.StepsWithin(budget);
  int64_t cheapest_steps = 0;
  for (const UnitMeasure& u : table.units) {
    int64_t lo = std::numeric_limits<int64_t>::max();
    for (const CandidateMeasure& c : u.candidates) lo = std::min(lo, grid.Steps(c.bytes_per_token));
    cheapest_steps += lo;
  }
  if (capacity < cheapest_steps) ThrowBudgetTooLow(budget, minimum);

  PlanSolution plan;
  plan.objective = objective;
  plan.budget = budget;
  if (objective == PlanObjective::kMeanNmse) {
    // min mean_l sum_u nmse(u) = min sum_u nmse(u): a multiple-choice
    // knapsack with one group per unit.
    std::vector<std::vector<KnapsackItem>> groups;
    for (const UnitMeasure& u : table.units) {
      auto& items = groups.emplace_back();
      for (const CandidateMeasure& c : u.candidates) {
        items.push_back({grid.Steps(c.bytes_per_token), c.nmse});
      }
    }
    const KnapsackSolution s = SolveMultipleChoiceKnapsack(groups, capacity);
    KVQ_CHECK(s.feasible);
    plan.choice = s.choice;
  } else {
    plan.choice = SolveWorstCos(table, grid, capacity);
  }

  // Predictions, summed in unit order from 0 (as the solvers do).
  plan.layer_cos.assign(static_cast<size_t>(g.num_layers), 1.0);
  plan.layer_nmse.assign(static_cast<size_t>(g.num_layers), 0.0);
  plan.strategy.name = "plan";
  plan.strategy.plan_geometry = g;
  for (int l = 0; l < g.num_layers; ++l) {
    double deficit = 0, nmse = 0;
    for (size_t u = static_cast<size_t>(l) * per_layer;
         u < (static_cast<size_t>(l) + 1) * per_layer; ++u) {
      const UnitMeasure& unit = table.units[u];
      KVQ_CHECK(unit.layer == l);
      const CandidateMeasure& c = unit.candidates[static_cast<size_t>(plan.choice[u])];
      deficit += c.deficit;
      nmse += c.nmse;
      plan.bytes_per_token += c.bytes_per_token;
      Strategy::Rule rule;
      rule.k = unit.tensor == KvTensor::kK;
      rule.v = !rule.k;
      rule.layer_lo = rule.layer_hi = l;
      rule.head_lo = rule.head_hi = unit.head;
      rule.format = table.Format(u, plan.choice[u]);
      rule.text = fmt::format("{}={}", UnitName(unit), rule.format.Name());
      plan.strategy.rules.push_back(std::move(rule));
    }
    plan.layer_cos[static_cast<size_t>(l)] = 1.0 - deficit;
    plan.layer_nmse[static_cast<size_t>(l)] = nmse;
  }
  double sum_cos = 0, sum_nmse = 0;
  plan.worst_cos = plan.layer_cos[0];
  plan.worst_layer = 0;
  for (int l = 0; l < g.num_layers; ++l) {
    const double c = plan.layer_cos[static_cast<size_t>(l)];
    if (c < plan.worst_cos) {
      plan.worst_cos = c;
      plan.worst_layer = l;
    }
    sum_cos += c;
    sum_nmse += plan.layer_nmse[static_cast<size_t>(l)];
  }
  plan.mean_cos = sum_cos / g.num_layers;
  plan.mean_nmse = sum_nmse / g.num_layers;
  return plan;
}

std::vector<size_t> Fp16Units(const UnitTable& table, const PlanSolution& plan) {
  std::vector<size_t> out;
  for (size_t u = 0; u < table.units.size(); ++u) {
    if (table.Format(u, plan.choice[u]).IsPassthrough()) out.push_back(u);
  }
  return out;
}

double ResolveBudget(const PlannerOptions& o, const KvGeometry& g) {
  if (o.budget != 0 && o.budget_ratio != 0) {
    ThrowInput("give a budget in bytes/token or a budget ratio, not both");
  }
  if (o.budget != 0) {
    if (!(o.budget > 0) || !std::isfinite(o.budget)) {
      ThrowInput("budget {} is not a positive number of bytes/token", o.budget);
    }
    return o.budget;
  }
  if (o.budget_ratio != 0) {
    if (!(o.budget_ratio > 0) || !std::isfinite(o.budget_ratio)) {
      ThrowInput("budget ratio {} is not a positive fraction of the fp16 cache", o.budget_ratio);
    }
    return o.budget_ratio * Fp16Bytes(g);
  }
  ThrowInput("no budget: give bytes/token or a ratio of the fp16 cache");
}

std::vector<double> LadderBudgets(const KvGeometry& g) {
  std::vector<double> budgets;
  for (double f : kLadderFractions) budgets.push_back(f * Fp16Bytes(g));
  return budgets;
}

std::vector<LadderRung> SolveLadder(const UnitTable& table, PlanObjective objective,
                                    std::span<const double> budgets) {
  const double minimum =
      MinPlanBytes(table.k_formats, table.v_formats, table.geometry, table.chunk_len);
  std::vector<LadderRung> rungs;
  for (const double b : budgets) {
    LadderRung rung;
    rung.budget = b;
    if (b < minimum * (1 - 1e-12)) {
      rung.status = fmt::format(
          "infeasible: {:.2f} bytes/token is below the cheapest plan with these candidates, "
          "{:.2f} bytes/token",
          b, minimum);
    } else {
      rung.plan = SolvePlan(table, objective, b);
      rung.feasible = true;
      rung.status = "ok";
    }
    rungs.push_back(std::move(rung));
  }
  return rungs;
}

PlanResult MakePlan(const KvDump& dump, const PlannerOptions& options,
                    const PlanProgress& progress) {
  const DumpInfo& info = dump.info();
  PlannerOptions o = options;
  if (o.k_formats.empty()) o.k_formats = DefaultPlanFormats(KvTensor::kK, info);
  if (o.v_formats.empty()) o.v_formats = DefaultPlanFormats(KvTensor::kV, info);
  const KvGeometry g{info.num_layers, info.num_kv_heads, info.head_dim};
  ValidatePlanFormats(o.k_formats, o.v_formats, g);
  const double budget = ResolveBudget(o, g);
  const double minimum = MinPlanBytes(o.k_formats, o.v_formats, g, info.chunk_len);
  // Checked before the measuring pass (SolvePlan checks it exactly again).
  if (budget < minimum * (1 - 1e-12)) ThrowBudgetTooLow(budget, minimum);
  if (o.pareto_points == 1 || o.pareto_points < 0) {
    ThrowInput("pareto points {}: need 0 (none) or at least 2", o.pareto_points);
  }

  PlanResult result;
  result.table = MeasureUnits(dump, o.k_formats, o.v_formats, progress);
  result.plan = SolvePlan(result.table, o.objective, budget);

  // Everything to re-measure in one pass: the plan, the frontier's distinct
  // plans, the baselines.
  std::vector<Strategy> strategies;
  if (o.remeasure) strategies.push_back(result.plan.strategy);
  std::vector<PlanSolution> frontier;
  std::vector<size_t> frontier_strategy;
  std::vector<Strategy> baselines;
  if (o.pareto_points > 0) {
    const double hi = MaxPlanBytes(o.k_formats, o.v_formats, g, info.chunk_len);
    for (int i = 0; i < o.pareto_points; ++i) {
      const double b = minimum + (hi - minimum) * i / (o.pareto_points - 1);
      frontier.push_back(SolvePlan(result.table, o.objective, b));
      size_t index = strategies.size();
      for (size_t j = 0; j + 1 < frontier.size(); ++j) {
        if (frontier[j].choice == frontier.back().choice) index = frontier_strategy[j];
      }
      if (index == strategies.size()) strategies.push_back(frontier.back().strategy);
      frontier_strategy.push_back(index);
    }
    for (const FormatSpec& f : o.k_formats) {
      if (std::find(o.v_formats.begin(), o.v_formats.end(), f) != o.v_formats.end()) {
        baselines.push_back(Strategy::Parse(f.Name()));
      }
    }
    Strategy strat3 = Strategy::Parse("strat3");
    try {
      strat3.Validate(g);
      baselines.push_back(std::move(strat3));
    } catch (const InputError&) {
      // A geometry strat3's formats cannot apply to (its per-head rules past
      // the geometry simply do not apply): no such baseline.
    }
    strategies.insert(strategies.end(), baselines.begin(), baselines.end());
  }
  std::vector<StrategyFidelity> measured;
  if (!strategies.empty()) measured = MeasureStrategies(dump, strategies, progress);
  if (o.remeasure) result.measured = measured[0];
  for (size_t i = 0; i < frontier.size(); ++i) {
    ParetoRow row;
    row.kind = "plan";
    row.strategy = "plan";
    row.budget = frontier[i].budget;
    row.bytes_per_token = frontier[i].bytes_per_token;
    row.measured = measured[frontier_strategy[i]];
    row.pred_worst_cos = frontier[i].worst_cos;
    row.pred_mean_nmse = frontier[i].mean_nmse;
    row.fp16_units = static_cast<int>(Fp16Units(result.table, frontier[i]).size());
    result.pareto.push_back(std::move(row));
  }
  const size_t first_baseline = strategies.size() - baselines.size();
  for (size_t i = 0; i < baselines.size(); ++i) {
    ParetoRow row;
    row.kind = "baseline";
    row.strategy = baselines[i].name;
    row.measured = measured[first_baseline + i];
    row.budget = row.bytes_per_token = row.measured.bytes_per_token;
    row.pred_worst_cos = row.pred_mean_nmse = std::numeric_limits<double>::quiet_NaN();
    row.fp16_units = -1;
    result.pareto.push_back(std::move(row));
  }
  return result;
}

}  // namespace kvq
