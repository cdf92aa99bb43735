#pragma once
// Attention fidelity: how far the attention output of a layer moves when its
// K and V are replaced by their quantize-dequantize images (quant/quantize.h,
// the one code path `kvq quant` measures too). Q is never quantized. Formats
// with a Hadamard rotation hand K back in the original basis, so the original
// Q applies unchanged and the original attention needs no rotation.
//
// For the original output o and the quantized-K/V output o', both
// [num_heads, tokens, head_dim], over a set of (head, token) vectors (one
// query head, or the whole layer), with all sums in double:
//   nmse     = sum (o - o')^2 / sum o^2          (= mean / mean over the same
//              elements); 0 when both sums are 0, +inf when only sum o^2 is 0
//   cos      = mean over (head, token) of cos(o_ht, o'_ht), the cosine of the
//              two head_dim-long vectors: dot / (|o_ht| |o'_ht|); defined as
//              1 when both vectors are zero and 0 when exactly one is
//   cos_min  = the minimum of those cosines, and its (head, token); the first
//              in (head, token) order on ties
//   max_abs  = max |o - o'| over the elements
// Results are identical for any thread count.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kvq/model/attention.h"
#include "kvq/quant/quantize.h"
#include "kvq/quant/strategy.h"

namespace kvq {

class KvDump;

// Fidelity over a set of output vectors. The raw sums make sets combinable
// (Merge): the layer is the merge of its heads, in head order.
struct FidelityStats {
  double sum_sq_err = 0;  // sum (o - o')^2
  double sum_sq_ref = 0;  // sum o^2
  double sum_cos = 0;     // sum of per-vector cosines
  int64_t vectors = 0;    // number of (head, token) vectors
  double cos_min = 1;
  int cos_min_head = -1;  // -1 while empty
  int64_t cos_min_token = -1;
  double max_abs = 0;

  double nmse() const;
  double cos() const;  // 1 for an empty set
  void Merge(const FidelityStats& other);
};

// The cosine convention above, for two n-long vectors (double accumulation).
double VectorCosine(const float* a, const float* b, int n);

// Per query head h in [first_head, first_head + count): stats of its
// tokens x head_dim outputs. ref, got: [count, tokens, head_dim] (the heads'
// own rows); head numbers in the result are first_head + index.
std::vector<FidelityStats> CompareHeads(const float* ref, const float* got, int first_head,
                                        int count, int64_t tokens, int head_dim);

// Error by position: the (head, token) vectors grouped by the token's
// position p inside its prompt (0 .. chunk_len - 1), in buckets that double
// from 64: [0, 64), [64, 128), [128, 256), [256, 512), ...; bucket b >= 1
// holds [64 * 2^(b-1), 64 * 2^b). Fixed edges, so runs of any length line up.
inline constexpr int64_t kFirstPositionBucket = 64;
int PositionBucket(int64_t position);
int64_t PositionBucketBegin(int bucket);
int64_t PositionBucketEnd(int bucket);  // Exclusive.

// Stats per position bucket over all `heads` heads: ref, got [heads, tokens,
// head_dim], token t at position t % chunk_len. Buckets 0 ..
// PositionBucket(chunk_len - 1); cos_min_head and cos_min_token as in
// CompareHeads (heads numbered from 0).
std::vector<FidelityStats> CompareByPosition(const float* ref, const float* got, int heads,
                                             int64_t tokens, int head_dim, int64_t chunk_len);

struct LayerFidelity {
  int layer = 0;
  FidelityStats all;                     // The whole layer.
  std::vector<FidelityStats> heads;      // [num_heads], per query head.
  std::vector<FidelityStats> positions;  // Per position bucket (EvaluateLayer*), all heads.
};

// The original side of one layer, computed once and shared by every strategy
// (and by the planner's per-unit evaluations). Buffers are reused from layer
// to layer.
struct LayerReference {
  int layer = -1;
  AttentionShape shape;
  std::vector<float> q;    // [num_heads, tokens, head_dim]
  std::vector<float> k;    // [num_kv_heads, tokens, head_dim]
  std::vector<float> v;    // [num_kv_heads, tokens, head_dim]
  std::vector<float> out;  // [num_heads, tokens, head_dim], attention with the original K/V
  LayerContext context;    // For QuantizeLayer: geometry, RoPE table, the layer's k bias.

