// Causal attention: a cache-blocked online-softmax (flash-attention style)
// kernel, fp32, with AVX-512 register-blocked micro-kernels.
//
// One work item = (query head, prompt, query tile of kTileQ tokens). For its
// tile the item walks the keys of its prompt up to the tile's last token in
// blocks of kBlockK keys and keeps, per query row i, the running max m_i, the
// running sum l_i and an unnormalised output O_i:
//   S^T[j][i] = k_j . (scale * q_i)                  (ScoreKernel)
//   S^T[j][i] = -inf where key j comes after query i (diagonal blocks only)
//   m' = max(m, max_j S^T[j][i]);  alpha = exp(m - m')
//   P^T[j][i] = exp(S^T[j][i] - m');  l = alpha * l + sum_j P^T[j][i]
//   O_i = alpha * O_i + sum_j P^T[j][i] v_j          (ValueKernel)
// and finally out_i = O_i / l_i. Nothing larger than kBlockK x kTileQ is
// materialised. S is kept transposed (keys x queries) so that the softmax
// reductions over keys are element-wise across rows (vectorised over
// queries), the score kernel broadcasts K straight from its strided source
// (only the query tile is packed, once per item) and the value kernel
// broadcasts P and reads V rows in place.
//
// Each output element is produced by exactly one work item whose arithmetic
// does not depend on which thread runs it, so results are identical for any
// thread count.
#include "kvq/model/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "kvq/common/error.h"
#include "kvq/common/fast_math.h"

