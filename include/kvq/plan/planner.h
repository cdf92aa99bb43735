#pragma once
// Mixed-precision planning (docs/planner.md): choose one format per unit
// (tensor K|V, layer, kv head) so that attention stays faithful under a
// bytes/token budget.
//
// 1. Measure (MeasureUnits, one streamed pass over the dump): for every unit
//    u and candidate format f, the unit alone is quantized (QuantizeHead, the
//    one quantization path), everything else stays original, and attention
//    is recomputed only for the query heads that read that kv head
//    (EvaluateKvHead), compared with the layer's original output computed
//    once per layer (LayerReference). With V_l = num_heads * tokens output
//    vectors and R_l = sum o^2 over layer l:
//      deficit(u, f) = (vectors - sum cos) of those heads / V_l
//                      = 1 - (layer mean cos with only u quantized)
//      nmse(u, f)    = sum (o - o')^2 of those heads / R_l
//                      = layer NMSE with only u quantized
//    bytes(u, f) = FormatCost(f, head_dim, chunk_len).per_token.
// 2. Predict (additive model: independent errors add, to first order, in
//    squared error and in 1 - cos):
//      cos_l  = 1 - sum_{u in l} deficit(u, f_u)     (summed in unit order)
//      nmse_l = sum_{u in l} nmse(u, f_u)
// 3. Solve (SolvePlan), exactly for the predicted metrics, under
//    sum_u bytes(u, f_u) <= budget:
//      worst-cos: maximise min_l cos_l (a bottleneck objective), then, among
//                 plans reaching it, maximise the mean of cos_l;
//      mean-nmse: minimise mean_l nmse_l.
// 4. Re-measure (MeasureStrategies): the whole plan with every unit quantized
//    together (EvaluateLayer), since errors interact.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvq/metrics/attention_fidelity.h"
#include "kvq/quant/format.h"
#include "kvq/quant/strategy.h"

namespace kvq {

class KvDump;
struct DumpInfo;

enum class PlanObjective { kWorstCos, kMeanNmse };
const char* PlanObjectiveName(PlanObjective objective);  // "worst-cos" / "mean-nmse"
// Throws InputError naming the text and the choices.
PlanObjective ParsePlanObjective(std::string_view text);

// The default candidates, for K and V alike: fp16, int8:tensor, int8:token,
// int8:channel, int4:g32:token (KIVI's K: groups of 32 tokens per channel),
// int4:g32:dim (KIVI's V: groups of 32 channels per token), fp8e4m3, and
// each quantized one again with +had.
std::vector<FormatSpec> DefaultPlanFormats();
// The default candidates of one tensor for a dump (kvq plan without
// --formats, kvq run, PlannerOptions left empty): everything that can win on
// the Qwen/Llama families, each measured once per unit.
//   K: fp16, int8:tensor, int8:token, int8:channel, fp8e4m3, q8_0,
//      int8:tensor+had, int4:g32:token with +had, +prerope and (only when the
//      dump has a k_proj bias) +bias, q4_0, int3:g32:token, int2:g32:token,
//      int2:channel;
//   V: fp16, int8:token, q8_0, int4:g32:dim (+had), q4_0, nvfp4,
//      int3:g32:dim, int2:g32:dim (+had), int2:g64:dim, int2:channel.
// Formats whose head_dim constraints the dump does not meet are left out.
// The 2-bit channel formats make the ladder's bottom (1/8 of fp16) feasible.
std::vector<FormatSpec> DefaultPlanFormats(KvTensor tensor, const DumpInfo& info);
// "fp16,int8:tensor,..." -> formats, duplicates dropped (first kept).
// Throws InputError naming the item.
std::vector<FormatSpec> ParseFormatList(std::string_view text);

// One candidate format of one unit, measured with only that unit quantized.
struct CandidateMeasure {
  double bytes_per_token = 0;  // FormatCost(format, head_dim, chunk_len).per_token
  FidelityStats group;         // The query heads reading this kv head, merged.
  double deficit = 0;          // group.(vectors - sum_cos) / layer vectors
  double nmse = 0;             // group.sum_sq_err / layer sum o^2 (0 if both 0, inf if only it)
};

struct UnitMeasure {
  KvTensor tensor = KvTensor::kK;
  int layer = 0;
  int head = 0;                              // kv head
  std::vector<CandidateMeasure> candidates;  // Parallel to UnitTable::formats(tensor).
};

// Everything the solver needs; plain data (tests build it by hand).
struct UnitTable {
  KvGeometry geometry;
  int64_t chunk_len = 0;  // Prompt length the byte costs are averaged over.
  std::vector<FormatSpec> k_formats, v_formats;
  // Layer-major: unit (layer l, tensor t, kv head h) at index
  // (l * 2 + t) * num_kv_heads + h. Measured layers only (MeasureUnits
  // fills all of them).
  std::vector<UnitMeasure> units;

