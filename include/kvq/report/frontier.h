#pragma once
// The compression frontier of one (model, corpus): every evaluated strategy
// (the planner's ladder of plans and the uniform strategies) as bytes/token
// against its measured worst-layer attention cosine and mean KL, and the
// smallest cache that keeps a quality target. A function of the run
// folder's files alone (quant.csv, attn.csv, ppl.json and run.json's
// "plans"), as the rest of the report.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kvq/report/results.h"

namespace kvq::report {

struct FrontierEntry {
  std::string strategy;
  bool plan = false;  // One of the planner's plans (run.json "plans").
  double bytes_per_token = 0;
  double worst_cos = 1;  // Measured: the lowest layer cosine (attn.csv).
  int worst_layer = -1;
  double predicted_worst_cos = 0;  // Plans: the planner's prediction; NaN otherwise.
  double kl_mean = 0;              // ppl.json's mean KL; NaN when not measured.
};

// One entry per strategy with both a size (quant.csv's per-head costs) and
// attention rows, ascending in bytes/token (ties: in the order of `bytes`).
// `predicted`: plan name -> predicted worst cosine. `ppl` may be null.
std::vector<FrontierEntry> FrontierEntries(const std::vector<BytesRow>& bytes,
                                           const std::vector<AttnSummary>& attention,
                                           const PplData* ppl,
                                           const std::map<std::string, double>& predicted);

// The smallest entry (bytes/token; ties: the higher worst cosine) whose
// every layer keeps cosine >= min_cos; none when no entry does.
std::optional<FrontierEntry> SmallestWithCos(const std::vector<FrontierEntry>& entries,
                                             double min_cos);
// The smallest entry whose mean KL is <= max_kl (entries without KL never).
std::optional<FrontierEntry> SmallestWithKl(const std::vector<FrontierEntry>& entries,
                                            double max_kl);

// The cache of `tokens` tokens in MiB (2^20 bytes).
inline double CacheMiB(double bytes_per_token, int64_t tokens = 32768) {
  return bytes_per_token * static_cast<double>(tokens) / (1024.0 * 1024.0);
}

// Two panels over bytes/token: 1 - worst-layer cosine (log) and mean KL
// (log; left out without ppl). Plans as a line, uniform strategies as
// points, `reference` (strat3) as its own marked point; dashed guides at
// cos 0.99 and 0.998 and at `kl_guide` (q8_0's KL; NaN: none).
std::string FrontierFigure(const std::vector<FrontierEntry>& entries, const std::string& reference,
                           double kl_guide, const std::string& context);

}  // namespace kvq::report
