#include "kvq/metrics/attention_fidelity.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kvq/capture/dump.h"
#include "kvq/common/error.h"
#include "kvq/common/finite.h"

namespace kvq {

double FidelityStats::nmse() const {
  if (sum_sq_ref == 0) return sum_sq_err == 0 ? 0.0 : std::numeric_limits<double>::infinity();
  return sum_sq_err / sum_sq_ref;
}

double FidelityStats::cos() const {
  return vectors == 0 ? 1.0 : sum_cos / static_cast<double>(vectors);
}

void FidelityStats::Merge(const FidelityStats& other) {
  sum_sq_err += other.sum_sq_err;
  sum_sq_ref += other.sum_sq_ref;
  sum_cos += other.sum_cos;
  vectors += other.vectors;
  // Strictly lower wins: on ties the set merged first (lower head) keeps it.
  if (other.cos_min_head >= 0 && (cos_min_head < 0 || other.cos_min < cos_min)) {
    cos_min = other.cos_min;
    cos_min_head = other.cos_min_head;
    cos_min_token = other.cos_min_token;
  }
  max_abs = std::max(max_abs, other.max_abs);
}

namespace {

// The cosine convention from dot = a.b, aa = a.a, bb = b.b.
double CosineOfSums(double dot, double aa, double bb) {
  if (aa == 0 && bb == 0) return 1.0;
  if (aa == 0 || bb == 0) return 0.0;
  // sqrt(aa * bb) rather than sqrt(aa) * sqrt(bb): for a == b it is exactly
  // aa, so identical vectors give exactly 1. The clamp absorbs rounding.
  return std::clamp(dot / std::sqrt(aa * bb), -1.0, 1.0);
}

}  // namespace

double VectorCosine(const float* a, const float* b, int n) {
  double dot = 0, aa = 0, bb = 0;
  for (int i = 0; i < n; ++i) {
    dot += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  return CosineOfSums(dot, aa, bb);
}

namespace {

// Adds one (head, token) vector pair to s: one pass for the error sums and
// the cosine's (VectorCosine's sums, in its order: sq is its a.a).
void AddVector(FidelityStats& s, const float* a, const float* b, int head_dim, int head,
               int64_t token) {
  double err = 0, sq = 0, dot = 0, bb = 0, max_abs = s.max_abs;
  for (int d = 0; d < head_dim; ++d) {
    const double diff = static_cast<double>(a[d]) - b[d];
    err += diff * diff;
    sq += static_cast<double>(a[d]) * a[d];
    dot += static_cast<double>(a[d]) * b[d];
    bb += static_cast<double>(b[d]) * b[d];
    max_abs = std::max(max_abs, std::abs(diff));
  }
  s.sum_sq_err += err;
  s.sum_sq_ref += sq;
  s.max_abs = max_abs;
  const double c = CosineOfSums(dot, sq, bb);
  s.sum_cos += c;
  ++s.vectors;
  if (s.cos_min_head < 0 || c < s.cos_min) {
    s.cos_min = c;
    s.cos_min_head = head;
    s.cos_min_token = token;
  }
}

}  // namespace

std::vector<FidelityStats> CompareHeads(const float* ref, const float* got, int first_head,
                                        int count, int64_t tokens, int head_dim) {
  std::vector<FidelityStats> out(static_cast<size_t>(count));
  const int64_t per_head = tokens * head_dim;
  // One head per iteration, its sums in token order: the result does not
  // depend on the thread count.
#pragma omp parallel for schedule(static)
  for (int h = 0; h < count; ++h) {
    for (int64_t t = 0; t < tokens; ++t) {
      AddVector(out[static_cast<size_t>(h)], ref + h * per_head + t * head_dim,
                got + h * per_head + t * head_dim, head_dim, first_head + h, t);
    }
  }
  return out;
}

int PositionBucket(int64_t position) {
  KVQ_CHECK(position >= 0);
  int bucket = 0;
  for (int64_t end = kFirstPositionBucket; position >= end; end *= 2) ++bucket;
  return bucket;
}

int64_t PositionBucketBegin(int bucket) {
  return bucket == 0 ? 0 : kFirstPositionBucket << (bucket - 1);
}

int64_t PositionBucketEnd(int bucket) { return kFirstPositionBucket << bucket; }

std::vector<FidelityStats> CompareByPosition(const float* ref, const float* got, int heads,
                                             int64_t tokens, int head_dim, int64_t chunk_len) {
  KVQ_CHECK(chunk_len > 0 && tokens % chunk_len == 0);
  const size_t buckets = static_cast<size_t>(PositionBucket(chunk_len - 1)) + 1;
  const int64_t per_head = tokens * head_dim;
  // Per head in parallel, then merged in head order: thread-count independent.
  std::vector<std::vector<FidelityStats>> per(static_cast<size_t>(heads),
                                              std::vector<FidelityStats>(buckets));
#pragma omp parallel for schedule(static)
  for (int h = 0; h < heads; ++h) {
    for (int64_t t = 0; t < tokens; ++t) {
      AddVector(per[static_cast<size_t>(h)][static_cast<size_t>(PositionBucket(t % chunk_len))],
                ref + h * per_head + t * head_dim, got + h * per_head + t * head_dim, head_dim, h,
                t);
    }
  }
  std::vector<FidelityStats> out(buckets);
  for (const auto& head : per) {
    for (size_t b = 0; b < buckets; ++b) out[b].Merge(head[b]);
  }
  return out;
}

void LayerReference::Set(int layer_index, const AttentionShape& attention_shape,
                         std::vector<float> q_values, std::vector<float> k_values,
                         std::vector<float> v_values, LayerContext layer_context) {
  const int64_t per_head = attention_shape.tokens * attention_shape.head_dim;
  KVQ_CHECK(static_cast<int64_t>(q_values.size()) == attention_shape.num_heads * per_head);
  KVQ_CHECK(static_cast<int64_t>(k_values.size()) == attention_shape.num_kv_heads * per_head);
  KVQ_CHECK(k_values.size() == v_values.size());
  layer = layer_index;
  shape = attention_shape;
  q = std::move(q_values);
  k = std::move(k_values);
  v = std::move(v_values);
  context = std::move(layer_context);
  out.resize(q.size());
  CausalAttention(shape, {q.data(), per_head, shape.head_dim}, {k.data(), per_head, shape.head_dim},
                  {v.data(), per_head, shape.head_dim}, {out.data(), per_head, shape.head_dim});
}

void LayerReference::Load(const KvDump& dump, int layer_index) {
  const DumpInfo& info = dump.info();
  if (layer_index < 0 || layer_index >= info.num_layers) {
    ThrowInput("{}: no layer {} (the dump has {})", dump.path().string(), layer_index,
               info.num_layers);
  }
  const int64_t per_head = info.tokens * info.head_dim;
  // Reuse the buffers (and the RoPE table) of the previous layer.
  std::vector<float> qv = std::move(q), kv = std::move(k), vv = std::move(v);
  qv.resize(static_cast<size_t>(info.num_heads * per_head));
  kv.resize(static_cast<size_t>(info.num_kv_heads * per_head));
  vv.resize(kv.size());
  dump.ReadQ(layer_index, qv);
  dump.ReadK(layer_index, kv);
  dump.ReadV(layer_index, vv);
  LayerContext ctx = std::move(context);
  if (ctx.rope == nullptr || ctx.chunk_len != info.chunk_len) {
    ctx = DumpLayerContext(info);
  }
  ctx.k_bias = dump.ReadKBias(layer_index);
  const AttentionShape attention_shape{
      info.num_heads, info.num_kv_heads, info.head_dim,
      info.tokens,    info.chunk_len,    1.0f / std::sqrt(static_cast<float>(info.head_dim))};
  Set(layer_index, attention_shape, std::move(qv), std::move(kv), std::move(vv), std::move(ctx));
  // Finite q, k and v can still overflow float in Q.K or the weighted sum;
  // a non-finite reference would turn every figure into NaN downstream.
  if (const int64_t bad = FirstNonFinite(out.data(), static_cast<int64_t>(out.size()));
      bad < static_cast<int64_t>(out.size())) {
    ThrowInput(
        "{}: layer {} head {} token {}: attention over the dump's q, k, v overflows float "
        "(the values are out of range for attention)",
        dump.path().string(), layer_index, bad / per_head, (bad % per_head) / info.head_dim);
  }
}

LayerFidelity EvaluateLayerWith(const LayerReference& ref, std::span<const float> k,
                                std::span<const float> v, FidelityWorkspace& workspace) {
  const AttentionShape& shape = ref.shape;
  const int64_t per_head = shape.tokens * shape.head_dim;
  KVQ_CHECK(k.size() == ref.k.size() && v.size() == ref.v.size());
  workspace.out.resize(ref.out.size());
  CausalAttention(shape, {ref.q.data(), per_head, shape.head_dim},
                  {k.data(), per_head, shape.head_dim}, {v.data(), per_head, shape.head_dim},
                  {workspace.out.data(), per_head, shape.head_dim});
  LayerFidelity result;
  result.layer = ref.layer;
  result.heads = CompareHeads(ref.out.data(), workspace.out.data(), 0, shape.num_heads,
                              shape.tokens, shape.head_dim);
  for (const FidelityStats& h : result.heads) result.all.Merge(h);
  result.positions = CompareByPosition(ref.out.data(), workspace.out.data(), shape.num_heads,
                                       shape.tokens, shape.head_dim, shape.chunk_len);
  return result;
}

LayerFidelity EvaluateLayer(const LayerReference& ref, const Strategy& strategy,
                            FidelityWorkspace& workspace) {
  workspace.k.resize(ref.k.size());
  workspace.v.resize(ref.v.size());
  QuantizeLayer(strategy, KvTensor::kK, ref.layer, ref.context, ref.k, workspace.k);
  QuantizeLayer(strategy, KvTensor::kV, ref.layer, ref.context, ref.v, workspace.v);
  return EvaluateLayerWith(ref, workspace.k, workspace.v, workspace);
}

std::vector<FidelityStats> EvaluateKvHead(const LayerReference& ref, int kv_head,
                                          std::span<const float> k_head,
                                          std::span<const float> v_head,
                                          FidelityWorkspace& workspace) {
  const AttentionShape& shape = ref.shape;
  KVQ_CHECK(kv_head >= 0 && kv_head < shape.num_kv_heads);
  const int64_t per_head = shape.tokens * shape.head_dim;
  KVQ_CHECK(static_cast<int64_t>(k_head.size()) == per_head);
  KVQ_CHECK(static_cast<int64_t>(v_head.size()) == per_head);
  const int group = shape.num_heads / shape.num_kv_heads;
  const int first = kv_head * group;
  if (static_cast<int64_t>(workspace.out.size()) < group * per_head) {
    workspace.out.resize(static_cast<size_t>(group * per_head));
  }
  AttentionShape group_shape = shape;
  group_shape.num_heads = group;
  group_shape.num_kv_heads = 1;
  CausalAttention(group_shape, {ref.q.data() + first * per_head, per_head, shape.head_dim},
                  {k_head.data(), per_head, shape.head_dim},
                  {v_head.data(), per_head, shape.head_dim},
                  {workspace.out.data(), per_head, shape.head_dim});
  return CompareHeads(ref.out.data() + first * per_head, workspace.out.data(), first, group,
                      shape.tokens, shape.head_dim);
}

std::vector<std::vector<FidelityStats>> EvaluateKvHeadManyV(
    const LayerReference& ref, int kv_head, std::span<const float> k_head,
    std::span<const std::span<const float>> v_heads, FidelityWorkspace& workspace) {
  const AttentionShape& shape = ref.shape;
  KVQ_CHECK(kv_head >= 0 && kv_head < shape.num_kv_heads);
  const int64_t per_head = shape.tokens * shape.head_dim;
  KVQ_CHECK(static_cast<int64_t>(k_head.size()) == per_head);
  for (const std::span<const float> v : v_heads) {
    KVQ_CHECK(static_cast<int64_t>(v.size()) == per_head);
  }
  const int group = shape.num_heads / shape.num_kv_heads;
  const int first = kv_head * group;
  const size_t count = v_heads.size();
  if (workspace.out.size() < count * static_cast<size_t>(per_head)) {
    workspace.out.resize(count * static_cast<size_t>(per_head));
  }
  std::vector<HeadsView> v_views;
  std::vector<MutableHeadsView> out_views;
  for (size_t c = 0; c < count; ++c) {
    v_views.push_back({v_heads[c].data(), per_head, shape.head_dim});
    out_views.push_back({workspace.out.data() + c * per_head, per_head, shape.head_dim});
  }
  // One query head at a time: the outputs of all V stay [count, tokens,
  // head_dim] instead of group times that. Heads are independent in the
  // kernel, so this is exactly the group's attention.
  AttentionShape head_shape = shape;
  head_shape.num_heads = 1;
  head_shape.num_kv_heads = 1;
  std::vector<std::vector<FidelityStats>> stats(count);
  for (int h = first; h < first + group; ++h) {
    CausalAttentionManyV(head_shape, {ref.q.data() + h * per_head, per_head, shape.head_dim},
                         {k_head.data(), per_head, shape.head_dim}, v_views, out_views);
    for (size_t c = 0; c < count; ++c) {
      stats[c].push_back(CompareHeads(ref.out.data() + h * per_head, out_views[c].data, h, 1,
                                      shape.tokens, shape.head_dim)[0]);
    }
  }
  return stats;
}

std::vector<FidelityRow> LayerRows(const std::string& strategy, const LayerFidelity& layer) {
  std::vector<FidelityRow> rows;
  rows.reserve(layer.heads.size() + 1);
  rows.push_back({strategy, layer.layer, -1, layer.all});
  for (size_t h = 0; h < layer.heads.size(); ++h) {
    rows.push_back({strategy, layer.layer, static_cast<int>(h), layer.heads[h]});
  }
  return rows;
}

std::vector<PositionRow> PositionRows(const std::string& strategy,
                                      std::span<const LayerFidelity> layers, int64_t chunk_len) {
  std::vector<PositionRow> rows;
  std::vector<FidelityStats> all;
  auto add = [&](int layer, const std::vector<FidelityStats>& buckets) {
    for (size_t b = 0; b < buckets.size(); ++b) {
      const int bucket = static_cast<int>(b);
      rows.push_back({strategy, layer, PositionBucketBegin(bucket),
                      std::min(PositionBucketEnd(bucket), chunk_len), buckets[b]});
    }
  };
  for (const LayerFidelity& l : layers) {
    add(l.layer, l.positions);
    if (all.size() < l.positions.size()) all.resize(l.positions.size());
    for (size_t b = 0; b < l.positions.size(); ++b) all[b].Merge(l.positions[b]);
  }
  add(-1, all);
  return rows;
}

namespace {

// RFC 4180: quote a field holding a comma, quote or line break.
std::string CsvField(const std::string& text) {
  if (text.find_first_of(",\"\n\r") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string FidelityCsv(std::span<const FidelityRow> rows) {
  std::string out = "strategy,layer,head,nmse,cos,cos_min\n";
  for (const FidelityRow& r : rows) {
    out += fmt::format("{},{},{},{:.6e},{:.6f},{:.6f}\n", CsvField(r.strategy), r.layer,
                       r.head < 0 ? std::string("all") : std::to_string(r.head), r.stats.nmse(),
                       r.stats.cos(), r.stats.cos_min);
  }
  return out;
}

std::string PositionCsv(std::span<const PositionRow> rows) {
  std::string out = "strategy,layer,position_begin,position_end,vectors,nmse,cos\n";
  for (const PositionRow& r : rows) {
    out += fmt::format("{},{},{},{},{},{:.6e},{:.6f}\n", CsvField(r.strategy),
                       r.layer < 0 ? std::string("all") : std::to_string(r.layer), r.begin, r.end,
                       r.stats.vectors, r.stats.nmse(), r.stats.cos());
  }
  return out;
}

std::string FidelityJson(std::span<const FidelityRow> rows,
                         std::span<const PositionRow> positions) {
  nlohmann::json list = nlohmann::json::array();
  for (const FidelityRow& r : rows) {
    nlohmann::json row;
    row["strategy"] = r.strategy;
    row["layer"] = r.layer;
    if (r.head < 0) {
      row["head"] = "all";
    } else {
      row["head"] = r.head;
    }
    // JSON has no infinity: an infinite NMSE (all-zero reference) is null.
    const double nmse = r.stats.nmse();
    row["nmse"] = std::isfinite(nmse) ? nlohmann::json(nmse) : nlohmann::json(nullptr);
    row["cos"] = r.stats.cos();
    row["cos_min"] = r.stats.cos_min;
    row["cos_min_head"] = r.stats.cos_min_head;
    row["cos_min_token"] = r.stats.cos_min_token;
    row["max_abs"] = r.stats.max_abs;
    list.push_back(std::move(row));
  }
  nlohmann::json by_position = nlohmann::json::array();
  for (const PositionRow& r : positions) {
    const double nmse = r.stats.nmse();
    by_position.push_back({{"strategy", r.strategy},
                           {"layer", r.layer < 0 ? nlohmann::json("all") : nlohmann::json(r.layer)},
                           {"position_begin", r.begin},
                           {"position_end", r.end},
                           {"vectors", r.stats.vectors},
                           {"nmse", std::isfinite(nmse) ? nlohmann::json(nmse) : nullptr},
                           {"cos", r.stats.cos()}});
  }
  nlohmann::json doc;
  doc["schema"] = "kvq.attn.v1";
  doc["rows"] = std::move(list);
  doc["positions"] = std::move(by_position);
  return doc.dump(1) + "\n";
}

}  // namespace kvq
