#include "kvq/capture/synthetic.h"

#include <cmath>

#include "kvq/common/error.h"
#include "kvq/common/random.h"
#include "kvq/model/rope.h"

namespace kvq {
namespace {

// Outlier amplitude of a (layer, head) listed in outlier_heads.
double OutlierAmplitude(int layer) { return layer == 0 ? 125.0 : (layer == 8 ? 30.0 : 40.0); }

}  // namespace

DumpInfo SyntheticDumpOptions::Info() const {
  DumpInfo info;
  info.model = "synthetic-qwen2.5-0.5b-shaped";
  info.architecture = "Qwen2ForCausalLM";
  info.num_layers = num_layers;
  info.num_heads = num_heads;
  info.num_kv_heads = num_kv_heads;
  info.head_dim = head_dim;
  info.tokens = tokens;
  info.chunk_len = chunk_len;
  info.rope.theta = 1000000.0;
  info.dtype = DType::kF16;
  info.has_k_bias = has_k_bias;
  info.corpus = "synthetic";
  return info;
}

SyntheticLayer MakeSyntheticLayer(const SyntheticDumpOptions& o, int layer) {
  KVQ_CHECK(o.tokens % o.chunk_len == 0);
  SplitMix64 rng(o.seed ^ (0x1000003ull * static_cast<uint64_t>(layer + 1)));
  const auto d = static_cast<size_t>(o.head_dim);
  const size_t per_head = static_cast<size_t>(o.tokens) * d;
  SyntheticLayer out;
  out.k.resize(per_head * static_cast<size_t>(o.num_kv_heads));
  out.v.resize(out.k.size());
  if (o.has_k_bias) out.k_bias.resize(d * static_cast<size_t>(o.num_kv_heads));
  const RopeTable rope(o.Info().rope, o.head_dim, o.chunk_len);
  std::vector<float> channel_scale(d), outlier(d);
  for (int h = 0; h < o.num_kv_heads; ++h) {
    bool has_outliers = false;
    for (auto [l, hh] : o.outlier_heads) has_outliers |= (l == layer && hh == h);
    for (size_t c = 0; c < d; ++c) {
      channel_scale[c] = static_cast<float>(0.5 + 2.5 * rng.UniformOpen());
      outlier[c] = 0;
    }
    if (has_outliers) {
      // Three channels carry a large, mostly constant-sign offset.
      for (size_t c : {d / 8, d / 2 + 3, d - 5}) {
        outlier[c] = static_cast<float>(OutlierAmplitude(layer) * (0.5 + 0.5 * rng.UniformOpen()));
      }
    }
    float* bias = o.has_k_bias ? out.k_bias.data() + static_cast<size_t>(h) * d : nullptr;
    if (bias != nullptr) {
      rng.FillNormal({bias, d}, 1.0, &SplitMix64::NormalOpen);
      if (layer == 0) bias[3] = 40.0f;  // Qwen-like huge k bias in a boundary layer.
    }
    float* k = out.k.data() + static_cast<size_t>(h) * per_head;
    float* v = out.v.data() + static_cast<size_t>(h) * per_head;
    for (int64_t t = 0; t < o.tokens; ++t) {
      float* row = k + static_cast<size_t>(t) * d;
      for (size_t c = 0; c < d; ++c) {
        const double noise = rng.NormalOpen();
        row[c] = static_cast<float>(channel_scale[c] * noise +
                                    outlier[c] * (0.8 + 0.2 * std::fabs(noise)));
        if (bias != nullptr) row[c] += bias[c];
      }
      ApplyRope(rope, row, 1, o.head_dim, t % o.chunk_len);
      rng.FillNormal({v + static_cast<size_t>(t) * d, d}, 0.06, &SplitMix64::NormalOpen);
    }
  }
  return out;
}

void WriteSyntheticDump(const std::filesystem::path& path, const SyntheticDumpOptions& o) {
  DumpWriter writer(path, o.Info());
  std::vector<int32_t> ids(static_cast<size_t>(o.tokens));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i % 1000);
  writer.WriteInputIds(ids);
  SplitMix64 rng(o.seed ^ 0xABCDEFull);
  std::vector<float> q(static_cast<size_t>(o.num_heads) * static_cast<size_t>(o.tokens) *
                       static_cast<size_t>(o.head_dim));
  for (int l = 0; l < o.num_layers; ++l) {
    rng.FillNormal(q, 1.0, &SplitMix64::NormalOpen);
    const SyntheticLayer layer = MakeSyntheticLayer(o, l);
    writer.WriteLayer(l, q, layer.k, layer.v, layer.k_bias);
  }
  writer.Commit();
}

}  // namespace kvq
