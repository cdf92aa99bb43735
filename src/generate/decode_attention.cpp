// Decode attention: a few new query rows against the whole KV cache, fp32,
// written once on Highway and dispatched at run time to the best SIMD target
// of the CPU.
//
// The query heads of a GQA group read the same kv head, so they are attended
// together: the rows of one kv head are its group's query heads of every new
// token (row r = t * group + i is query head g * group + i of token t), and
// one pass over each key computes the scores of all of them. Rows lie along
// the vector lanes (at most 8: Qwen2.5-0.5B's 7 query heads per kv head fill
// an AVX2 vector), so both products are broadcasts of one cache value times
// a vector of rows, with no horizontal sums:
//   S[j][r] = k_j . (scale * q_r)                      (one pass over K)
//   O[d][r] = sum_j v_j[d] * exp(S[j][r] - m[r])       (one pass over V)
//
// Work is split flash-decoding style: one item = (kv head, lane group of
// rows, block of kBlockKeys keys). An item keeps, per row, the block's score
// max m, sum l = sum_j exp(S[j][r] - m) and unnormalised output O. The
// blocks of a (kv head, lane group) are then merged in block order:
//   M = max_b m_b;  alpha_b = exp(m_b - M)
//   out = (sum_b alpha_b O_b) / (sum_b alpha_b l_b)
// The block size is fixed, every item's arithmetic is independent of which
// thread runs it and the merge order is fixed, so results are identical for
// any thread count (on one SIMD target: the targets differ in fused vs
// separate multiply-add and in lane count, within the tested tolerance).
// exp is FastExpLanes, as in the prefill's attention (src/model/attention.cpp).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kvq/common/error.h"
#include "kvq/generate/generate.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "generate/decode_attention.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "common/scratch.h"
#include "common/simd-inl.h"

#ifndef KVQ_GENERATE_DECODE_ATTENTION_ONCE
#define KVQ_GENERATE_DECODE_ATTENTION_ONCE
namespace kvq {
namespace {

// Keys per work item: 16 items per kv head at 4k context, so both cores have
// work at one new token even for a model with one kv head; a block's scores
// (kBlockKeys x 8 floats) stay in L1.
constexpr int64_t kBlockKeys = 256;
// Keys per score micro-kernel call, and head dims per output micro-kernel
// call: 8 accumulators hide the multiply-add latency on one vector of rows.
constexpr int kTile = 8;

int PaddedDims(int head_dim) { return (head_dim + kTile - 1) / kTile * kTile; }

}  // namespace
}  // namespace kvq
#endif  // KVQ_GENERATE_DECODE_ATTENTION_ONCE