namespace kvq {
namespace {

// 16 floats: one AVX-512 register (GCC splits it on narrower targets).
typedef float V16 __attribute__((vector_size(64)));
constexpr int kLanes = 16;

constexpr int kTileQ = 64;                   // Query rows per work item.
constexpr int kQueryVecs = kTileQ / kLanes;  // Query vectors per score row.
constexpr int kBlockK = 64;                  // Keys per online-softmax block.
constexpr int kScoreRows = 4;                // Keys per ScoreKernel call.
constexpr int kValueRows = 6;                // Queries per ValueKernel call (4 for the rest).
constexpr int kValueVecs = 4;                // Max head_dim vectors per ValueKernel call.
static_assert(kTileQ % kLanes == 0 && kTileQ % kValueRows == 4);
static_assert(kBlockK % kScoreRows == 0);
// Accumulators plus operands fit the 32 vector registers.
static_assert(kScoreRows * kQueryVecs + kScoreRows + 1 <= 32);
static_assert(kValueRows * kValueVecs + kValueVecs + 1 <= 32);

inline V16 Splat(float s) { return s - V16{}; }  // x - 0 folds to a broadcast.
inline V16 Load(const float* p) {
  V16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void Store(float* p, V16 v) { std::memcpy(p, &v, sizeof(v)); }
inline V16 Fma(V16 a, V16 b, V16 c) {
#if defined(__AVX512F__)
  return _mm512_fmadd_ps(a, b, c);
#else
  return a * b + c;
#endif
}

// st[r * kTileQ + i] = sum_d krows[r][d] * qt[d * kTileQ + i] for r <
// kScoreRows and the kVecs * 16 queries from qt's first column. krows:
// kScoreRows pointers to head_dim floats; qt: [head_dim, kTileQ], the scaled
// query tile transposed (offset to the first query computed).
template <int kVecs>
void ScoreKernel(const float* const* krows, const float* qt, int head_dim, float* st) {
  V16 acc[kScoreRows][kVecs] = {};
  for (int d = 0; d < head_dim; ++d) {
    V16 kb[kScoreRows];
    for (int r = 0; r < kScoreRows; ++r) kb[r] = Splat(krows[r][d]);
    const float* qrow = qt + static_cast<int64_t>(d) * kTileQ;
    for (int c = 0; c < kVecs; ++c) {
      const V16 qv = Load(qrow + c * kLanes);
      for (int r = 0; r < kScoreRows; ++r) acc[r][c] = Fma(kb[r], qv, acc[r][c]);
    }
  }
  for (int r = 0; r < kScoreRows; ++r) {
    for (int c = 0; c < kVecs; ++c) Store(st + r * kTileQ + c * kLanes, acc[r][c]);
  }
}

// Query vectors [first_vec, kQueryVecs) only: the earlier ones are all
// hidden from these keys by the causal mask.
void ScoreKernelFrom(int first_vec, const float* const* krows, const float* qt, int head_dim,
                     float* st) {
  static_assert(kQueryVecs == 4);
  const int offset = first_vec * kLanes;
  switch (kQueryVecs - first_vec) {
    case 1:
      return ScoreKernel<1>(krows, qt + offset, head_dim, st + offset);
    case 2:
      return ScoreKernel<2>(krows, qt + offset, head_dim, st + offset);
    case 3:
      return ScoreKernel<3>(krows, qt + offset, head_dim, st + offset);
    default:
      return ScoreKernel<4>(krows, qt, head_dim, st);
  }
}

// o[r * o_stride + :16 * kVecs] += sum_{j < num_keys} pt[j * kTileQ + r] *
// v[j * v_stride + :16 * kVecs] for r < kRows. pt: P^T at this call's
// first query column; v: num_keys rows of at least 16 * kVecs floats.
template <int kRows, int kVecs>
void ValueKernel(const float* pt, int num_keys, const float* v, int64_t v_stride, float* o,
                 int64_t o_stride) {
  V16 acc[kRows][kVecs];
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < kVecs; ++c) acc[r][c] = Load(o + r * o_stride + c * kLanes);
  }
  for (int j = 0; j < num_keys; ++j) {
    V16 vv[kVecs];
    for (int c = 0; c < kVecs; ++c) vv[c] = Load(v + j * v_stride + c * kLanes);
    const float* prow = pt + static_cast<int64_t>(j) * kTileQ;
    for (int r = 0; r < kRows; ++r) {
      const V16 p = Splat(prow[r]);
      for (int c = 0; c < kVecs; ++c) acc[r][c] = Fma(p, vv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < kVecs; ++c) Store(o + r * o_stride + c * kLanes, acc[r][c]);
  }
}

template <int kRows>
void ValueKernelAnyWidth(int vecs, const float* pt, int num_keys, const float* v, int64_t v_stride,
                         float* o, int64_t o_stride) {
  switch (vecs) {
    case 1:
      return ValueKernel<kRows, 1>(pt, num_keys, v, v_stride, o, o_stride);
    case 2:
      return ValueKernel<kRows, 2>(pt, num_keys, v, v_stride, o, o_stride);
    case 3:
      return ValueKernel<kRows, 3>(pt, num_keys, v, v_stride, o, o_stride);
    default:
      return ValueKernel<kRows, kValueVecs>(pt, num_keys, v, v_stride, o, o_stride);
  }
}

// Online-softmax update for one block of scores. st: [nk, kTileQ] scores,
// replaced by exp(score - new max); m, l, alpha: [kTileQ] running max, running
// sum, and the factor exp(old max - new max) the caller applies to O. The
// restrict pointers let GCC vectorise the loops over queries without alias
// checks.
void SoftmaxBlock(float* __restrict st, int nk, float* __restrict m, float* __restrict l,
                  float* __restrict alpha) {
  float block_max[kTileQ];
  for (int i = 0; i < kTileQ; ++i) block_max[i] = m[i];
  for (int j = 0; j < nk; ++j) {
    const float* row = st + static_cast<int64_t>(j) * kTileQ;
    for (int i = 0; i < kTileQ; ++i) block_max[i] = row[i] > block_max[i] ? row[i] : block_max[i];
  }
  for (int i = 0; i < kTileQ; ++i) {
    alpha[i] = FastExp(m[i] - block_max[i]);
    m[i] = block_max[i];
  }
  float block_sum[kTileQ] = {};
  for (int j = 0; j < nk; ++j) {
    float* row = st + static_cast<int64_t>(j) * kTileQ;
    for (int i = 0; i < kTileQ; ++i) {
      row[i] = FastExp(row[i] - m[i]);
      block_sum[i] += row[i];
    }
  }
  for (int i = 0; i < kTileQ; ++i) l[i] = l[i] * alpha[i] + block_sum[i];
}

// A float buffer aligned to a cache line that only ever grows.
class ScratchBuffer {
 public:
  float* Get(size_t count) {
    if (count > capacity_) {
      storage_.reset(new (std::align_val_t{64}) float[count]);
      capacity_ = count;
    }
    return storage_.get();
  }