  // Reads layer `layer` of the dump (Q, K, V, k bias) and computes `out`.
  void Load(const KvDump& dump, int layer);
  // Same from tensors already in memory (tests, benchmarks): q, k, v moved in.
  void Set(int layer, const AttentionShape& shape, std::vector<float> q, std::vector<float> k,
           std::vector<float> v, LayerContext context);
};

// Scratch for the quantized side, allocated on first use and reused.
struct FidelityWorkspace {
  std::vector<float> k, v, out;
};

// Quantizes the reference layer's K and V with `strategy` (QuantizeLayer,
// scales from the layer itself), recomputes attention for all query heads
// and compares with ref.out.
LayerFidelity EvaluateLayer(const LayerReference& ref, const Strategy& strategy,
                            FidelityWorkspace& workspace);

// Same with K/V already quantized by the caller: k, v [num_kv_heads, tokens,
// head_dim].
LayerFidelity EvaluateLayerWith(const LayerReference& ref, std::span<const float> k,
                                std::span<const float> v, FidelityWorkspace& workspace);

// Per-unit fidelity for the planner: only kv head `kv_head` changes, to
// k_head, v_head [tokens, head_dim] (e.g. one head's QuantizeHead output).
// Recomputes attention only for the group_size query heads that read that kv
// head (kv_head * group .. + group - 1); the other heads' outputs are
// unchanged and not recomputed. Returns their stats, in head order (merge
// them for the group; for the layer-level NMSE of this change alone, divide
// the merged sum_sq_err by the layer's sum o^2, which EvaluateLayer's `all`
// or CompareHeads on ref.out gives). Cost: group_size / num_heads of a layer
// evaluation, no K/V of the other heads touched. workspace.out is used as
// scratch ([group, tokens, head_dim]).
std::vector<FidelityStats> EvaluateKvHead(const LayerReference& ref, int kv_head,
                                          std::span<const float> k_head,
                                          std::span<const float> v_head,
                                          FidelityWorkspace& workspace);

// EvaluateKvHead for several V of one kv head with K unchanged: element c is
// bit for bit EvaluateKvHead(ref, kv_head, k_head, v_heads[c], workspace),
// with the scores and softmax computed once for all of them
// (CausalAttentionManyV). workspace.out is used as scratch ([v_heads.size(),
// tokens, head_dim]).
std::vector<std::vector<FidelityStats>> EvaluateKvHeadManyV(
    const LayerReference& ref, int kv_head, std::span<const float> k_head,
    std::span<const std::span<const float>> v_heads, FidelityWorkspace& workspace);

// One result row: a layer (head = -1, printed "all") or one query head.
struct FidelityRow {
  std::string strategy;
  int layer = 0;
  int head = -1;
  FidelityStats stats;
};

// Rows of a layer: the layer row, then one row per query head.
std::vector<FidelityRow> LayerRows(const std::string& strategy, const LayerFidelity& layer);

// Error by position of a strategy: per layer (in the given order) the rows
// of its position buckets, then the same buckets merged over those layers
// (layer -1, printed "all"). begin, end: the bucket's positions, end
// exclusive and at most chunk_len.
struct PositionRow {
  std::string strategy;
  int layer = -1;
  int64_t begin = 0, end = 0;
  FidelityStats stats;
};
std::vector<PositionRow> PositionRows(const std::string& strategy,
                                      std::span<const LayerFidelity> layers, int64_t chunk_len);
// CSV: header `strategy,layer,position_begin,position_end,vectors,nmse,cos`
// (nmse %.6e, cos %.6f).
std::string PositionCsv(std::span<const PositionRow> rows);

// CSV: header `strategy,layer,head,nmse,cos,cos_min`, nmse as %.6e, cosines as
// %.6f (the reference system's attention CSVs carry the same layer/head
// rows).
std::string FidelityCsv(std::span<const FidelityRow> rows);
// JSON: {"schema": "kvq.attn.v1", "rows": [{strategy, layer, head ("all" or a
// number), nmse, cos, cos_min, cos_min_head, cos_min_token, max_abs}, ...],
// "positions": [{strategy, layer ("all" or a number), position_begin,
// position_end, vectors, nmse, cos}, ...]}.
std::string FidelityJson(std::span<const FidelityRow> rows,
                         std::span<const PositionRow> positions = {});

}  // namespace kvq
