// Causal attention: a cache-blocked online-softmax (flash-attention style)
// kernel, fp32, written once on Highway and dispatched at run time to the
// best SIMD target of the CPU.
//
// One work item = (query head, prompt, query tile of kTileQ tokens). For its
// tile the item walks the keys of its prompt up to the tile's last token in
// blocks of kBlockK keys and keeps, per query column i, the running max m_i,
// the running sum l_i and an unnormalised output O_i:
//   S^T[j][i] = k_j . (scale * q_i)
//   S^T[j][i] = -inf where key j comes after query i (diagonal blocks only)
//   m' = max(m, max_j S^T[j][i]);  alpha = exp(m - m')
//   P^T[j][i] = exp(S^T[j][i] - m');  l = alpha * l + sum_j P^T[j][i]
//   O^T[d][i] = alpha * O^T[d][i] + sum_j v_j[d] P^T[j][i]
// and finally out_i = O_i / l_i. Nothing larger than kBlockK x kTileQ is
// materialised. Everything is kept transposed (queries along the vector
// lanes): the softmax reductions over keys are then element-wise across
// rows, and both products are the same register-blocked micro-kernel
// (TileKernel): four broadcast rows (4 keys of K, or 4 dims of V, read in
// place from their strided source) times a few contiguous vectors of a
// query-major operand (the packed Q tile, or P^T).
//
// Each output element is produced by exactly one work item whose arithmetic
// does not depend on which thread runs it, so results are identical for any
// thread count (on one SIMD target: the targets differ in fused vs separate
// multiply-add, within the tested tolerance).
#include "kvq/model/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kvq/common/error.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "model/attention.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "common/scratch.h"
#include "common/simd-inl.h"

#ifndef KVQ_MODEL_ATTENTION_ONCE
#define KVQ_MODEL_ATTENTION_ONCE
namespace kvq {
namespace {

constexpr int kTileQ = 64;    // Query columns per work item.
constexpr int kBlockK = 64;   // Keys per online-softmax block.
constexpr int kTileRows = 6;  // Broadcast rows per micro-kernel call.

// The pieces of a thread's ScratchBuffer.
struct TileScratch {
  float* qt;     // [head_dim, kTileQ]     scaled query tile, transposed
  float* st;     // [kScoreRows, kTileQ]   scores, then probabilities (P^T)
  float* ot;     // [num_v, PaddedDims, kTileQ] unnormalised outputs, transposed
  float* m;      // [kTileQ]               running max
  float* l;      // [kTileQ]               running sum
  float* alpha;  // [kTileQ]               rescale factor of this block
};

// Rows rounded up to whole micro-kernel row groups: O^T's head_dim, and the
// score rows of a block.
constexpr int RoundUpToTileRows(int n) { return (n + kTileRows - 1) / kTileRows * kTileRows; }
int PaddedDims(int head_dim) { return RoundUpToTileRows(head_dim); }
constexpr int kScoreRows = RoundUpToTileRows(kBlockK);

TileScratch GetScratch(int head_dim, size_t num_v) {
  thread_local ScratchBuffer buffer;
  const size_t rows = static_cast<size_t>(PaddedDims(head_dim)) * kTileQ;
  const size_t total = (1 + num_v) * rows + static_cast<size_t>(kScoreRows + 3) * kTileQ;
  float* p = buffer.Get(total);
  // kTileQ floats are whole cache lines, so every piece starts on one.
  TileScratch s;
  s.qt = p;
  s.ot = s.qt + rows;
  s.st = s.ot + num_v * rows;
  s.m = s.st + static_cast<size_t>(kScoreRows) * kTileQ;
  s.l = s.m + kTileQ;
  s.alpha = s.l + kTileQ;
  return s;
}

}  // namespace
}  // namespace kvq
#endif  // KVQ_MODEL_ATTENTION_ONCE

