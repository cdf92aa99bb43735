#pragma once
// The result files of a run folder read back as rows, the analyses the
// report's findings are computed from, and the figures drawn from them.
// Everything here is a function of the files' contents alone (kvq report
// rebuilds a report from them). docs/report.md gives every schema.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "kvq/quant/strategy.h"

namespace kvq::report {

// quant.csv (kvq quant's CSV): one row per (strategy, tensor, layer, kv head).
struct QuantRow {
  std::string strategy;
  KvTensor tensor = KvTensor::kK;
  int layer = 0, head = 0;
  std::string format;
  int head_dim = 0;
  double sse = 0, nmse = 0, bytes_per_token = 0;
  double max_abs = 0;
};
std::vector<QuantRow> ReadQuantCsv(const std::filesystem::path& path);

// attn.csv (kvq attn's CSV): per (strategy, layer) a row with head = -1
// (written "all"), then one per query head.
struct AttnRow {
  std::string strategy;
  int layer = 0, head = -1;
  double nmse = 0, cos = 1, cos_min = 1;
};
std::vector<AttnRow> ReadAttnCsv(const std::filesystem::path& path);

// attn_positions.csv (kvq attn --positions-csv): per (strategy, layer or
// all = -1) the NMSE and cos of each position bucket [begin, end).
struct AttnPositionRow {
  std::string strategy;
  int layer = -1;
  int64_t begin = 0, end = 0, vectors = 0;
  double nmse = 0, cos = 1;
};
std::vector<AttnPositionRow> ReadAttnPositionsCsv(const std::filesystem::path& path);

// bytes.csv: strategy,bytes_per_token,per_sequence_bytes,fraction_of_fp16
// for sequences of `prompt_len` tokens.
struct BytesRow {
  std::string strategy;
  double bytes_per_token = 0, per_sequence = 0, fraction_of_fp16 = 0;
};
std::string BytesCsv(const std::vector<Strategy>& strategies, const KvGeometry& geometry,
                     int64_t prompt_len);
std::vector<BytesRow> ReadBytesCsv(const std::filesystem::path& path);
// The same figures from quant.csv's per-head costs (per_sequence left 0):
// covers strategies made during the run (the plan).
std::vector<BytesRow> BytesFromQuant(const std::vector<QuantRow>& rows);

// ppl.json (kvq ppl's JSON): the totals per strategy.
struct PplRow {
  std::string strategy;
  bool calibrated = false;
  double nll = 0, ppl = 0, delta_ppl = 0, kl_mean = 0, kl_max = 0, top1_agree = 0;
};
struct PplData {
  double baseline_nll = 0, baseline_ppl = 0;
  int64_t predictions = 0;
  std::vector<PplRow> rows;
};
PplData ReadPplJson(const std::filesystem::path& path);

// Strategy names in order of first appearance.
std::vector<std::string> StrategiesOf(const std::vector<QuantRow>& rows);
std::vector<std::string> StrategiesOf(const std::vector<AttnRow>& rows);

// Mean NMSE over the (layer, head) rows of one tensor under a strategy.
double MeanNmse(const std::vector<QuantRow>& rows, const std::string& strategy, KvTensor tensor);

// The smallest set of K heads carrying `fraction` of the strategy's K SSE,
// largest first (the heads that dominate the K error).
struct HeadShare {
  int layer = 0, head = 0;
  double sse = 0, share = 0;  // share of the strategy's total K SSE
};
std::vector<HeadShare> DominantKHeads(const std::vector<QuantRow>& rows,
                                      const std::string& strategy, double fraction = 0.8);

// Attention per strategy from the layer rows (head = -1).
struct AttnSummary {
  std::string strategy;
  double mean_nmse = 0;  // Mean over layers of the layer NMSE.
  double mean_cos = 1;   // Mean over layers of the layer cosine.
  int worst_layer = -1;  // Lowest layer cosine (first on ties).
  double worst_cos = 1, worst_nmse = 0;
  std::map<int, double> cos;     // Layer -> cosine.
  std::map<int, double> nmse;    // Layer -> NMSE.
  std::vector<int> below_floor;  // Layers with cos < floor.
};
std::vector<AttnSummary> SummarizeAttention(const std::vector<AttnRow>& rows, double floor);

// A strategy as a point of the size/quality trade-off: bytes per token
// against the mean attention NMSE over layers. `frontier`: no other point has
// bytes <= and error <= with one of them strictly smaller.
struct ParetoPoint {
  std::string strategy;
  double bytes_per_token = 0, error = 0, worst_cos = 1;
  bool frontier = false;
};
std::vector<ParetoPoint> ParetoPoints(const std::vector<BytesRow>& bytes,
                                      const std::vector<AttnSummary>& attention);
// pareto.csv: strategy,bytes_per_token,attn_nmse_mean,worst_cos,frontier (0/1).
std::string ParetoCsv(const std::vector<ParetoPoint>& points);
std::vector<ParetoPoint> ReadParetoCsv(const std::filesystem::path& path);

// For each distinct bytes/token among the points (ascending): the point with
// the lowest error among those costing at most that budget. Budgets whose
// winner equals the previous budget's are dropped.
struct BudgetPick {
  double budget = 0;
  ParetoPoint best;
};
std::vector<BudgetPick> BestUnderBudgets(const std::vector<ParetoPoint>& points);

// The effect of a preconditioning modifier (+had, +prerope, +bias): a
// strategy whose name carries it against the strategy named the same without
// it, when both were evaluated. The ratios are variant / base (< 1: the
// modifier helps).
struct ModifierEffect {
  std::string modifier;  // "had", "prerope", "bias"
  std::string base, variant;
  double base_bytes = 0, variant_bytes = 0;
  double k_nmse_ratio = 0;     // Mean K NMSE.
  double attn_nmse_ratio = 0;  // Mean attention NMSE.
};
std::vector<ModifierEffect> ModifierEffects(const std::vector<QuantRow>& quant,
                                            const std::vector<AttnSummary>& attention,
                                            const std::vector<BytesRow>& bytes);

// Figures (standalone SVG). `context` goes into subtitles (model, corpus).
std::string NmseFigure(const std::vector<QuantRow>& rows, const std::string& context);
// rows "K h0".."K hN", "V h0".."V hN" x layers, log colour scale.
std::string HeatmapFigure(const std::vector<QuantRow>& rows, const std::string& strategy,
                          const std::string& context);
std::string CosFigure(const std::vector<AttnRow>& rows, double floor, const std::string& context);
// Attention NMSE against position (the all-layers rows), one line per
// strategy, log-log.
std::string PositionFigure(const std::vector<AttnPositionRow>& rows, const std::string& context);
std::string BytesFigure(const std::vector<BytesRow>& rows, const std::string& context);
std::string ParetoFigure(const std::vector<ParetoPoint>& points, const std::string& context);
std::string PplFigure(const PplData& ppl, const std::string& context);  // delta ppl
std::string KlFigure(const PplData& ppl, const std::string& context);   // mean KL, log

}  // namespace kvq::report