 private:
  struct AlignedDelete {
    void operator()(float* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };
  std::unique_ptr<float[], AlignedDelete> storage_;
  size_t capacity_ = 0;
};

// Per-thread scratch, allocated on a thread's first call and reused by every
// later call (OpenMP keeps its worker threads), so the hot loop never pays
// for fresh pages.
struct TileScratch {
  float* qt;     // [head_dim, kTileQ]      scaled query tile, transposed
  float* st;     // [kBlockK, kTileQ]       scores, then probabilities (P^T)
  float* o;      // [kTileQ, padded_dim]    unnormalised output
  float* vpack;  // [kBlockK, padded_dim]   V block padded to whole vectors
  float* m;      // [kTileQ]                running max
  float* l;      // [kTileQ]                running sum
  float* alpha;  // [kTileQ]                rescale factor of this block
  float* zeros;  // [head_dim]              stands in for keys past the end
};

TileScratch GetScratch(int head_dim, int padded_dim) {
  thread_local ScratchBuffer buffer;
  const size_t qt = static_cast<size_t>(head_dim) * kTileQ;
  const size_t st = static_cast<size_t>(kBlockK) * kTileQ;
  const size_t o = static_cast<size_t>(kTileQ) * padded_dim;
  const size_t vpack = static_cast<size_t>(kBlockK) * padded_dim;
  // Every piece starts on a cache line.
  auto round = [](size_t n) { return (n + 15) / 16 * 16; };
  const size_t total = round(qt) + round(st) + round(o) + round(vpack) + 3 * round(kTileQ) +
                       round(static_cast<size_t>(head_dim));
  float* p = buffer.Get(total);
  TileScratch s;
  s.qt = p;
  p += round(qt);
  s.st = p;
  p += round(st);
  s.o = p;
  p += round(o);
  s.vpack = p;
  p += round(vpack);
  s.m = p;
  p += round(kTileQ);
  s.l = p;
  p += round(kTileQ);
  s.alpha = p;
  p += round(kTileQ);
  s.zeros = p;
  std::fill(s.zeros, s.zeros + head_dim, 0.0f);
  return s;
}

// One work item: query rows [t0, t0 + nq) of head `head`, whose prompt
// starts at token c0.
void AttendTile(const AttentionShape& shape, const HeadsView& q, const HeadsView& k,
                const HeadsView& v, const MutableHeadsView& out, int head, int64_t c0, int64_t t0,
                int nq, const TileScratch& s) {
  const int head_dim = shape.head_dim;
  const int padded_dim = (head_dim + kLanes - 1) / kLanes * kLanes;
  const int kv_head = head / (shape.num_heads / shape.num_kv_heads);
  const float* qh = q.data + head * q.head_stride;
  const float* kh = k.data + kv_head * k.head_stride;
  const float* vh = v.data + kv_head * v.head_stride;
  // V rows are read in place when they are whole vectors, else packed.
  const bool pack_v = head_dim % kLanes != 0;

  // Q tile, scaled and transposed; rows past the tile's end are zero.
  for (int d = 0; d < head_dim; ++d) {
    float* row = s.qt + static_cast<int64_t>(d) * kTileQ;
    for (int i = 0; i < nq; ++i) row[i] = qh[(t0 + i) * q.token_stride + d] * shape.scale;
    std::fill(row + nq, row + kTileQ, 0.0f);
  }
  std::fill(s.o, s.o + static_cast<int64_t>(kTileQ) * padded_dim, 0.0f);
  std::fill(s.m, s.m + kTileQ, -std::numeric_limits<float>::infinity());
  std::fill(s.l, s.l + kTileQ, 0.0f);

  const int64_t key_end = t0 + nq;  // Keys [c0, key_end) can be seen.
  for (int64_t j0 = c0; j0 < key_end; j0 += kBlockK) {
    const int nk = static_cast<int>(std::min<int64_t>(kBlockK, key_end - j0));
    const int nk_rounded = (nk + kScoreRows - 1) / kScoreRows * kScoreRows;
    for (int j = 0; j < nk_rounded; j += kScoreRows) {
      const float* krows[kScoreRows];
      for (int r = 0; r < kScoreRows; ++r) {
        krows[r] = j + r < nk ? kh + (j0 + j + r) * k.token_stride : s.zeros;
      }
      // Queries t0 + i < j0 + j cannot see any key of this group.
      const int first_vec =
          static_cast<int>(std::clamp<int64_t>((j0 + j - t0) / kLanes, 0, kQueryVecs - 1));
      ScoreKernelFrom(first_vec, krows, s.qt, head_dim, s.st + static_cast<int64_t>(j) * kTileQ);
    }
    // Causal mask: key j0 + j is hidden from queries t0 + i < j0 + j.
    if (j0 + nk - 1 > t0) {
      for (int j = 0; j < nk; ++j) {
        float* row = s.st + static_cast<int64_t>(j) * kTileQ;
        const int64_t hidden = std::min<int64_t>(kTileQ, j0 + j - t0);
        for (int64_t i = 0; i < hidden; ++i) row[i] = -std::numeric_limits<float>::infinity();
      }
    }
    SoftmaxBlock(s.st, nk, s.m, s.l, s.alpha);
    if (j0 != c0) {
      for (int i = 0; i < kTileQ; ++i) {
        float* orow = s.o + static_cast<int64_t>(i) * padded_dim;
        for (int d = 0; d < padded_dim; ++d) orow[d] *= s.alpha[i];
      }
    }
    // O += P V.
    const float* vrows = vh + j0 * v.token_stride;
    int64_t v_stride = v.token_stride;
    if (pack_v) {
      for (int j = 0; j < nk; ++j) {
        float* dst = s.vpack + static_cast<int64_t>(j) * padded_dim;
        std::copy(vrows + j * v.token_stride, vrows + j * v.token_stride + head_dim, dst);
        std::fill(dst + head_dim, dst + padded_dim, 0.0f);
      }
      vrows = s.vpack;
      v_stride = padded_dim;
    }
    for (int i0 = 0; i0 < nq;) {
      const int rows = i0 + kValueRows <= kTileQ ? kValueRows : 4;
      // Keys after the group's last query carry probability 0: skip them.
      const int64_t visible = t0 + i0 + rows - j0;
      const int keys = static_cast<int>(std::min<int64_t>(nk, visible));
      for (int d0 = 0; keys > 0 && d0 < padded_dim; d0 += kValueVecs * kLanes) {
        const int vecs = std::min(kValueVecs, (padded_dim - d0) / kLanes);
        float* o = s.o + static_cast<int64_t>(i0) * padded_dim + d0;
        if (rows == kValueRows) {
          ValueKernelAnyWidth<kValueRows>(vecs, s.st + i0, keys, vrows + d0, v_stride, o,
                                          padded_dim);
        } else {
          ValueKernelAnyWidth<4>(vecs, s.st + i0, keys, vrows + d0, v_stride, o, padded_dim);
        }
      }
      i0 += rows;
    }
  }

  float* oh = out.data + head * out.head_stride;
  for (int i = 0; i < nq; ++i) {
    const float inv = 1.0f / s.l[i];
    const float* orow = s.o + static_cast<int64_t>(i) * padded_dim;
    float* dst = oh + (t0 + i) * out.token_stride;
    for (int d = 0; d < head_dim; ++d) dst[d] = orow[d] * inv;
  }
}

}  // namespace

void CausalAttention(const AttentionShape& shape, HeadsView q, HeadsView k, HeadsView v,
                     MutableHeadsView out) {
  KVQ_CHECK(shape.num_heads > 0 && shape.num_kv_heads > 0 && shape.head_dim > 0);
  KVQ_CHECK(shape.num_heads % shape.num_kv_heads == 0);
  KVQ_CHECK(shape.chunk_len > 0 && shape.tokens % shape.chunk_len == 0);
  KVQ_CHECK(q.data != nullptr && k.data != nullptr && v.data != nullptr && out.data != nullptr);
  if (shape.tokens == 0) return;

  const int64_t tiles_per_chunk = (shape.chunk_len + kTileQ - 1) / kTileQ;
  const int64_t num_chunks = shape.tokens / shape.chunk_len;
  const int64_t items_per_tile = shape.num_heads * num_chunks;
  const int64_t num_items = tiles_per_chunk * items_per_tile;
  const int padded_dim = (shape.head_dim + kLanes - 1) / kLanes * kLanes;

#pragma omp parallel
  {
    const TileScratch scratch = GetScratch(shape.head_dim, padded_dim);
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
      AttendTile(shape, q, k, v, out, head, c0, t0, nq, scratch);
    }
  }
}

}  // namespace kvq