HWY_BEFORE_NAMESPACE();
namespace kvq {
namespace HWY_NAMESPACE {
namespace {

// At most 16 lanes: kTileQ columns are then whole vectors on every target
// (SVE vectors can be wider than 512 bits).
using D = hn::CappedTag<float, 16>;
using V = hn::Vec<D>;

// Query vectors per micro-kernel call: kTileRows x kCols accumulators, the
// kCols vectors of the current row of b and one broadcast must fit the
// register file (AVX-512, A64 NEON, SVE: 24 + 4 + 1 of 32; AVX2, SSE4:
// 12 + 2 + 1 of 16: the classic 6 x 16 sgemm tile of AVX2).
constexpr int kCols = kVectorRegisters >= 32 ? 4 : 2;

// One row of the tile: c0..c3 (the first kCols of them) from c_row, or zero.
template <bool kAccumulate>
HWY_INLINE void LoadRow(D d, const float* c_row, V& c0, V& c1, V& c2, V& c3) {
  const size_t N = hn::Lanes(d);
  if constexpr (kAccumulate) {
    c0 = hn::Load(d, c_row), c1 = hn::Load(d, c_row + N);
    if constexpr (kCols == 4) c2 = hn::Load(d, c_row + 2 * N), c3 = hn::Load(d, c_row + 3 * N);
  } else {
    c0 = c1 = c2 = c3 = hn::Zero(d);
  }
}

HWY_INLINE void StoreRow(D d, V c0, V c1, V c2, V c3, float* c_row) {
  const size_t N = hn::Lanes(d);
  hn::Store(c0, d, c_row), hn::Store(c1, d, c_row + N);
  if constexpr (kCols == 4) hn::Store(c2, d, c_row + 2 * N), hn::Store(c3, d, c_row + 3 * N);
}

HWY_INLINE void RowMulAdd(V x, V b0, V b1, V b2, V b3, V& c0, V& c1, V& c2, V& c3) {
  c0 = hn::MulAdd(x, b0, c0), c1 = hn::MulAdd(x, b1, c1);
  if constexpr (kCols == 4) c2 = hn::MulAdd(x, b2, c2), c3 = hn::MulAdd(x, b3, c3);
}

// c[r * kTileQ + :kCols vectors] (+)= sum_{k < depth} a[r][k * a_step] *
// b[k * kTileQ + :kCols vectors] for the kTileRows rows r. a: row pointers;
// b, c: offset to the first column. kAccumulate: add to c, else overwrite.
// The accumulators are named locals, not an array: SVE vectors are sizeless.
template <bool kAccumulate>
HWY_INLINE void TileKernel(const float* const* a, int64_t a_step, const float* HWY_RESTRICT b,
                           int depth, float* HWY_RESTRICT c) {
  static_assert(kTileRows == 6);
  const D d;
  const size_t N = hn::Lanes(d);
  V c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23;
  V c30, c31, c32, c33, c40, c41, c42, c43, c50, c51, c52, c53;
  LoadRow<kAccumulate>(d, c, c00, c01, c02, c03);
  LoadRow<kAccumulate>(d, c + kTileQ, c10, c11, c12, c13);
  LoadRow<kAccumulate>(d, c + 2 * kTileQ, c20, c21, c22, c23);
  LoadRow<kAccumulate>(d, c + 3 * kTileQ, c30, c31, c32, c33);
  LoadRow<kAccumulate>(d, c + 4 * kTileQ, c40, c41, c42, c43);
  LoadRow<kAccumulate>(d, c + 5 * kTileQ, c50, c51, c52, c53);
  const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
  for (int k = 0; k < depth; ++k) {
    const int64_t ak = k * a_step;
    const float* bk = b + static_cast<int64_t>(k) * kTileQ;
    const V b0 = hn::Load(d, bk), b1 = hn::Load(d, bk + N);
    const V b2 = kCols == 4 ? hn::Load(d, bk + 2 * N) : b0;
    const V b3 = kCols == 4 ? hn::Load(d, bk + 3 * N) : b1;
    RowMulAdd(hn::Set(d, a0[ak]), b0, b1, b2, b3, c00, c01, c02, c03);
    RowMulAdd(hn::Set(d, a1[ak]), b0, b1, b2, b3, c10, c11, c12, c13);
    RowMulAdd(hn::Set(d, a2[ak]), b0, b1, b2, b3, c20, c21, c22, c23);
    RowMulAdd(hn::Set(d, a3[ak]), b0, b1, b2, b3, c30, c31, c32, c33);
    RowMulAdd(hn::Set(d, a4[ak]), b0, b1, b2, b3, c40, c41, c42, c43);
    RowMulAdd(hn::Set(d, a5[ak]), b0, b1, b2, b3, c50, c51, c52, c53);
  }
  StoreRow(d, c00, c01, c02, c03, c);
  StoreRow(d, c10, c11, c12, c13, c + kTileQ);
  StoreRow(d, c20, c21, c22, c23, c + 2 * kTileQ);
  StoreRow(d, c30, c31, c32, c33, c + 3 * kTileQ);
  StoreRow(d, c40, c41, c42, c43, c + 4 * kTileQ);
  StoreRow(d, c50, c51, c52, c53, c + 5 * kTileQ);
}

// Online-softmax update for columns [0, cols) of one block of nk score rows
// st [nk, kTileQ], replaced by exp(score - new max); m, l: the running max
// and sum, alpha: exp(old max - new max), which the caller applies to O.
void SoftmaxBlock(float* HWY_RESTRICT st, int nk, int cols, float* HWY_RESTRICT m,
                  float* HWY_RESTRICT l, float* HWY_RESTRICT alpha) {
  const D d;
  const int N = static_cast<int>(hn::Lanes(d));
  for (int i = 0; i < cols; i += N) {
    V block_max = hn::Load(d, m + i);
    for (int j = 0; j < nk; ++j) block_max = hn::Max(block_max, hn::Load(d, st + j * kTileQ + i));
    hn::Store(FastExpLanes(d, hn::Sub(hn::Load(d, m + i), block_max)), d, alpha + i);
    hn::Store(block_max, d, m + i);
    V sum = hn::Zero(d);
    for (int j = 0; j < nk; ++j) {
      float* row = st + j * kTileQ + i;
      const V p = FastExpLanes(d, hn::Sub(hn::Load(d, row), block_max));
      hn::Store(p, d, row);
      sum = hn::Add(sum, p);
    }
    hn::Store(hn::Add(hn::Mul(hn::Load(d, l + i), hn::Load(d, alpha + i)), sum), d, l + i);
  }
}

// One work item: query rows [t0, t0 + nq) of head `head`, whose prompt
// starts at token c0, for each of the num_v values v[c] into out[c]. The
// scores and the softmax do not depend on V: they are computed once, and
// each V then gets exactly the operations a call with it alone would do.
void AttendTile(const AttentionShape& shape, const HeadsView& q, const HeadsView& k,
                const HeadsView* v, const MutableHeadsView* out, size_t num_v, int head, int64_t c0,
                int64_t t0, int nq, const TileScratch& s) {
  const D d;
  const int N = static_cast<int>(hn::Lanes(d));
  const int step = kCols * N;  // Query columns per micro-kernel call.
  const int head_dim = shape.head_dim;
  const int kv_head = head / (shape.num_heads / shape.num_kv_heads);
  const float* qh = q.data + head * q.head_stride;
  const float* kh = k.data + kv_head * k.head_stride;
  const int64_t ot_size = static_cast<int64_t>(PaddedDims(head_dim)) * kTileQ;
  constexpr float kInf = std::numeric_limits<float>::infinity();

  // Q tile, scaled and transposed; columns past the tile's end are zero.
  for (int dd = 0; dd < head_dim; ++dd) {
    float* row = s.qt + static_cast<int64_t>(dd) * kTileQ;
    for (int i = 0; i < nq; ++i) row[i] = qh[(t0 + i) * q.token_stride + dd] * shape.scale;
    std::fill(row + nq, row + kTileQ, 0.0f);
  }
  std::fill(s.ot, s.ot + static_cast<int64_t>(num_v) * ot_size, 0.0f);
  std::fill(s.m, s.m + kTileQ, -kInf);
  std::fill(s.l, s.l + kTileQ, 0.0f);
  // Query columns [0, visible_end) hold real queries.
  const int visible_end = (nq + step - 1) / step * step;

  const int64_t key_end = t0 + nq;  // Keys [c0, key_end) can be seen.
  for (int64_t j0 = c0; j0 < key_end; j0 += kBlockK) {
    const int nk = static_cast<int>(std::min<int64_t>(kBlockK, key_end - j0));
    // S^T = K Q^T, kTileRows keys at a time; a group past the block's end
    // repeats its last key (those rows are never read).
    for (int j = 0; j < nk; j += kTileRows) {
      const float* keys[kTileRows];
      for (int r = 0; r < kTileRows; ++r)
        keys[r] = kh + (j0 + std::min(j + r, nk - 1)) * k.token_stride;
      // Queries t0 + i < j0 + j cannot see any key of this group: their
      // columns are skipped here and masked below.
      const int first =
          static_cast<int>(std::clamp<int64_t>(j0 + j - t0, 0, kTileQ - 1)) / step * step;
      for (int col = first; col < visible_end; col += step) {
        TileKernel<false>(keys, 1, s.qt + col, head_dim,
                          s.st + static_cast<int64_t>(j) * kTileQ + col);
      }
    }
    // Causal mask: key j0 + j is hidden from queries t0 + i < j0 + j.
    if (j0 + nk - 1 > t0) {
      for (int j = 0; j < nk; ++j) {
        float* row = s.st + static_cast<int64_t>(j) * kTileQ;
        const int64_t hidden = std::min<int64_t>(kTileQ, j0 + j - t0);
        for (int64_t i = 0; i < hidden; ++i) row[i] = -kInf;
      }
    }
    SoftmaxBlock(s.st, nk, visible_end, s.m, s.l, s.alpha);
    for (size_t c = 0; c < num_v; ++c) {
      float* ot = s.ot + static_cast<int64_t>(c) * ot_size;
      const float* vh = v[c].data + kv_head * v[c].head_stride;
      if (j0 != c0) {
        for (int dd = 0; dd < head_dim; ++dd) {
          float* row = ot + static_cast<int64_t>(dd) * kTileQ;
          for (int i = 0; i < visible_end; i += N) {
            hn::Store(hn::Mul(hn::Load(d, row + i), hn::Load(d, s.alpha + i)), d, row + i);
          }
        }
      }
      // O^T += V^T P^T, kTileRows dims at a time; a group past head_dim
      // repeats the last dim into the padding rows of O^T.
      for (int col = 0; col < visible_end; col += step) {
        // Keys after the group's last query carry probability 0: skip them.
        const int keys = static_cast<int>(std::min<int64_t>(nk, t0 + col + step - j0));
        if (keys <= 0) continue;
        for (int dd = 0; dd < head_dim; dd += kTileRows) {
          const float* dims[kTileRows];
          for (int r = 0; r < kTileRows; ++r)
            dims[r] = vh + j0 * v[c].token_stride + std::min(dd + r, head_dim - 1);
          TileKernel<true>(dims, v[c].token_stride, s.st + col, keys,
                           ot + static_cast<int64_t>(dd) * kTileQ + col);
        }
      }
    }
  }

  // out_i = O_i / l_i, transposed back.
  for (int i = 0; i < visible_end; i += N) {
    hn::Store(hn::Div(hn::Set(d, 1.0f), hn::Load(d, s.l + i)), d, s.alpha + i);
  }
  for (size_t c = 0; c < num_v; ++c) {
    const float* ot = s.ot + static_cast<int64_t>(c) * ot_size;
    float* oh = out[c].data + head * out[c].head_stride;
    for (int dd = 0; dd < head_dim; ++dd) {
      const float* row = ot + static_cast<int64_t>(dd) * kTileQ;
      for (int i = 0; i < nq; ++i) oh[(t0 + i) * out[c].token_stride + dd] = row[i] * s.alpha[i];
    }
  }
}

}  // namespace

void CausalAttentionManyV(const AttentionShape& shape, HeadsView q, HeadsView k, const HeadsView* v,
                          const MutableHeadsView* out, size_t num_v) {
  const int64_t tiles_per_chunk = (shape.chunk_len + kTileQ - 1) / kTileQ;
  const int64_t num_chunks = shape.tokens / shape.chunk_len;
  const int64_t items_per_tile = shape.num_heads * num_chunks;
  const int64_t num_items = tiles_per_chunk * items_per_tile;

#pragma omp parallel
  {
    const TileScratch scratch = GetScratch(shape.head_dim, num_v);
    // Later tiles of a prompt see more keys: hand them out first so the
    // cheap ones fill the gaps at the end.
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < num_items; ++item) {
      const int64_t tile = tiles_per_chunk - 1 - item / items_per_tile;
      const int64_t rest = item % items_per_tile;
      const int head = static_cast<int>(rest % shape.num_heads);
      const int64_t c0 = rest / shape.num_heads * shape.chunk_len;
      const int64_t t0 = c0 + tile * kTileQ;
      const int nq = static_cast<int>(std::min<int64_t>(kTileQ, shape.chunk_len - tile * kTileQ));
      AttendTile(shape, q, k, v, out, num_v, head, c0, t0, nq, scratch);
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace kvq
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvq {

HWY_EXPORT(CausalAttentionManyV);

void CausalAttention(const AttentionShape& shape, HeadsView q, HeadsView k, HeadsView v,
                     MutableHeadsView out) {
  CausalAttentionManyV(shape, q, k, std::span<const HeadsView>(&v, 1),
                       std::span<const MutableHeadsView>(&out, 1));
}

void CausalAttentionManyV(const AttentionShape& shape, HeadsView q, HeadsView k,
                          std::span<const HeadsView> v, std::span<const MutableHeadsView> out) {
  KVQ_CHECK(shape.num_heads > 0 && shape.num_kv_heads > 0 && shape.head_dim > 0);
  KVQ_CHECK(shape.num_heads % shape.num_kv_heads == 0);
  KVQ_CHECK(shape.chunk_len > 0 && shape.tokens % shape.chunk_len == 0);
  KVQ_CHECK(q.data != nullptr && k.data != nullptr && v.size() == out.size());
  for (size_t c = 0; c < v.size(); ++c) {
    KVQ_CHECK(v[c].data != nullptr && out[c].data != nullptr);
  }
  if (shape.tokens == 0 || v.empty()) return;
  HWY_DYNAMIC_DISPATCH(CausalAttentionManyV)(shape, q, k, v.data(), out.data(), v.size());
}

}  // namespace kvq
#endif
