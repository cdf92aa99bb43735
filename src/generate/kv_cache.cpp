#include "kvq/generate/kv_cache.h"

#include <algorithm>

#include "kvq/common/error.h"
#include "kvq/common/half.h"
#include "kvq/quant/quantize.h"

namespace kvq {

const char* AppendRuleName(AppendRule rule) {
  switch (rule) {
    case AppendRule::kExact:
      return "exact";
    case AppendRule::kPerToken:
      return "per-token";
    case AppendRule::kCalibrated:
      return "calibrated";
    case AppendRule::kTokenGroups:
      return "token-groups";
  }
  return "?";
}

AppendRule RuleFor(const FormatSpec& f) {
  if (f.kind == FormatKind::kInt && f.granularity == Granularity::kGroupToken) {
    return AppendRule::kTokenGroups;
  }
  return f.NeedsStats() ? AppendRule::kCalibrated : AppendRule::kPerToken;
}

struct QuantizedKvCache::Head {
  FormatSpec format;  // As the strategy gives it.
  FormatSpec core;    // Without sink / recent: what QuantizeHead applies to a block.
  AppendRule rule = AppendRule::kExact;
  HeadStats stats;
  bool calibrated = false;
  int64_t length = 0;
  int64_t next = 0;           // Tokens [sink, next) are quantized.
  std::vector<float> exact;   // [length, head_dim] as appended (float32).
  std::vector<float> values;  // [length, head_dim] what attention reads.
};

QuantizedKvCache::QuantizedKvCache(const ModelConfig& c, const Strategy* strategy)
    : num_layers_(c.num_layers),
      num_kv_heads_(c.num_kv_heads),
      head_dim_(c.head_dim),
      rope_config_(c.rope) {
  if (strategy) strategy->Validate({c.num_layers, c.num_kv_heads, c.head_dim});
  heads_.resize(size_t{2} * static_cast<size_t>(num_layers_) * static_cast<size_t>(num_kv_heads_));
  for (KvTensor tensor : {KvTensor::kK, KvTensor::kV}) {
    for (int l = 0; l < num_layers_; ++l) {
      for (int h = 0; h < num_kv_heads_; ++h) {
        Head& head = At(tensor, l, h);
        if (!strategy) continue;
        head.format = strategy->Format(tensor, l, h);
        head.format.CheckHeadDim(head_dim_);
        head.core = head.format;
        head.core.sink = 0;
        head.core.recent = 0;
        head.rule = RuleFor(head.format);
        head.next = head.format.sink;
      }
    }
  }
}

QuantizedKvCache::QuantizedKvCache(QuantizedKvCache&&) noexcept = default;
QuantizedKvCache::~QuantizedKvCache() = default;

QuantizedKvCache::Head& QuantizedKvCache::At(KvTensor tensor, int layer, int head) {
  KVQ_CHECK(layer >= 0 && layer < num_layers_ && head >= 0 && head < num_kv_heads_);
  return heads_[static_cast<size_t>(
      (int64_t{static_cast<int>(tensor)} * num_layers_ + layer) * num_kv_heads_ + head)];
}

const QuantizedKvCache::Head& QuantizedKvCache::At(KvTensor tensor, int layer, int head) const {
  return const_cast<QuantizedKvCache*>(this)->At(tensor, layer, head);
}

const RopeTable& QuantizedKvCache::RopeCovering(int64_t positions) {
  if (!rope_ || static_cast<int64_t>(rope_->cos.size()) < positions * (head_dim_ / 2)) {
    const int64_t held = rope_ ? static_cast<int64_t>(rope_->cos.size()) / (head_dim_ / 2) : 0;
    rope_ = std::make_unique<RopeTable>(rope_config_, head_dim_, std::max(positions, 2 * held));
  }
  return *rope_;
}

void QuantizedKvCache::Append(int layer, const float* k, const float* v, int64_t tokens,
                              const float* k_bias) {
  KVQ_CHECK(tokens > 0);
  const int D = head_dim_;
  const int64_t width = static_cast<int64_t>(num_kv_heads_) * D;
  for (KvTensor tensor : {KvTensor::kK, KvTensor::kV}) {
    const float* src = tensor == KvTensor::kK ? k : v;
    for (int h = 0; h < num_kv_heads_; ++h) {
      Head& head = At(tensor, layer, h);
      const int64_t first = head.length;
      head.length += tokens;
      head.exact.resize(static_cast<size_t>(head.length * D));
      head.values.resize(head.exact.size());
      for (int64_t t = 0; t < tokens; ++t) {
        std::copy_n(src + t * width + h * D, D, head.exact.data() + (first + t) * D);
      }
      float* x = head.exact.data() + first * D;
      float* y = head.values.data() + first * D;
      if (head.rule == AppendRule::kExact) {
        std::copy_n(x, tokens * D, y);
        continue;
      }
      // Every new token enters as fp16 (sink, recent window, residual group).
      for (int64_t i = 0; i < tokens * D; ++i) y[i] = RoundToHalf(x[i]);

      const FormatSpec& f = head.format;
      // +prerope / +bias: the quantizer works at the tokens' absolute
      // positions (HeadContext::first_position) with the layer's bias.
      HeadContext base;
      if (f.pre_rope || f.bias_aware) {
        base.rope = &RopeCovering(head.length);
        if (f.bias_aware && k_bias != nullptr) base.k_bias = k_bias + static_cast<int64_t>(h) * D;
      }
      if (head.rule == AppendRule::kCalibrated && !head.calibrated) {
        if (first != 0) ThrowInput("the decoding cache calibrates on the prefill only");
        FormatSpec calibration = f;
        calibration.recent = 0;  // Every prefill token past the sink.
        HeadContext ctx = base;
        ctx.chunk_len = tokens;
        head.stats = CalibrateHead(calibration, ctx, x, tokens, D);
        if (head.stats.count == 0) {
          ThrowInput(
              "format '{}' ({} layer {} head {}) takes its scale from the prefill, but the "
              "{}-token prompt leaves no token past +sink{} to calibrate on",
              f.Name(), KvTensorName(tensor), layer, h, tokens, f.sink);
        }
        head.calibrated = true;
      }
      // Tokens that have left the recent window (and, for token groups,
      // form complete groups) are quantized, from their float32 values.
      const int64_t leaving = std::max<int64_t>(f.sink, head.length - f.recent);
      int64_t end = leaving;
      if (head.rule == AppendRule::kTokenGroups) {
        end = f.sink + (leaving - f.sink) / f.group * f.group;
      }
      if (end > head.next) {
        const int64_t rows = end - head.next;
        HeadContext ctx = base;
        ctx.chunk_len = rows;
        ctx.first_position = head.next;
        QuantizeHead(head.core, ctx, head.exact.data() + head.next * D,
                     head.values.data() + head.next * D, rows, D,
                     head.rule == AppendRule::kCalibrated ? &head.stats : nullptr);
        head.next = end;
      }
    }
  }
}

int64_t QuantizedKvCache::length(int layer) const { return At(KvTensor::kK, layer, 0).length; }

const float* QuantizedKvCache::Values(KvTensor tensor, int layer, int head) const {
  return At(tensor, layer, head).values.data();
}

int64_t QuantizedKvCache::QuantizedTokens(KvTensor tensor, int layer, int head) const {
  const Head& h = At(tensor, layer, head);
  return h.rule == AppendRule::kExact ? 0 : std::max<int64_t>(0, h.next - h.format.sink);
}

AppendRule QuantizedKvCache::Rule(KvTensor tensor, int layer, int head) const {
  return At(tensor, layer, head).rule;
}

double QuantizedKvCache::Bytes() const {
  double bytes = 0;
  for (const Head& h : heads_) {
    if (h.rule == AppendRule::kExact) {
      bytes += static_cast<double>(h.length) * 4.0 * head_dim_;
      continue;
    }
    const int64_t quantized = std::max<int64_t>(0, h.next - h.format.sink);
    const ByteCost cost = FormatCost(h.core, head_dim_, 1);
    bytes += static_cast<double>(quantized) * cost.per_token +
             static_cast<double>(h.length - quantized) * 2.0 * head_dim_;
    if (quantized > 0 || h.calibrated) bytes += cost.per_sequence;
  }
  return bytes;
}

}  // namespace kvq