HWY_BEFORE_NAMESPACE();
namespace kvq {
namespace HWY_NAMESPACE {
namespace {

// At most 8 rows per lane group (a GQA group is rarely larger); wider
// vectors would mostly carry padding.
using D = hn::CappedTag<float, 8>;
using V = hn::Vec<D>;

struct DecodeShape {
  int num_heads, group, head_dim;
  int64_t position, tokens;
  int rows;         // group * tokens: query rows per kv head.
  int lane_groups;  // ceil(rows / lanes)
  float scale;
};

// One work item's results, per row lane: m [lanes], l [lanes], O [PaddedDims,
// lanes] (dims past head_dim repeat the last dim and are never read).
struct Partial {
  float* m;
  float* l;
  float* o;
};

Partial PartialAt(float* base, int64_t item, int head_dim, size_t lanes) {
  const size_t size = (2 + static_cast<size_t>(PaddedDims(head_dim))) * lanes;
  float* p = base + static_cast<size_t>(item) * size;
  return {p, p + lanes, p + 2 * lanes};
}

// s[j * lanes + lane] = keys[j] . qt[:, lane] for the kTile keys `keys`.
HWY_INLINE void ScoreTile(D d, const float* const* keys, const float* HWY_RESTRICT qt, int head_dim,
                          float* HWY_RESTRICT s) {
  const size_t N = hn::Lanes(d);
  V a0 = hn::Zero(d), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (int dd = 0; dd < head_dim; ++dd) {
    const V q = hn::LoadU(d, qt + static_cast<size_t>(dd) * N);
    a0 = hn::MulAdd(hn::Set(d, keys[0][dd]), q, a0);
    a1 = hn::MulAdd(hn::Set(d, keys[1][dd]), q, a1);
    a2 = hn::MulAdd(hn::Set(d, keys[2][dd]), q, a2);
    a3 = hn::MulAdd(hn::Set(d, keys[3][dd]), q, a3);
    a4 = hn::MulAdd(hn::Set(d, keys[4][dd]), q, a4);
    a5 = hn::MulAdd(hn::Set(d, keys[5][dd]), q, a5);
    a6 = hn::MulAdd(hn::Set(d, keys[6][dd]), q, a6);
    a7 = hn::MulAdd(hn::Set(d, keys[7][dd]), q, a7);
  }
  hn::StoreU(a0, d, s + 0 * N);
  hn::StoreU(a1, d, s + 1 * N);
  hn::StoreU(a2, d, s + 2 * N);
  hn::StoreU(a3, d, s + 3 * N);
  hn::StoreU(a4, d, s + 4 * N);
  hn::StoreU(a5, d, s + 5 * N);
  hn::StoreU(a6, d, s + 6 * N);
  hn::StoreU(a7, d, s + 7 * N);
}

// o[r * lanes + lane] = sum_{j < nk} v[j * head_dim + r] * p[j * lanes +
// lane] for the kTile dims r starting at v (the caller clamps dims past
// head_dim through `dims`).
HWY_INLINE void OutputTile(D d, const float* const* dims, int head_dim, const float* HWY_RESTRICT p,
                           int nk, float* HWY_RESTRICT o) {
  const size_t N = hn::Lanes(d);
  V a0 = hn::Zero(d), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (int j = 0; j < nk; ++j) {
    const V w = hn::LoadU(d, p + static_cast<size_t>(j) * N);
    const size_t at = static_cast<size_t>(j) * static_cast<size_t>(head_dim);
    a0 = hn::MulAdd(hn::Set(d, dims[0][at]), w, a0);
    a1 = hn::MulAdd(hn::Set(d, dims[1][at]), w, a1);
    a2 = hn::MulAdd(hn::Set(d, dims[2][at]), w, a2);
    a3 = hn::MulAdd(hn::Set(d, dims[3][at]), w, a3);
    a4 = hn::MulAdd(hn::Set(d, dims[4][at]), w, a4);
    a5 = hn::MulAdd(hn::Set(d, dims[5][at]), w, a5);
    a6 = hn::MulAdd(hn::Set(d, dims[6][at]), w, a6);
    a7 = hn::MulAdd(hn::Set(d, dims[7][at]), w, a7);
  }
  hn::StoreU(a0, d, o + 0 * N);
  hn::StoreU(a1, d, o + 1 * N);
  hn::StoreU(a2, d, o + 2 * N);
  hn::StoreU(a3, d, o + 3 * N);
  hn::StoreU(a4, d, o + 4 * N);
  hn::StoreU(a5, d, o + 5 * N);
  hn::StoreU(a6, d, o + 6 * N);
  hn::StoreU(a7, d, o + 7 * N);
}

// The token of row lane `lane` of lane group `lane_group` (padding lanes get
// tokens past the last; they are computed and never written out).
int64_t TokenOf(const DecodeShape& s, int lane_group, size_t lane, size_t lanes) {
  return static_cast<int64_t>(static_cast<size_t>(lane_group) * lanes + lane) / s.group;
}

// Keys [j0, j0 + nk) of kv head g for the rows of one lane group, into `out`.
void AttendBlock(const DecodeShape& s, const float* q, const float* kh, const float* vh, int g,
                 int lane_group, int64_t j0, int nk, Partial out) {
  const D d;
  const size_t N = hn::Lanes(d);
  const int hd = s.head_dim;
  thread_local ScratchBuffer scratch;
  float* qt = scratch.Get(static_cast<size_t>(hd) * N + static_cast<size_t>(kBlockKeys) * N);
  float* st = qt + static_cast<size_t>(hd) * N;  // [kBlockKeys, lanes]

  // Q of the lane group, scaled and transposed: qt [head_dim, lanes].
  const int64_t width = static_cast<int64_t>(s.num_heads) * hd;
  for (size_t lane = 0; lane < N; ++lane) {
    const int row = lane_group * static_cast<int>(N) + static_cast<int>(lane);
    const float* qr = nullptr;
    if (row < s.rows) {
      const int64_t t = row / s.group;
      const int head = g * s.group + row % s.group;
      qr = q + t * width + static_cast<int64_t>(head) * hd;
    }
    for (int dd = 0; dd < hd; ++dd) {
      qt[static_cast<size_t>(dd) * N + lane] = qr ? qr[dd] * s.scale : 0.0f;
    }
  }

  // Scores; a tile past the block's end repeats its last key (those score
  // rows are never read).
  for (int j = 0; j < nk; j += kTile) {
    const float* keys[kTile];
    for (int r = 0; r < kTile; ++r) keys[r] = kh + (j0 + std::min(j + r, nk - 1)) * hd;
    ScoreTile(d, keys, qt, hd, st + static_cast<size_t>(j) * N);
  }
  // Causal mask: key j0 + j is hidden from token t when j0 + j > position + t.
  constexpr float kInf = std::numeric_limits<float>::infinity();
  if (j0 + nk - 1 > s.position) {
    for (int j = std::max(0, static_cast<int>(s.position + 1 - j0)); j < nk; ++j) {
      for (size_t lane = 0; lane < N; ++lane) {
        if (j0 + j > s.position + TokenOf(s, lane_group, lane, N)) {
          st[static_cast<size_t>(j) * N + lane] = -kInf;
        }
      }
    }
  }

  // Block softmax. A row that sees no key of this block has m = -inf; it
  // subtracts 0 instead, so that its weights are exp(-inf) = 0 and l = 0.
  V m = hn::Set(d, -kInf);
  for (int j = 0; j < nk; ++j) m = hn::Max(m, hn::LoadU(d, st + static_cast<size_t>(j) * N));
  const V shift = hn::IfThenZeroElse(hn::Eq(m, hn::Set(d, -kInf)), m);
  V l = hn::Zero(d);
  for (int j = 0; j < nk; ++j) {
    float* row = st + static_cast<size_t>(j) * N;
    const V p = FastExpLanes(d, hn::Sub(hn::LoadU(d, row), shift));
    hn::StoreU(p, d, row);
    l = hn::Add(l, p);
  }
  hn::StoreU(m, d, out.m);
  hn::StoreU(l, d, out.l);

  // O = V^T P, kTile dims at a time; a tile past head_dim repeats the last
  // dim into the padding rows of O.
  for (int dd = 0; dd < hd; dd += kTile) {
    const float* dims[kTile];
    for (int r = 0; r < kTile; ++r) dims[r] = vh + j0 * hd + std::min(dd + r, hd - 1);
    OutputTile(d, dims, hd, st, nk, out.o + static_cast<size_t>(dd) * N);
  }
}

// Merges the blocks of kv head g, lane group `lane_group` into out.
void MergeBlocks(const DecodeShape& s, float* partials, int64_t first_item, int64_t blocks, int g,
                 int lane_group, float* out) {
  const D d;
  const size_t N = hn::Lanes(d);
  const int hd = s.head_dim;
  V max = hn::Set(d, -std::numeric_limits<float>::infinity());
  for (int64_t b = 0; b < blocks; ++b) {
    max = hn::Max(max, hn::LoadU(d, PartialAt(partials, first_item + b, hd, N).m));
  }
  // Every row sees key 0, so max is finite and alpha of a block the row does
  // not see is exp(-inf) = 0.
  V l = hn::Zero(d);
  const Partial total = PartialAt(partials, first_item, hd, N);
  for (int64_t b = 0; b < blocks; ++b) {
    const Partial p = PartialAt(partials, first_item + b, hd, N);
    const V alpha = FastExpLanes(d, hn::Sub(hn::LoadU(d, p.m), max));
    l = hn::MulAdd(alpha, hn::LoadU(d, p.l), l);
    for (int dd = 0; dd < hd; ++dd) {
      float* o = total.o + static_cast<size_t>(dd) * N;
      const V x = hn::Mul(alpha, hn::LoadU(d, p.o + static_cast<size_t>(dd) * N));
      hn::StoreU(b == 0 ? x : hn::Add(hn::LoadU(d, o), x), d, o);
    }
  }
  hn::StoreU(hn::Div(hn::Set(d, 1.0f), l), d, total.l);

  const int64_t width = static_cast<int64_t>(s.num_heads) * hd;
  for (size_t lane = 0; lane < N; ++lane) {
    const int row = lane_group * static_cast<int>(N) + static_cast<int>(lane);
    if (row >= s.rows) break;
    const int64_t t = row / s.group;
    const int head = g * s.group + row % s.group;
    float* o = out + t * width + static_cast<int64_t>(head) * hd;
    for (int dd = 0; dd < hd; ++dd) {
      o[dd] = total.o[static_cast<size_t>(dd) * N + lane] * total.l[lane];
    }
  }
}

}  // namespace

void DecodeAttention(int num_heads, int num_kv_heads, int head_dim, int64_t position,
                     int64_t tokens, const float* q, const float* const* k, const float* const* v,
                     float* out) {
  const size_t N = hn::Lanes(D());
  DecodeShape s;
  s.num_heads = num_heads;
  s.group = num_heads / num_kv_heads;
  s.head_dim = head_dim;
  s.position = position;
  s.tokens = tokens;
  s.rows = static_cast<int>(s.group * tokens);
  s.lane_groups = static_cast<int>((static_cast<size_t>(s.rows) + N - 1) / N);
  s.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));

