#include "kvq/plan/planner.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <utility>

#include <fmt/format.h>
#include <omp.h>
#include <nlohmann/json.hpp>

#include "kvq/capture/dump.h"
#include "kvq/common/error.h"
#include "kvq/common/strings.h"
#include "kvq/plan/knapsack.h"
#include "kvq/quant/quantize.h"

namespace kvq {
namespace {

constexpr KvTensor kTensors[] = {KvTensor::kK, KvTensor::kV};

size_t UnitsPerLayer(const KvGeometry& g) { return 2 * static_cast<size_t>(g.num_kv_heads); }

double Fp16Bytes(const KvGeometry& g) {
  return 2.0 * 2.0 * g.num_layers * g.num_kv_heads * g.head_dim;
}

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

std::string UnitName(const UnitMeasure& u) {
  return fmt::format("{}[{}.{}]", KvTensorName(u.tensor), u.layer, u.head);
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

void Summarise(StrategyFidelity& s) {
  if (s.layers.empty()) return;
  double sum_cos = 0, sum_nmse = 0;
  s.worst_cos = s.layers[0].all.cos();
  s.worst_layer = s.layers[0].layer;
  for (const LayerFidelity& l : s.layers) {
    const double c = l.all.cos();
    if (c < s.worst_cos) {
      s.worst_cos = c;
      s.worst_layer = l.layer;
    }
    sum_cos += c;
    sum_nmse += l.all.nmse();
  }
  s.mean_cos = sum_cos / static_cast<double>(s.layers.size());
  s.mean_nmse = sum_nmse / static_cast<double>(s.layers.size());
}

// NaN as an empty CSV field, else %.6e / %.6f.
std::string Num(double v, bool exponent) {
  if (std::isnan(v)) return "";
  return exponent ? fmt::format("{:.6e}", v) : fmt::format("{:.6f}", v);
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

std::vector<FormatSpec> DefaultPlanFormats() {
  std::vector<FormatSpec> formats{FormatSpec::Parse("fp16")};
  for (const char* name :
       {"int8:tensor", "int8:token", "int8:channel", "int4:g32:token", "int4:g32:dim", "fp8e4m3"}) {
    formats.push_back(FormatSpec::Parse(name));
  }
  const size_t plain = formats.size();
  for (size_t i = 1; i < plain; ++i) {
    FormatSpec rotated = formats[i];
    rotated.hadamard = true;
    formats.push_back(rotated);
  }
  return formats;
}

std::vector<FormatSpec> DefaultPlanFormats(KvTensor tensor, const DumpInfo& info) {
  static constexpr const char* kK[] = {"fp16",
                                       "int8:tensor",
                                       "int8:token",
                                       "int8:channel",
                                       "fp8e4m3",
                                       "q8_0",
                                       "int8:tensor+had",
                                       "int4:g32:token",
                                       "int4:g32:token+had",
                                       "int4:g32:token+prerope",
                                       "int4:g32:token+bias",
                                       "q4_0",
                                       "int3:g32:token",
                                       "int2:g32:token",
                                       "int2:channel"};
  static constexpr const char* kV[] = {
      "fp16",         "int8:token",  "q8_0",         "int4:g32:dim", "int4:g32:dim+had",
      "q4_0",         "nvfp4",       "int3:g32:dim", "int2:g32:dim", "int2:g32:dim+had",
      "int2:g64:dim", "int2:channel"};
  std::vector<FormatSpec> formats;
  for (const char* name : tensor == KvTensor::kK ? std::span<const char* const>(kK)
                                                 : std::span<const char* const>(kV)) {
    const FormatSpec f = FormatSpec::Parse(name);
    if (f.bias_aware && !info.has_k_bias) continue;  // The identity without a bias.
    try {
      f.CheckHeadDim(info.head_dim);
    } catch (const InputError&) {
      continue;
    }
    formats.push_back(f);
  }
  return formats;
}

std::vector<FormatSpec> ParseFormatList(std::string_view text) {
  std::vector<FormatSpec> formats;
  for (const std::string_view item : SplitFields(text, ',')) {
    if (item.empty()) ThrowInput("format list '{}': empty item", text);
    FormatSpec f;
    try {
      f = FormatSpec::Parse(item);
    } catch (const InputError& e) {
      ThrowInput("format list '{}': {}", text, e.what());
    }
    if (std::find(formats.begin(), formats.end(), f) == formats.end()) formats.push_back(f);
  }
  return formats;
}

void ValidatePlanFormats(std::span<const FormatSpec> k_formats,
                         std::span<const FormatSpec> v_formats, const KvGeometry& g) {
  for (KvTensor t : kTensors) {
    const auto formats = t == KvTensor::kK ? k_formats : v_formats;
    if (formats.empty()) ThrowInput("no candidate formats for {}", KvTensorName(t));
    for (const FormatSpec& f : formats) {
      if (t == KvTensor::kV && (f.pre_rope || f.bias_aware)) {
        ThrowInput("candidate '{}' for v: +prerope and +bias apply to K only", f.Name());
      }
      try {
        f.CheckHeadDim(g.head_dim);
      } catch (const InputError& e) {
        ThrowInput("candidate '{}' for {}: {}", f.Name(), KvTensorName(t), e.what());
      }
    }
  }
}

double MinPlanBytes(std::span<const FormatSpec> k_formats, std::span<const FormatSpec> v_formats,
                    const KvGeometry& geometry, int64_t prompt_len) {
  return ExtremePlanBytes(k_formats, v_formats, geometry, prompt_len, false);
}

double MaxPlanBytes(std::span<const FormatSpec> k_formats, std::span<const FormatSpec> v_formats,
                    const KvGeometry& geometry, int64_t prompt_len) {
  return ExtremePlanBytes(k_formats, v_formats, geometry, prompt_len, true);
}

void MeasureLayerUnits(const LayerReference& ref, UnitTable& table, UnitWorkspace& workspace) {
  const AttentionShape& shape = ref.shape;
  const KvGeometry& g = table.geometry;
  KVQ_CHECK(shape.num_kv_heads == g.num_kv_heads && shape.head_dim == g.head_dim);
  const int group = shape.num_heads / shape.num_kv_heads;
  const int64_t per_head = shape.tokens * shape.head_dim;
  // The unchanged group of every kv head: exactly what EvaluateKvHead returns
  // for an unchanged K/V (zero error, every cosine exactly 1), without the
  // attention. It also gives the layer's sum o^2.
  std::vector<FidelityStats> unchanged(static_cast<size_t>(g.num_kv_heads));
  double layer_sq_ref = 0;
  for (int h = 0; h < g.num_kv_heads; ++h) {
    const float* o = ref.out.data() + static_cast<int64_t>(h) * group * per_head;
    for (const FidelityStats& s :
         CompareHeads(o, o, h * group, group, shape.tokens, shape.head_dim)) {
      unchanged[static_cast<size_t>(h)].Merge(s);
    }
    layer_sq_ref += unchanged[static_cast<size_t>(h)].sum_sq_ref;
  }
  const double layer_vectors =
      static_cast<double>(shape.num_heads) * static_cast<double>(shape.tokens);

  // The layer's units, in table order, with room for their candidates.
  const size_t first = table.units.size();
  struct Task {
    size_t unit;
    int candidate;
  };
  std::vector<Task> tasks;
  for (KvTensor t : kTensors) {
    for (int h = 0; h < g.num_kv_heads; ++h) {
      UnitMeasure& unit = table.units.emplace_back();
      unit.tensor = t;
      unit.layer = ref.layer;
      unit.head = h;
      unit.candidates.resize(table.formats(t).size());
      for (size_t i = 0; i < unit.candidates.size(); ++i) {
        tasks.push_back({table.units.size() - 1, static_cast<int>(i)});
      }
    }
  }
  std::vector<std::string> errors(tasks.size());
  const auto evaluate = [&](const Task& task, UnitWorkspace::Slot& slot) {
    UnitMeasure& unit = table.units[task.unit];
    const FormatSpec& f = table.Format(task.unit, task.candidate);
    const int h = unit.head;
    const bool is_k = unit.tensor == KvTensor::kK;
    const float* x = (is_k ? ref.k : ref.v).data() + h * per_head;
    slot.y.resize(static_cast<size_t>(per_head));
    QuantizeHead(f, ref.context.ForHead(unit.tensor, h), x, slot.y.data(), shape.tokens,
                 shape.head_dim);
    CandidateMeasure& m = unit.candidates[static_cast<size_t>(task.candidate)];
    m.bytes_per_token = FormatCost(f, g.head_dim, table.chunk_len).per_token;
    if (std::memcmp(slot.y.data(), x, slot.y.size() * sizeof(float)) == 0) {
      m.group = unchanged[static_cast<size_t>(h)];
    } else {
      const std::span<const float> k_orig(ref.k.data() + h * per_head,
                                          static_cast<size_t>(per_head));
      const std::span<const float> v_orig(ref.v.data() + h * per_head,
                                          static_cast<size_t>(per_head));
      const std::span<const float> y(slot.y);
      for (const FidelityStats& s :
           EvaluateKvHead(ref, h, is_k ? y : k_orig, is_k ? v_orig : y, slot.fidelity)) {
        m.group.Merge(s);
      }
    }
    m.deficit = (static_cast<double>(m.group.vectors) - m.group.sum_cos) / layer_vectors;
    if (layer_sq_ref > 0) {
      m.nmse = m.group.sum_sq_err / layer_sq_ref;
    } else {
      m.nmse = m.group.sum_sq_err == 0 ? 0.0 : std::numeric_limits<double>::infinity();
    }
    // The reference is finite (LayerReference::Load checks it), so a
    // non-finite figure means the format itself overflowed on the dump's
    // values (fp16 past 65504, for one). The solvers need a number per
    // candidate; NaN has no place in their order.
    if (!std::isfinite(m.deficit) || std::isnan(m.nmse)) {
      ThrowInput(
          "candidate '{}' gives a non-finite attention error (cos deficit {}, nmse {}): the "
          "dump's values overflow the format; leave it out of --formats, --k-formats or "
          "--v-formats",
          f.Name(), m.deficit, m.nmse);
    }
  };
  // One (unit, candidate) per work item: a single fork per layer instead of
  // one per kernel call, and balanced over the threads. Each item writes its
  // own slot of the table, computed the same way on any thread.
  workspace.slots.resize(static_cast<size_t>(std::max(1, omp_get_max_threads())));
#pragma omp parallel
  {
    UnitWorkspace::Slot& slot = workspace.slots[static_cast<size_t>(omp_get_thread_num())];
#pragma omp for schedule(dynamic, 1)
    for (size_t i = 0; i < tasks.size(); ++i) {
      try {
        evaluate(tasks[i], slot);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    }
  }
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (errors[i].empty()) continue;
    const UnitMeasure unit = table.units[tasks[i].unit];
    table.units.resize(first);  // Nothing half-measured stays in the table.
    ThrowInput("layer {} {} head {}: {}", unit.layer, KvTensorName(unit.tensor), unit.head,
               errors[i]);
  }
}

UnitTable MeasureUnits(const KvDump& dump, std::span<const FormatSpec> k_formats,
                       std::span<const FormatSpec> v_formats, const PlanProgress& progress) {
  const DumpInfo& info = dump.info();
  UnitTable table;
  table.geometry = {info.num_layers, info.num_kv_heads, info.head_dim};
  table.chunk_len = info.chunk_len;
  ValidatePlanFormats(k_formats, v_formats, table.geometry);
  table.k_formats.assign(k_formats.begin(), k_formats.end());
  table.v_formats.assign(v_formats.begin(), v_formats.end());
  LayerReference ref;
  UnitWorkspace workspace;
  for (int l = 0; l < info.num_layers; ++l) {
    if (progress) progress("measure", l, info.num_layers);
    ref.Load(dump, l);
    try {
      MeasureLayerUnits(ref, table, workspace);
    } catch (const InputError& e) {
      ThrowInput("{}: {}", dump.path().string(), e.what());
    }
  }
  if (progress) progress("measure", info.num_layers, info.num_layers);
  return table;
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

std::vector<StrategyFidelity> MeasureStrategies(const KvDump& dump,
                                                std::span<const Strategy> strategies,
                                                const PlanProgress& progress) {
  const DumpInfo& info = dump.info();
  const KvGeometry g{info.num_layers, info.num_kv_heads, info.head_dim};
  std::vector<StrategyFidelity> out(strategies.size());
  for (size_t s = 0; s < strategies.size(); ++s) {
    strategies[s].Validate(g);
    out[s].name = strategies[s].name;
    out[s].bytes_per_token = strategies[s].Cost(g, info.chunk_len).per_token;
  }
  LayerReference ref;
  FidelityWorkspace workspace;
  for (int l = 0; l < info.num_layers; ++l) {
    if (progress) progress("validate", l, info.num_layers);
    ref.Load(dump, l);
    for (size_t s = 0; s < strategies.size(); ++s) {
      out[s].layers.push_back(EvaluateLayer(ref, strategies[s], workspace));
    }
  }
  if (progress) progress("validate", info.num_layers, info.num_layers);
  for (StrategyFidelity& s : out) Summarise(s);
  return out;
}

std::string PlanFrontierCsv(std::span<const ParetoRow> rows) {
  std::string out =
      "kind,strategy,budget,bytes_per_token,worst_cos,mean_nmse,worst_layer,mean_cos,"
      "pred_worst_cos,pred_mean_nmse,fp16_units\n";
  for (const ParetoRow& r : rows) {
    std::string name = r.strategy;
    if (name.find_first_of(",\"") != std::string::npos) {
      std::string quoted = "\"";
      for (char c : name) {
        if (c == '"') quoted += '"';
        quoted += c;
      }
      name = quoted + "\"";
    }
    out += fmt::format("{},{},{:.2f},{:.2f},{},{},{},{},{},{},{}\n", r.kind, name, r.budget,
                       r.bytes_per_token, Num(r.measured.worst_cos, false),
                       Num(r.measured.mean_nmse, true), r.measured.worst_layer,
                       Num(r.measured.mean_cos, false), Num(r.pred_worst_cos, false),
                       Num(r.pred_mean_nmse, true), r.fp16_units);
  }
  return out;
}

std::string UnitCsv(const UnitTable& table, const PlanSolution* plan) {
  std::string out = "tensor,layer,head,format,bytes_per_token,cos,nmse,deficit,chosen\n";
  for (size_t u = 0; u < table.units.size(); ++u) {
    const UnitMeasure& unit = table.units[u];
    for (size_t i = 0; i < unit.candidates.size(); ++i) {
      const CandidateMeasure& c = unit.candidates[i];
      const bool chosen = plan != nullptr && plan->choice[u] == static_cast<int>(i);
      out += fmt::format("{},{},{},{},{:.2f},{:.6f},{:.6e},{:.6e},{}\n", KvTensorName(unit.tensor),
                         unit.layer, unit.head, table.Format(u, static_cast<int>(i)).Name(),
                         c.bytes_per_token, c.group.cos(), c.nmse, c.deficit, chosen ? 1 : 0);
    }
  }
  return out;
}

std::string PlanFileJson(const UnitTable& table, const PlanSolution& plan,
                         const StrategyFidelity* measured) {
  using Json = nlohmann::json;
  Json j = Json::parse(PlanJson(plan.strategy, table.geometry));
  const auto number = [](double v) { return std::isfinite(v) ? Json(v) : Json(nullptr); };
  Json p;
  p["objective"] = PlanObjectiveName(plan.objective);
  p["budget"] = plan.budget;
  p["bytes_per_token"] = plan.bytes_per_token;
  p["fp16_bytes_per_token"] = Fp16Bytes(table.geometry);
  p["chunk_len"] = table.chunk_len;
  p["predicted"] = {{"worst_cos", number(plan.worst_cos)},
                    {"worst_layer", plan.worst_layer},
                    {"mean_cos", number(plan.mean_cos)},
                    {"mean_nmse", number(plan.mean_nmse)}};
  if (measured != nullptr && !measured->layers.empty()) {
    p["measured"] = {{"worst_cos", number(measured->worst_cos)},
                     {"worst_layer", measured->worst_layer},
                     {"mean_cos", number(measured->mean_cos)},
                     {"mean_nmse", number(measured->mean_nmse)}};
  }
  Json fp16 = Json::array();
  for (size_t u : Fp16Units(table, plan)) fp16.push_back(UnitName(table.units[u]));
  p["fp16_units"] = fp16;
  j["planner"] = p;
  return j.dump(1) + "\n";
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
