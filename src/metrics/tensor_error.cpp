#include "kvq/metrics/tensor_error.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/array_ops.h"
#include "kvq/common/csv.h"
#include "kvq/common/error.h"
#include "kvq/common/finite.h"
#include "kvq/common/half.h"
#include "kvq/quant/fused.h"
#include "kvq/quant/quantize.h"

namespace kvq {

void TensorError::Add(const float* x, const float* y, int64_t n) {
  float max_x = 0;
  AddErrorSumsOf(x, y, n, sse, sum_sq, max_x);
  max_abs = std::max(max_abs, static_cast<double>(max_x));
  count += n;
}

void TensorError::Add(const QdqErrorSums& sums) {
  count += sums.count;
  sse += sums.sse;
  sum_sq += sums.sum_sq;
  max_abs = std::max(max_abs, static_cast<double>(sums.max_abs));
}

void TensorError::Merge(const TensorError& other) {
  count += other.count;
  sse += other.sse;
  sum_sq += other.sum_sq;
  max_abs = std::max(max_abs, other.max_abs);
}

double TensorError::nmse() const {
  if (sum_sq > 0) return sse / sum_sq;
  return sse == 0 ? 0.0 : std::numeric_limits<double>::infinity();
}

double TensorError::sqnr_db() const {
  if (sse == 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(sum_sq / sse);
}

std::vector<ErrorRow> MeasureDump(const KvDump& dump, const Strategy& strategy) {
  const DumpInfo& info = dump.info();
  strategy.Validate({info.num_layers, info.num_kv_heads, info.head_dim});
  const int heads = info.num_kv_heads;
  const int d = info.head_dim;
  const int64_t per_head = info.tokens * d;
  // The RoPE table (chunk_len x head_dim sin/cos) and the k biases only for
  // strategies whose modifiers use them.
  bool needs_rope = false, needs_bias = false;
  for (int l = 0; l < info.num_layers; ++l) {
    for (int h = 0; h < heads; ++h) {
      const FormatSpec& f = strategy.Format(KvTensor::kK, l, h);
      needs_rope = needs_rope || f.pre_rope || f.bias_aware;
      needs_bias = needs_bias || f.bias_aware;
    }
  }
  const auto rope = needs_rope ? std::make_shared<const RopeTable>(info.rope, d, info.chunk_len)
                               : std::shared_ptr<const RopeTable>();
  std::vector<std::vector<float>> k_bias(static_cast<size_t>(info.num_layers));
  if (needs_bias) {
    for (int l = 0; l < info.num_layers; ++l) k_bias[static_cast<size_t>(l)] = dump.ReadKBias(l);
  }
  // Rows in output order: layer, tensor (K, V), head; one work unit each, all
  // in one parallel region (dynamic: the units' costs differ by format).
  const int items = info.num_layers * 2 * heads;
  std::vector<ErrorRow> rows(static_cast<size_t>(items));
  std::vector<std::string> errors(rows.size());
#pragma omp parallel for schedule(dynamic, 1)
  for (int item = 0; item < items; ++item) {
    const int layer = item / (2 * heads);
    const auto tensor = static_cast<KvTensor>((item / heads) % 2);
    const int head = item % heads;
    const FormatSpec& f = strategy.Format(tensor, layer, head);
    ErrorRow& row = rows[static_cast<size_t>(item)];
    row.strategy = strategy.name;
    row.tensor = tensor;
    row.layer = layer;
    row.head = head;
    row.format = f.Name();
    row.tokens = info.tokens;
    row.head_dim = d;
    row.bytes_per_token = FormatCost(f, d, info.chunk_len).per_token;
    try {
      const TensorView& t = dump.Tensor(fmt::format("layers.{}.{}", layer, KvTensorName(tensor)));
      if (HasFusedKernel(f, d) && (t.dtype == DType::kF16 || t.dtype == DType::kF32)) {
        // Straight from the mapped dump: statistics, round trip and error
        // sums in one kernel, nothing written (fused.h).
        QdqErrorSums sums;
        if (t.dtype == DType::kF16) {
          const auto* src = reinterpret_cast<const uint16_t*>(t.data) + head * per_head;
          FusedQuantizeHead(f, info.chunk_len, src, nullptr, info.tokens, d, nullptr, nullptr,
                            &sums);
        } else {
          const auto* src = reinterpret_cast<const float*>(t.data) + head * per_head;
          FusedQuantizeHead(f, info.chunk_len, nullptr, src, info.tokens, d, nullptr, nullptr,
                            &sums);
        }
        row.error.Add(sums);
        continue;
      }
      // Generic path: widen into per-thread scratch (kept across calls: fresh
      // memory costs a page fault per 4 KiB), quantize prompt by prompt,
      // measure each prompt while it is still in cache. Formats with
      // sequence-global stats widen the whole head first (the stats need
      // it); the others one prompt at a time, which stays in L2.
      static thread_local std::vector<float> x, y;
      const int64_t chunk = info.chunk_len * d;
      const bool whole_head = f.NeedsStats();
      const int64_t widened = whole_head ? per_head : chunk;
      if (x.size() < static_cast<size_t>(widened)) x.resize(static_cast<size_t>(widened));
      if (y.size() < static_cast<size_t>(chunk)) y.resize(static_cast<size_t>(chunk));
      // Values [begin, begin + count) of the head into x.
      const auto widen = [&](int64_t begin, int64_t count) {
        if (t.dtype == DType::kF16) {
          HalfToFloatArray(t.data + 2 * (head * per_head + begin), x.data(), count);
        } else {
          t.ToFloat(x.data(), head * per_head + begin, count);
        }
        if (const int64_t bad = FirstNonFinite(x.data(), count); bad < count) {
          ThrowInput("token {} holds {}", (begin + bad) / d, x[static_cast<size_t>(bad)]);
        }
      };
      if (whole_head) widen(0, per_head);
      HeadContext ctx;
      ctx.chunk_len = info.chunk_len;
      ctx.rope = rope.get();
      const auto& bias = k_bias[static_cast<size_t>(layer)];
      if (tensor == KvTensor::kK && !bias.empty()) {
        KVQ_CHECK(bias.size() == static_cast<size_t>(heads) * d);
        ctx.k_bias = bias.data() + static_cast<size_t>(head) * d;
      }
      HeadStats stats;
      if (f.NeedsStats()) stats = CalibrateHead(f, ctx, x.data(), info.tokens, d);
      for (int64_t b = 0; b < per_head; b += chunk) {
        const float* xb = x.data() + (whole_head ? b : 0);
        if (!whole_head) widen(b, chunk);
        QuantizeHead(f, ctx, xb, y.data(), info.chunk_len, d, &stats);
        row.error.Add(xb, y.data(), chunk);
      }
    } catch (const std::exception& e) {
      errors[static_cast<size_t>(item)] = e.what();
    }
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    if (!errors[i].empty()) {
      ThrowInput("{}: layer {} {} head {}: {}", dump.path().string(), rows[i].layer,
                 KvTensorName(rows[i].tensor), rows[i].head, errors[i]);
    }
  }
  return rows;
}

std::string ErrorCsv(const std::vector<ErrorRow>& rows) {
  std::string out =
      "strategy,tensor,layer,head,format,tokens,head_dim,max_abs,sse,mse,nmse,sqnr_db,"
      "bytes_per_token\n";
  for (const auto& r : rows) {
    out += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{}\n", CsvField(r.strategy),
                       KvTensorName(r.tensor), r.layer, r.head, CsvField(r.format), r.tokens,
                       r.head_dim, CsvNumber(r.error.max_abs), CsvNumber(r.error.sse),
                       CsvNumber(r.error.mse()), CsvNumber(r.error.nmse()),
                       CsvNumber(r.error.sqnr_db()), CsvNumber(r.bytes_per_token));
  }
  return out;
}

std::string ErrorJson(const std::vector<ErrorRow>& rows, const std::string& dump) {
  auto finite = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
  nlohmann::json j;
  j["schema"] = "kvq.quant.v1";
  j["dump"] = dump;
  j["rows"] = nlohmann::json::array();
  for (const auto& r : rows) {
    j["rows"].push_back({{"strategy", r.strategy},
                         {"tensor", KvTensorName(r.tensor)},
                         {"layer", r.layer},
                         {"head", r.head},
                         {"format", r.format},
                         {"tokens", r.tokens},
                         {"head_dim", r.head_dim},
                         {"max_abs", r.error.max_abs},
                         {"sse", r.error.sse},
                         {"mse", r.error.mse()},
                         {"nmse", finite(r.error.nmse())},
                         {"sqnr_db", finite(r.error.sqnr_db())},
                         {"bytes_per_token", r.bytes_per_token}});
  }
  return j.dump(1) + "\n";
}

}  // namespace kvq