  const int64_t keys = position + tokens;
  const int64_t blocks = (keys + kBlockKeys - 1) / kBlockKeys;
  const int64_t items_per_head = s.lane_groups * blocks;
  const int64_t items = num_kv_heads * items_per_head;
  // Shared by the threads of this call; grown by the calling thread only.
  thread_local ScratchBuffer partial_storage;
  float* partials = partial_storage.Get(static_cast<size_t>(items) *
                                        (2 + static_cast<size_t>(PaddedDims(head_dim))) * N);

#pragma omp parallel
  {
    // Items in (kv head, lane group, block) order: the static schedule gives
    // each thread a contiguous run of blocks to stream.
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const int g = static_cast<int>(item / items_per_head);
      const int lane_group = static_cast<int>(item % items_per_head / blocks);
      const int64_t j0 = item % blocks * kBlockKeys;
      const int nk = static_cast<int>(std::min(kBlockKeys, keys - j0));
      AttendBlock(s, q, k[g], v[g], g, lane_group, j0, nk, PartialAt(partials, item, head_dim, N));
    }
#pragma omp for schedule(static)
    for (int64_t merge = 0; merge < num_kv_heads * s.lane_groups; ++merge) {
      MergeBlocks(s, partials, merge * blocks, blocks, static_cast<int>(merge / s.lane_groups),
                  static_cast<int>(merge % s.lane_groups), out);
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace kvq
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvq {

HWY_EXPORT(DecodeAttention);

void DecodeAttention(int num_heads, int num_kv_heads, int head_dim, int64_t position,
                     int64_t tokens, const float* q, const std::vector<const float*>& k,
                     const std::vector<const float*>& v, float* out) {
  KVQ_CHECK(num_heads > 0 && num_kv_heads > 0 && num_heads % num_kv_heads == 0);
  KVQ_CHECK(head_dim > 0 && position >= 0 && tokens > 0);
  KVQ_CHECK(k.size() == static_cast<size_t>(num_kv_heads) && v.size() == k.size());
  HWY_DYNAMIC_DISPATCH(DecodeAttention)
  (num_heads, num_kv_heads, head_dim, position, tokens, q, k.data(), v.data(), out);
}

}  // namespace kvq
#endif
