#include "kvq/metrics/tensor_error.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "common/simd.h"
#include "kvq/common/error.h"
#include "kvq/common/finite.h"
#include "kvq/common/half.h"
#include "kvq/quant/quantize.h"

namespace kvq {
namespace {

// fp16 -> fp32, exact (the hardware conversion equals HalfToFloat).
void WidenHalf(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
#endif
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = HalfToFloat(h);
  }
}

}  // namespace

void TensorError::Add(const float* x, const float* y, int64_t n) {
  // Four accumulators of eight double lanes: a fixed summation order,
  // vectorised, and four independent add chains.
  simd::D8 sse_lane[4] = {}, sq_lane[4] = {};
  simd::F8 max_lane = {};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int u = 0; u < 4; ++u) {
      const simd::F8 xv = simd::LoadF8(x + i + 8 * u);
      const simd::D8 a = simd::ToD8(xv);
      const simd::D8 e = a - simd::ToD8(simd::LoadF8(y + i + 8 * u));
      sse_lane[u] += e * e;
      sq_lane[u] += a * a;
      max_lane = simd::Max(max_lane, simd::Abs(xv));
    }
  }
  for (; i < n; ++i) {
    const double a = x[i];
    const double e = a - static_cast<double>(y[i]);
    sse_lane[0][0] += e * e;
    sq_lane[0][0] += a * a;
    max_lane[0] = std::max(max_lane[0], std::fabs(x[i]));
  }
  for (int u = 0; u < 4; ++u) {
    for (int j = 0; j < 8; ++j) {
      sse += sse_lane[u][j];
      sum_sq += sq_lane[u][j];
    }
  }
  for (int j = 0; j < 8; ++j) max_abs = std::max(max_abs, static_cast<double>(max_lane[j]));
  count += n;
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
  std::vector<LayerContext> contexts;
  contexts.reserve(static_cast<size_t>(info.num_layers));
  for (int l = 0; l < info.num_layers; ++l) {
    contexts.push_back(
        LayerContext::ForDump(info, dump.ReadKBias(l), l > 0 ? contexts[0].rope : nullptr));
  }
  // Rows in output order: layer, tensor (K, V), head.
  const int items = info.num_layers * 2 * heads;
  std::vector<ErrorRow> rows(static_cast<size_t>(items));
  std::vector<std::string> errors(rows.size());
#pragma omp parallel
  {
    // y holds one prompt: quantized prompt by prompt with the whole head's
    // stats, each prompt is measured while it is still in cache.
    const int64_t chunk = info.chunk_len * d;
    std::vector<float> x(static_cast<size_t>(per_head)), y(static_cast<size_t>(chunk));
#pragma omp for schedule(dynamic, 1)
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
        if (t.dtype == DType::kF16) {
          WidenHalf(t.data + 2 * head * per_head, x.data(), per_head);
        } else {
          t.ToFloat(x.data(), head * per_head, per_head);
        }
        if (const int64_t bad = FirstNonFinite(x.data(), per_head); bad < per_head) {
          ThrowInput("token {} holds {}", bad / d, x[static_cast<size_t>(bad)]);
        }
        HeadContext ctx;
        ctx.chunk_len = info.chunk_len;
        const LayerContext& lc = contexts[static_cast<size_t>(layer)];
        ctx.rope = lc.rope.get();
        if (tensor == KvTensor::kK && !lc.k_bias.empty()) {
          ctx.k_bias = lc.k_bias.data() + static_cast<size_t>(head) * d;
        }
        HeadStats stats;
        if (f.NeedsStats()) stats = CalibrateHead(f, ctx, x.data(), info.tokens, d);
        for (int64_t b = 0; b < per_head; b += chunk) {
          QuantizeHead(f, ctx, x.data() + b, y.data(), info.chunk_len, d, &stats);
          row.error.Add(x.data() + b, y.data(), chunk);
        }
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(item)] = e.what();
      }
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

}  // namespace kvq
