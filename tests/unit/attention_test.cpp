// CausalAttention against a naive double-precision reference (explicit
// scores, softmax, weighted sum) and against transformers' eager attention
// in the qwen2-tiny fixtures.
#include "kvq/model/attention.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kvq/common/layout.h"
#include "kvq/common/random.h"
#include "kvq/model/safetensors.h"
#include "test_util.h"

namespace kvq {
namespace {

using test::RandomValues;

// Naive reference in double. Views as in the kernel; out: [heads, tokens, hd].
std::vector<double> NaiveAttention(const AttentionShape& shape, HeadsView q, HeadsView k,
                                   HeadsView v) {
  const int hd = shape.head_dim;
  const int group = shape.num_heads / shape.num_kv_heads;
  std::vector<double> out(static_cast<size_t>(shape.num_heads) * shape.tokens * hd);
  std::vector<double> p;
  for (int h = 0; h < shape.num_heads; ++h) {
    const int kvh = h / group;
    for (int64_t t = 0; t < shape.tokens; ++t) {
      const int64_t c0 = t / shape.chunk_len * shape.chunk_len;
      p.assign(static_cast<size_t>(t - c0 + 1), 0.0);
      double max_score = -INFINITY;
      for (int64_t j = c0; j <= t; ++j) {
        double dot = 0;
        for (int d = 0; d < hd; ++d) {
          dot += static_cast<double>(q.data[h * q.head_stride + t * q.token_stride + d]) *
                 k.data[kvh * k.head_stride + j * k.token_stride + d];
        }
        p[j - c0] = dot * shape.scale;
        max_score = std::max(max_score, p[j - c0]);
      }
      double sum = 0;
      for (auto& x : p) sum += (x = std::exp(x - max_score));
      for (int d = 0; d < hd; ++d) {
        double acc = 0;
        for (int64_t j = c0; j <= t; ++j) {
          acc += p[j - c0] * v.data[kvh * v.head_stride + j * v.token_stride + d];
        }
        out[(static_cast<size_t>(h) * shape.tokens + t) * hd + d] = acc / sum;
      }
    }
  }
  return out;
}

// Scaled max error: max |got - want| / max |want|; got: [heads, tokens, hd].
double ScaledMaxError(const std::vector<float>& got, const std::vector<double>& want) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err = std::max(err, std::abs(got[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return err / scale;
}

struct Case {
  int heads, kv_heads, head_dim;
  int64_t chunks, chunk_len;
};

// Head-major: [heads, tokens, hd]; token-major: [tokens, heads, hd].
HeadsView View(const std::vector<float>& data, int heads, int64_t tokens, int hd, bool head_major) {
  return head_major ? HeadsView{data.data(), tokens * hd, hd}
                    : HeadsView{data.data(), hd, static_cast<int64_t>(heads) * hd};
}

// [heads, tokens, hd] -> [tokens, heads, hd].
std::vector<float> ToTokenMajor(const std::vector<float>& x, int heads, int64_t tokens, int hd) {
  std::vector<float> out(x.size());
  kvq::ToTokenMajor(x.data(), tokens, heads, hd, out.data());
  return out;
}

class AttentionRandomTest : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionRandomTest, MatchesNaiveDoubleInBothLayouts) {
  const Case c = GetParam();
  const int64_t tokens = c.chunks * c.chunk_len;
  AttentionShape shape{c.heads, c.kv_heads,  c.head_dim,
                       tokens,  c.chunk_len, 1.0f / std::sqrt(static_cast<float>(c.head_dim))};
  const size_t nq = static_cast<size_t>(c.heads) * tokens * c.head_dim;
  const size_t nkv = static_cast<size_t>(c.kv_heads) * tokens * c.head_dim;
  // Q and K of std 2: scores spread over several units, so the softmax is
  // far from uniform and the max subtraction matters.
  const auto q = RandomValues(nq, 1 + c.head_dim, 2.0f);
  const auto k = RandomValues(nkv, 2 + c.heads, 2.0f);
  const auto v = RandomValues(nkv, 3 + tokens, 1.0f);

  const std::vector<double> want = NaiveAttention(shape, View(q, c.heads, tokens, c.head_dim, true),
                                                  View(k, c.kv_heads, tokens, c.head_dim, true),
                                                  View(v, c.kv_heads, tokens, c.head_dim, true));
  test::ForEachSimdTarget([&](const std::string&) {
    for (bool head_major : {true, false}) {
      const auto qx = head_major ? q : ToTokenMajor(q, c.heads, tokens, c.head_dim);
      const auto kx = head_major ? k : ToTokenMajor(k, c.kv_heads, tokens, c.head_dim);
      const auto vx = head_major ? v : ToTokenMajor(v, c.kv_heads, tokens, c.head_dim);
      std::vector<float> out(nq, NAN);
      const HeadsView ov = View(out, c.heads, tokens, c.head_dim, head_major);
      CausalAttention(shape, View(qx, c.heads, tokens, c.head_dim, head_major),
                      View(kx, c.kv_heads, tokens, c.head_dim, head_major),
                      View(vx, c.kv_heads, tokens, c.head_dim, head_major),
                      {out.data(), ov.head_stride, ov.token_stride});
      // Back to head-major for the comparison.
      std::vector<float> got(nq);
      for (int h = 0; h < c.heads; ++h) {
        for (int64_t t = 0; t < tokens; ++t) {
          for (int d = 0; d < c.head_dim; ++d) {
            got[(static_cast<size_t>(h) * tokens + t) * c.head_dim + d] =
                out[h * ov.head_stride + t * ov.token_stride + d];
          }
        }
      }
      EXPECT_LE(ScaledMaxError(got, want), 1e-5) << (head_major ? "head-major" : "token-major");
    }
  });
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, AttentionRandomTest,
    ::testing::Values(Case{6, 2, 64, 1, 300},   // GQA 3, T not a multiple of the tile
                      Case{8, 2, 8, 3, 50},     // tiny head_dim, prompts shorter than a tile
                      Case{4, 4, 16, 2, 193},   // no grouping
                      Case{7, 1, 64, 2, 97},    // MQA, odd chunk length
                      Case{2, 1, 128, 1, 260},  // head_dim over one value-kernel width
                      Case{3, 1, 80, 1, 130},   // head_dim not a multiple of 16 and > 64
                      Case{2, 2, 20, 5, 1}));   // one-token prompts

TEST(AttentionTest, SameResultForAnyThreadCount) {
  const AttentionShape shape{6, 2, 64, 700, 350, 0.125f};
  const auto q = RandomValues(6 * 700 * 64, 11, 2.0f);
  const auto k = RandomValues(2 * 700 * 64, 12, 2.0f);
  const auto v = RandomValues(2 * 700 * 64, 13, 1.0f);
  test::ForEachSimdTarget([&](const std::string&) {
    std::vector<float> one(q.size()), two(q.size());
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    CausalAttention(shape, {q.data(), 700 * 64, 64}, {k.data(), 700 * 64, 64},
                    {v.data(), 700 * 64, 64}, {one.data(), 700 * 64, 64});
    omp_set_num_threads(3);
    CausalAttention(shape, {q.data(), 700 * 64, 64}, {k.data(), 700 * 64, 64},
                    {v.data(), 700 * 64, 64}, {two.data(), 700 * 64, 64});
    omp_set_num_threads(saved);
    EXPECT_EQ(one, two);
  });
}

// Several V against one call each: the shared scores and softmax change
// nothing. Prompts of 150 tokens end mid-tile and mid-block; head_dim 40 is
// not a multiple of the micro-kernel's rows.
TEST(AttentionTest, ManyVEqualsOneCallPerV) {
  for (const int hd : {64, 40}) {
    const AttentionShape shape{4, 2, hd, 300, 150, 1.0f / std::sqrt(static_cast<float>(hd))};
    const int64_t per_head = 300 * static_cast<int64_t>(hd);
    const auto q = RandomValues(static_cast<size_t>(4 * per_head), 21, 2.0f);
    const auto k = RandomValues(static_cast<size_t>(2 * per_head), 22, 2.0f);
    std::vector<std::vector<float>> vs;
    for (uint64_t c = 0; c < 3; ++c) {
      vs.push_back(RandomValues(static_cast<size_t>(2 * per_head), 30 + c, 1.0f));
    }
    test::ForEachSimdTarget([&](const std::string& target) {
      std::vector<std::vector<float>> want(3, std::vector<float>(q.size()));
      std::vector<std::vector<float>> got(3, std::vector<float>(q.size()));
      std::vector<HeadsView> v_views;
      std::vector<MutableHeadsView> out_views;
      for (size_t c = 0; c < 3; ++c) {
        CausalAttention(shape, {q.data(), per_head, hd}, {k.data(), per_head, hd},
                        {vs[c].data(), per_head, hd}, {want[c].data(), per_head, hd});
        v_views.push_back({vs[c].data(), per_head, hd});
        out_views.push_back({got[c].data(), per_head, hd});
      }
      CausalAttentionManyV(shape, {q.data(), per_head, hd}, {k.data(), per_head, hd}, v_views,
                           out_views);
      for (size_t c = 0; c < 3; ++c) {
        EXPECT_EQ(0, std::memcmp(got[c].data(), want[c].data(), q.size() * sizeof(float)))
            << target << " head_dim " << hd << " v " << c;
      }
    });
  }
}

// transformers' eager float32 attention: layers.L.attn [seq, nh * hd] from
// layers.L.q [nh, seq, hd], layers.L.k / v [nkv, seq, hd].
TEST(AttentionTest, MatchesQwen2TinyFixtures) {
  for (const char* fixture : {"tied-bf16", "untied-f16-gqa4", "sharded-f32"}) {
    const auto file =
        SafeTensorsFile::Open(test::DataDir() / "qwen2-tiny" / fixture / "expected.safetensors");
    for (int layer = 0;; ++layer) {
      const std::string prefix = "layers." + std::to_string(layer) + ".";
      if (file.Find(prefix + "q") == nullptr) {
        EXPECT_GE(layer, 2) << fixture;
        break;
      }
      const TensorView& qt = file.Get(prefix + "q");
      const TensorView& kt = file.Get(prefix + "k");
      const TensorView& vt = file.Get(prefix + "v");
      const TensorView& at = file.Get(prefix + "attn");
      const int heads = static_cast<int>(qt.shape[0]);
      const int64_t seq = qt.shape[1];
      const int hd = static_cast<int>(qt.shape[2]);
      std::vector<float> q(qt.numel()), k(kt.numel()), v(vt.numel()), want(at.numel());
      qt.ToFloat(q);
      kt.ToFloat(k);
      vt.ToFloat(v);
      at.ToFloat(want);
      const AttentionShape shape{heads, static_cast<int>(kt.shape[0]),           hd, seq,
                                 seq,   1.0f / std::sqrt(static_cast<float>(hd))};
      test::ForEachSimdTarget([&](const std::string&) {
        std::vector<float> got(want.size());
        CausalAttention(shape, {q.data(), seq * hd, hd}, {k.data(), seq * hd, hd},
                        {v.data(), seq * hd, hd},
                        {got.data(), hd, static_cast<int64_t>(heads) * hd});
        double err = 0, scale = 0;
        for (size_t i = 0; i < want.size(); ++i) {
          err = std::max(err, static_cast<double>(std::abs(got[i] - want[i])));
          scale = std::max(scale, static_cast<double>(std::abs(want[i])));
        }
        EXPECT_LE(err / scale, 1e-5) << fixture << " layer " << layer;
      });
    }
  }
}

}  // namespace
}  // namespace kvq
