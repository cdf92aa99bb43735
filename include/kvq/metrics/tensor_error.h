#pragma once
// Tensor error of a quantize-dequantize round trip, accumulated in double:
//   SSE = sum (x - y)^2, MSE = SSE / n, NMSE = SSE / sum x^2 (= MSE / mean x^2),
//   SQNR = 10 log10(sum x^2 / SSE) dB (+inf when SSE = 0).
#include <cstdint>
#include <string>
#include <vector>

#include "kvq/capture/dump.h"
#include "kvq/quant/quantize.h"
#include "kvq/quant/strategy.h"

namespace kvq {

struct TensorError {
  int64_t count = 0;
  double max_abs = 0;  // max |x| of the original
  double sse = 0;
  double sum_sq = 0;  // sum x^2

  void Add(const QdqErrorSums& sums);  // One round trip's (QuantizeHeadError).
  void Merge(const TensorError& other);
  double mse() const { return count > 0 ? sse / static_cast<double>(count) : 0.0; }
  double nmse() const;     // 0 when x is all zero and y == x; +inf when only x is zero.
  double sqnr_db() const;  // +inf when SSE == 0.
};

// One row of `kvq quant`: one (strategy, tensor, layer, kv head).
struct ErrorRow {
  std::string strategy;
  KvTensor tensor = KvTensor::kK;
  int layer = 0;
  int head = 0;
  std::string format;  // Canonical FormatSpec name.
  int64_t tokens = 0;
  int head_dim = 0;
  double bytes_per_token = 0;  // Of this head (FormatCost over the dump's chunk_len).
  TensorError error;
};

// Quantizes every K and V head of the dump with the strategy (scales from
// the whole dump block of each head, as the reference system does) and
// measures the error. Rows ordered by layer, then K before V, then head.
// One OpenMP region over all (layer, tensor, head) units, each measured by
// QuantizeHeadError (quant/quantize.h).
// Results do not depend on the thread count.
// Throws InputError naming layer and head for a non-finite value.
std::vector<ErrorRow> MeasureDump(const KvDump& dump, const Strategy& strategy);

// CSV with header strategy,tensor,layer,head,format,tokens,head_dim,max_abs,
// sse,mse,nmse,sqnr_db,bytes_per_token (numbers %.9g, "inf" for an infinite
// NMSE or SQNR; strategy names quoted when they hold a comma).
std::string ErrorCsv(const std::vector<ErrorRow>& rows);
// JSON {"schema": "kvq.quant.v1", "dump": DUMP, "rows": [{the CSV columns}]},
// null for non-finite numbers.
std::string ErrorJson(const std::vector<ErrorRow>& rows, const std::string& dump);

}  // namespace kvq
