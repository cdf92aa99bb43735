#pragma once
// Grouped-query causal attention, the one kernel behind the forward pass and
// attention-fidelity validation.
//
// For query head h (kv head h / group, group = num_heads / num_kv_heads) and a
// query token t inside prompt c (tokens [c * chunk_len, (c + 1) * chunk_len)):
//   s_j = (q_t . k_j) * scale       for keys j of the same prompt with j <= t
//   p_j = exp(s_j - max s) / sum    (float32, max-subtracted)
//   out_t = sum_j p_j v_j
// Attention never crosses prompts; positions restart in each prompt.
#include <cstdint>
#include <span>

namespace kvq {

// Element (head, token, d) of a [heads, tokens, head_dim] tensor sits at
// data[head * head_stride + token * token_stride + d]. Head-major dumps have
// head_stride = tokens * head_dim, token_stride = head_dim; the token-major
// activations of the forward pass have head_stride = head_dim and
// token_stride = heads * head_dim.
struct HeadsView {
  const float* data = nullptr;
  int64_t head_stride = 0;
  int64_t token_stride = 0;
};

struct MutableHeadsView {
  float* data = nullptr;
  int64_t head_stride = 0;
  int64_t token_stride = 0;
};

struct AttentionShape {
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int64_t tokens = 0;
  int64_t chunk_len = 0;  // tokens must be a multiple of it.
  float scale = 0;        // Usually 1 / sqrt(head_dim).
};

// Fast path: tiled, never holds a tokens x tokens matrix, OpenMP over
// (head, query tile). Results do not depend on the thread count.
void CausalAttention(const AttentionShape& shape, HeadsView q, HeadsView k, HeadsView v,
                     MutableHeadsView out);

// The same attention of one Q and K with several V: out[c] is bit for bit
// what CausalAttention(shape, q, k, v[c], out[c]) writes, with the scores
// and the softmax (half the multiply-adds and every exp) computed once for
// all of them. The planner measures its V candidates this way.
void CausalAttentionManyV(const AttentionShape& shape, HeadsView q, HeadsView k,
                          std::span<const HeadsView> v, std::span<const MutableHeadsView> out);

}  // namespace kvq