  const std::vector<FormatSpec>& formats(KvTensor t) const {
    return t == KvTensor::kK ? k_formats : v_formats;
  }
  const FormatSpec& Format(size_t unit, int candidate) const {
    return formats(units[unit].tensor)[static_cast<size_t>(candidate)];
  }
};

// Progress of a long call: stage ("measure", "validate"), layers done, total.
using PlanProgress = std::function<void(std::string_view stage, int done, int total)>;

// Refuses candidates that cannot apply (head_dim constraints; +prerope and
// +bias on V) with an InputError naming the tensor and format; empty lists
// too.
void ValidatePlanFormats(std::span<const FormatSpec> k_formats,
                         std::span<const FormatSpec> v_formats, const KvGeometry& geometry);

// Bytes/token of the cheapest and of the costliest plan with these
// candidates (every unit in its cheapest / costliest format), for
// sequences of prompt_len tokens.
double MinPlanBytes(std::span<const FormatSpec> k_formats, std::span<const FormatSpec> v_formats,
                    const KvGeometry& geometry, int64_t prompt_len);
double MaxPlanBytes(std::span<const FormatSpec> k_formats, std::span<const FormatSpec> v_formats,
                    const KvGeometry& geometry, int64_t prompt_len);

// Scratch of MeasureLayerUnits, one slot per thread, kept from layer to
// layer (fresh pages cost more than the work on them).
struct UnitWorkspace {
  struct Slot {
    std::vector<float> y;  // [candidates, tokens, head_dim]: a work item's quantized units
    FidelityWorkspace fidelity;
  };
  std::vector<Slot> slots;
};

// Step 1 for one layer already loaded: appends the layer's 2 * num_kv_heads
// units to table.units. table.geometry, chunk_len and the format lists must
// be set. Reuses ref.out; the original attention is never recomputed. The
// V candidates of a unit share the original scores and softmax
// (EvaluateKvHeadManyV). The evaluations run in parallel (OpenMP, one work
// item per thread; the kernels inside run on that thread unless nested
// parallelism is enabled); results do not depend on the thread count.
void MeasureLayerUnits(const LayerReference& ref, UnitTable& table, UnitWorkspace& workspace);

// Step 1 over a whole dump, streamed layer by layer.
UnitTable MeasureUnits(const KvDump& dump, std::span<const FormatSpec> k_formats,
                       std::span<const FormatSpec> v_formats, const PlanProgress& progress = {});

struct PlanSolution {
  PlanObjective objective = PlanObjective::kWorstCos;
  double budget = 0;           // Bytes/token allowed.
  std::vector<int> choice;     // Per unit of the table: index of its chosen candidate.
  double bytes_per_token = 0;  // Sum of the chosen costs.
  std::vector<double> layer_cos, layer_nmse;  // Predicted, per layer.
  double worst_cos = 1;                       // Predicted min_l cos_l ...
  int worst_layer = 0;                        // ... at this layer (the first on ties).
  double mean_cos = 1;                        // Predicted mean_l cos_l.
  double mean_nmse = 0;                       // Predicted mean_l nmse_l.
  Strategy strategy;                          // One rule per unit: loadable, PlanJson-able.
};

// Step 3. Throws InputError when the budget is below the cheapest plan
// (naming both figures).
PlanSolution SolvePlan(const UnitTable& table, PlanObjective objective, double budget);

// Units whose chosen format is fp16 (the "outlier heads"), in table order.
std::vector<size_t> Fp16Units(const UnitTable& table, const PlanSolution& plan);

// The measured whole-plan (or any strategy's) fidelity over all layers.
struct StrategyFidelity {
  std::string name;
  double bytes_per_token = 0;
  std::vector<LayerFidelity> layers;
  double worst_cos = 1;  // min_l layer mean cos
  int worst_layer = 0;   // first on ties
  double mean_cos = 1;   // mean_l layer mean cos
  double mean_nmse = 0;  // mean_l layer NMSE
};

// Step 4: one streamed pass, each layer's original attention computed once
// and shared by all strategies (validated against the dump first).
std::vector<StrategyFidelity> MeasureStrategies(const KvDump& dump,
                                                std::span<const Strategy> strategies,
                                                const PlanProgress& progress = {});

// One row of the frontier CSV (docs/planner.md has the schema).
struct ParetoRow {
  std::string kind;      // "plan" (the optimum at `budget`) or "baseline" (a fixed strategy)
  std::string strategy;  // "plan" or the baseline's spec
  double budget = 0;     // Bytes/token allowed (a baseline: its own cost).
  double bytes_per_token = 0;
  StrategyFidelity measured;
  double pred_worst_cos = 0, pred_mean_nmse = 0;  // Plans only (NaN for baselines).
  int fp16_units = 0;                             // Plans only (-1 for baselines).
};

// Header `kind,strategy,budget,bytes_per_token,worst_cos,mean_nmse,worst_layer,mean_cos,
// pred_worst_cos,pred_mean_nmse,fp16_units`.
std::string PlanFrontierCsv(std::span<const ParetoRow> rows);

// Header `tensor,layer,head,format,bytes_per_token,cos,nmse,deficit,chosen`: one row per
// (unit, candidate); cos is the mean cosine of the query heads that read the
// unit with only it quantized; chosen is 1 for the plan's pick (0 without a
// plan).
std::string UnitCsv(const UnitTable& table, const PlanSolution* plan);

// The plan file: PlanJson(plan.strategy) plus a "planner" object (objective,
// budget, bytes/token, predicted and, when given, measured metrics).
// Strategy::Parse("plan:FILE") ignores the extra object.
std::string PlanFileJson(const UnitTable& table, const PlanSolution& plan,
                         const StrategyFidelity* measured);

struct PlannerOptions {
  // Empty: DefaultPlanFormats(tensor, the dump's info).
  std::vector<FormatSpec> k_formats, v_formats;
  PlanObjective objective = PlanObjective::kWorstCos;
  double budget = 0;        // Bytes/token; when 0, budget_ratio of the fp16 cache.
  double budget_ratio = 0;  // In (0, 1]; used when budget is 0.
  bool remeasure = true;    // Re-measure the plan with all units quantized.
  // > 0: also plan at this many budgets evenly spaced from the cheapest to
  // the costliest plan (both included), and measure each plan and the
  // baselines: each format common to both lists, uniformly, and strat3
  // where it fits the geometry.
  int pareto_points = 0;
};

struct PlanResult {
  UnitTable table;
  PlanSolution plan;
  StrategyFidelity measured;      // Empty layers when !remeasure.
  std::vector<ParetoRow> pareto;  // Empty when pareto_points == 0.
};

// The budget in bytes/token an options object asks for, for this geometry.
// Throws InputError when neither or both are set, or out of range.
double ResolveBudget(const PlannerOptions& options, const KvGeometry& geometry);

// The frontier ladder `kvq run` plans at: fractions of the fp16 cache
// 1/8, 3/16, 9/32, 3/8 and 35/64, i.e. 2, 3, 4.5, 6 and 8.75 bits per value
// on average (Qwen2.5-0.5B: 1,536, 2,304, 3,456, 4,608 and 6,720
// bytes/token; the last is strat3's size and half of it is 3,456).
inline constexpr double kLadderFractions[] = {0.125, 0.1875, 0.28125, 0.375, 0.546875};
// kLadderFractions x the geometry's fp16 bytes/token, ascending.
std::vector<double> LadderBudgets(const KvGeometry& geometry);

// One budget of a ladder solved on one measured table.
struct LadderRung {
  double budget = 0;
  bool feasible = false;  // false: the budget is below the cheapest plan
  std::string status;     // "ok", or why not (names the cheapest plan's bytes/token)
  PlanSolution plan;      // Set when feasible.
};
// Solves the table at every budget (SolvePlan; the measurements are shared).
// Exact solver: a larger budget never predicts a worse objective.
std::vector<LadderRung> SolveLadder(const UnitTable& table, PlanObjective objective,
                                    std::span<const double> budgets);

// All steps: checks the budget against the cheapest plan before any work,
// measures, solves, re-measures (one more pass, shared with the frontier's
// plans and baselines).
PlanResult MakePlan(const KvDump& dump, const PlannerOptions& options,
                    const PlanProgress& progress = {});

}  // namespace kvq
