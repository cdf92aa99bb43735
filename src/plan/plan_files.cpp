// The planner's output files: the frontier CSV, the per-unit CSV and the
// plan file (docs/planner.md has their schemas).
#include <cmath>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kvq/plan/planner.h"
#include "plan/planner_internal.h"

namespace kvq {
namespace {

using plan_detail::Fp16Bytes;
using plan_detail::UnitName;

// NaN as an empty CSV field, else %.6e / %.6f.
std::string Num(double v, bool exponent) {
  if (std::isnan(v)) return "";
  return exponent ? fmt::format("{:.6e}", v) : fmt::format("{:.6f}", v);
}

}  // namespace

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

}  // namespace kvq
