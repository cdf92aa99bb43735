#include "kvq/quant/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/array_ops.h"
#include "kvq/common/error.h"
#include "kvq/common/finite.h"
#include "kvq/common/half.h"
#include "kvq/quant/fused.h"

namespace kvq {
namespace {

// Tokens [begin, end) of a prompt that the format quantizes (the rest are
// sink / recent tokens, kept fp16).
struct Span {
  int64_t begin, end;
};

Span QuantizedTokens(const FormatSpec& f, int64_t prompt_begin, int64_t prompt_end) {
  const int64_t begin = std::min(prompt_end, prompt_begin + f.sink);
  const int64_t end = std::max(begin, prompt_end - f.recent);
  return {begin, end};
}

bool HasTransform(const FormatSpec& f, const HeadContext& ctx) {
  return f.hadamard || f.pre_rope || (f.bias_aware && ctx.k_bias != nullptr);
}

// Rows [first, first + rows) of one prompt into / out of the working basis,
// in place on buf [rows, head_dim]; `position` is the first row's position.
void ToWorkingBasis(const FormatSpec& f, const HeadContext& ctx, float* buf, int64_t rows,
                    int head_dim, int64_t position) {
  if (f.bias_aware && ctx.k_bias != nullptr) {
    KVQ_CHECK(ctx.rope != nullptr);
    std::vector<float> rb(static_cast<size_t>(head_dim));
    for (int64_t r = 0; r < rows; ++r) {
      std::copy_n(ctx.k_bias, head_dim, rb.data());
      ApplyRope(*ctx.rope, rb.data(), 1, head_dim, position + r);
      for (int c = 0; c < head_dim; ++c) buf[r * head_dim + c] -= rb[static_cast<size_t>(c)];
    }
  }
  if (f.pre_rope) {
    KVQ_CHECK(ctx.rope != nullptr);
    ApplyRope(*ctx.rope, buf, rows, head_dim, position, /*inverse=*/true);
  }
  if (f.hadamard) HadamardRows(buf, rows, head_dim);
}

void FromWorkingBasis(const FormatSpec& f, const HeadContext& ctx, float* buf, int64_t rows,
                      int head_dim, int64_t position) {
  if (f.hadamard) HadamardRows(buf, rows, head_dim);
  if (f.pre_rope) ApplyRope(*ctx.rope, buf, rows, head_dim, position);
  if (f.bias_aware && ctx.k_bias != nullptr) {
    std::vector<float> rb(static_cast<size_t>(head_dim));
    for (int64_t r = 0; r < rows; ++r) {
      std::copy_n(ctx.k_bias, head_dim, rb.data());
      ApplyRope(*ctx.rope, rb.data(), 1, head_dim, position + r);
      for (int c = 0; c < head_dim; ++c) buf[r * head_dim + c] += rb[static_cast<size_t>(c)];
    }
  }
}

// Calls fn(prompt_begin, prompt_end) for each prompt of a block.
template <typename Fn>
void ForEachPrompt(int64_t tokens, int64_t chunk_len, Fn&& fn) {
  const int64_t len = chunk_len > 0 ? chunk_len : tokens;
  for (int64_t b = 0; b < tokens; b += len) fn(b, std::min(tokens, b + len));
}

}  // namespace

HeadStats CalibrateHead(const FormatSpec& f, const HeadContext& ctx, const float* x, int64_t tokens,
                        int head_dim) {
  HeadStats stats;
  if (f.kind == FormatKind::kInt && f.granularity == Granularity::kChannel) {
    // Start with empty channels so that Merge keeps their size.
    stats.channel_min.assign(static_cast<size_t>(head_dim), 0.0f);
    stats.channel_max.assign(static_cast<size_t>(head_dim), 0.0f);
  }
  const bool transform = HasTransform(f, ctx);
  std::vector<float> buf;
  ForEachPrompt(tokens, ctx.chunk_len, [&](int64_t b, int64_t e) {
    const Span q = QuantizedTokens(f, b, e);
    const int64_t rows = q.end - q.begin;
    if (rows == 0) return;
    const float* src = x + q.begin * head_dim;
    if (transform) {
      buf.assign(src, src + rows * head_dim);
      ToWorkingBasis(f, ctx, buf.data(), rows, head_dim, ctx.first_position + q.begin - b);
      src = buf.data();
    }
    AccumulateStats(f, src, rows, head_dim, stats);
  });
  return stats;
}

void QuantizeHead(const FormatSpec& f, const HeadContext& ctx, const float* x, float* y,
                  int64_t tokens, int head_dim, const HeadStats* stats) {
  const int64_t n = tokens * head_dim;
  if (!ctx.use_reference && HasFusedKernel(f, head_dim)) {
    // One pass per block (two with a block-global scale), bit-identical to
    // the path below (tests/unit/quant_fused_test.cpp); it checks finiteness.
    FusedQuantizeHead(f, ctx.chunk_len, nullptr, x, tokens, head_dim, stats, y, nullptr);
    return;
  }
  if (!AllFiniteOf(x, n)) ThrowInput("non-finite value in the block to quantize");
  HeadStats own;
  if (stats == nullptr && f.NeedsStats()) {
    own = CalibrateHead(f, ctx, x, tokens, head_dim);
    stats = &own;
  }
  static const HeadStats kEmpty;
  const HeadStats& s = stats != nullptr ? *stats : kEmpty;
  const FormatTraits& traits = Traits(f.kind);
  const QdqFn kernel = ctx.use_reference || traits.fast == nullptr ? traits.reference : traits.fast;
  // The rows between the sink and recent tokens, in the working basis, are
  // the base format's block: where the fused kernel covers it, it computes
  // the same values as `kernel` (tested bit for bit), in lanes.
  FormatSpec base = f;
  base.hadamard = base.pre_rope = base.bias_aware = false;
  base.sink = base.recent = 0;
  const bool fused = !ctx.use_reference && HasFusedKernel(base, head_dim);
  auto quantize_rows = [&](const float* src, float* dst, int64_t rows) {
    if (fused) {
      FusedQuantizeHead(base, 0, nullptr, src, rows, head_dim, f.NeedsStats() ? &s : nullptr, dst,
                        nullptr);
    } else {
      kernel(f, s, src, dst, rows, head_dim);
    }
  };
  const bool transform = HasTransform(f, ctx);
  ForEachPrompt(tokens, ctx.chunk_len, [&](int64_t b, int64_t e) {
    const Span q = QuantizedTokens(f, b, e);
    for (int64_t t = b; t < e; ++t) {
      if (t >= q.begin && t < q.end) continue;
      for (int c = 0; c < head_dim; ++c) y[t * head_dim + c] = RoundToHalf(x[t * head_dim + c]);
    }
    const int64_t rows = q.end - q.begin;
    if (rows == 0) return;
    const float* src = x + q.begin * head_dim;
    float* dst = y + q.begin * head_dim;
    if (transform) {
      if (dst != src) std::copy_n(src, rows * head_dim, dst);
      ToWorkingBasis(f, ctx, dst, rows, head_dim, ctx.first_position + q.begin - b);
      quantize_rows(dst, dst, rows);
      FromWorkingBasis(f, ctx, dst, rows, head_dim, ctx.first_position + q.begin - b);
    } else {
      quantize_rows(src, dst, rows);
    }
  });
}

QdqErrorSums QuantizeHeadError(const FormatSpec& f, const HeadContext& ctx, const TensorView& t,
                               int64_t first, int64_t tokens, int head_dim) {
  QdqErrorSums sums;
  const int64_t n = tokens * head_dim;
  if (HasFusedKernel(f, head_dim) && (t.dtype == DType::kF16 || t.dtype == DType::kF32)) {
    // Straight from the mapping: statistics, round trip and error sums in
    // one kernel, nothing written.
    if (t.dtype == DType::kF16) {
      const auto* x = reinterpret_cast<const uint16_t*>(t.data) + first;
      FusedQuantizeHead(f, ctx.chunk_len, x, nullptr, tokens, head_dim, nullptr, nullptr, &sums);
    } else {
      const auto* x = reinterpret_cast<const float*>(t.data) + first;
      FusedQuantizeHead(f, ctx.chunk_len, nullptr, x, tokens, head_dim, nullptr, nullptr, &sums);
    }
    return sums;
  }
  // Per-thread scratch, kept across calls: fresh memory costs a page fault
  // per 4 KiB. Formats with sequence statistics widen the whole head first
  // (the statistics need it); the others one prompt at a time, which stays
  // in L2 and is measured while it is there.
  static thread_local std::vector<float> x, y;
  const int64_t len = ctx.chunk_len > 0 ? ctx.chunk_len : tokens;
  const bool whole_head = f.NeedsStats();
  const int64_t widened = whole_head ? n : len * head_dim;
  if (x.size() < static_cast<size_t>(widened)) x.resize(static_cast<size_t>(widened));
  if (y.size() < static_cast<size_t>(len * head_dim)) y.resize(static_cast<size_t>(len * head_dim));
  // Values [begin, begin + count) of the head into x.
  const auto widen = [&](int64_t begin, int64_t count) {
    if (t.dtype == DType::kF16) {
      HalfToFloatArray(t.data + 2 * (first + begin), x.data(), count);
    } else {
      t.ToFloat(x.data(), first + begin, count);
    }
    if (const int64_t bad = FirstNonFinite(x.data(), count); bad < count) {
      ThrowInput("token {} holds {}", (begin + bad) / head_dim, x[static_cast<size_t>(bad)]);
    }
  };
  HeadStats stats;
  if (whole_head) {
    widen(0, n);
    stats = CalibrateHead(f, ctx, x.data(), tokens, head_dim);
  }
  for (int64_t b = 0; b < tokens; b += len) {
    const int64_t rows = std::min(len, tokens - b);
    const float* xb = x.data() + (whole_head ? b * head_dim : 0);
    if (!whole_head) widen(b * head_dim, rows * head_dim);
    QuantizeHead(f, ctx, xb, y.data(), rows, head_dim, &stats);
    sums.count += rows * head_dim;
    AddErrorSumsOf(xb, y.data(), rows * head_dim, sums.sse, sums.sum_sq, sums.max_abs);
  }
  return sums;
}

HeadContext LayerContext::ForHead(KvTensor tensor, int head) const {
  HeadContext h;
  h.chunk_len = chunk_len;
  h.rope = rope.get();
  if (tensor == KvTensor::kK && !k_bias.empty()) {
    KVQ_CHECK(k_bias.size() == static_cast<size_t>(num_kv_heads) * head_dim);
    h.k_bias = k_bias.data() + static_cast<size_t>(head) * head_dim;
  }
  return h;
}

namespace {

void CheckModifiers(const FormatSpec& f, const LayerContext& ctx, KvTensor tensor) {
  if ((f.pre_rope || (f.bias_aware && !ctx.k_bias.empty())) && ctx.rope == nullptr) {
    ThrowInput("format '{}' needs the RoPE table (LayerContext::rope)", f.Name());
  }
  if (tensor == KvTensor::kV && (f.pre_rope || f.bias_aware)) {
    ThrowInput("format '{}': +prerope and +bias apply to K only", f.Name());
  }
}

}  // namespace

LayerStats CalibrateLayer(const Strategy& strategy, KvTensor tensor, int layer,
                          const LayerContext& ctx, std::span<const float> x) {
  const int64_t per_head = static_cast<int64_t>(x.size()) / ctx.num_kv_heads;
  KVQ_CHECK(per_head * ctx.num_kv_heads == static_cast<int64_t>(x.size()) &&
            per_head % ctx.head_dim == 0);
  const int64_t tokens = per_head / ctx.head_dim;
  LayerStats stats(static_cast<size_t>(ctx.num_kv_heads));
  for (int h = 0; h < ctx.num_kv_heads; ++h) {
    const FormatSpec& f = strategy.Format(tensor, layer, h);
    CheckModifiers(f, ctx, tensor);
    stats[static_cast<size_t>(h)] =
        CalibrateHead(f, ctx.ForHead(tensor, h), x.data() + h * per_head, tokens, ctx.head_dim);
  }
  return stats;
}

void QuantizeLayer(const Strategy& strategy, KvTensor tensor, int layer, const LayerContext& ctx,
                   std::span<const float> x, std::span<float> out, const LayerStats* stats) {
  KVQ_CHECK(x.size() == out.size() && ctx.num_kv_heads > 0 && ctx.head_dim > 0);
  const int64_t per_head = static_cast<int64_t>(x.size()) / ctx.num_kv_heads;
  KVQ_CHECK(per_head * ctx.num_kv_heads == static_cast<int64_t>(x.size()) &&
            per_head % ctx.head_dim == 0);
  KVQ_CHECK(stats == nullptr || stats->size() == static_cast<size_t>(ctx.num_kv_heads));
  const int64_t tokens = per_head / ctx.head_dim;
  for (int h = 0; h < ctx.num_kv_heads; ++h) {
    const FormatSpec& f = strategy.Format(tensor, layer, h);
    CheckModifiers(f, ctx, tensor);
    f.CheckHeadDim(ctx.head_dim);
  }
  std::vector<std::string> errors(static_cast<size_t>(ctx.num_kv_heads));
  // A parallel region costs a barrier, which on a loaded machine can exceed
  // a small layer's whole work (a 4096-token Qwen2.5-0.5B layer, 2 heads x
  // 256K values, takes well under a millisecond): only large layers run their
  // heads in parallel. Callers with many layers parallelise across them.
  const bool parallel = static_cast<int64_t>(x.size()) >= kParallelLayerValues;
#pragma omp parallel for schedule(static) if (parallel)
  for (int h = 0; h < ctx.num_kv_heads; ++h) {
    try {
      QuantizeHead(strategy.Format(tensor, layer, h), ctx.ForHead(tensor, h),
                   x.data() + h * per_head, out.data() + h * per_head, tokens, ctx.head_dim,
                   stats != nullptr ? &(*stats)[static_cast<size_t>(h)] : nullptr);
    } catch (const std::exception& e) {
      errors[static_cast<size_t>(h)] = e.what();
    }
  }
  for (int h = 0; h < ctx.num_kv_heads; ++h) {
    if (!errors[static_cast<size_t>(h)].empty()) {
      ThrowInput("layer {} {} head {}: {}", layer, KvTensorName(tensor), h,
                 errors[static_cast<size_t>(h)]);
    }
  }
}

}  // namespace kvq
