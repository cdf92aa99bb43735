// DecodeAttention against a plain scalar reference (the per-head loop it
// replaced, accumulating in double), on every SIMD target.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kvq/common/random.h"
#include "kvq/generate/generate.h"
#include "test_util.h"

namespace kvq {
namespace {

using test::RandomValues;

struct Case {
  int heads, kv_heads, head_dim;
  int64_t position, tokens;
};

// A query cache: q [tokens, heads * head_dim]; k and v per kv head
// [position + tokens, head_dim].
struct Inputs {
  std::vector<float> q;
  std::vector<std::vector<float>> k, v;
  std::vector<const float*> k_ptr, v_ptr;
};

// Q and K of std 2: scores spread over several units, so the softmax is far
// from uniform and the max subtraction matters.
Inputs MakeInputs(const Case& c) {
  Inputs in;
  const auto keys = static_cast<size_t>(c.position + c.tokens);
  in.q = RandomValues(static_cast<size_t>(c.tokens * c.heads * c.head_dim), 1 + c.head_dim, 2.0f);
  for (int g = 0; g < c.kv_heads; ++g) {
    in.k.push_back(RandomValues(keys * c.head_dim, 100 + g, 2.0f));
    in.v.push_back(RandomValues(keys * c.head_dim, 200 + g, 1.0f));
  }
  for (int g = 0; g < c.kv_heads; ++g) {
    in.k_ptr.push_back(in.k[static_cast<size_t>(g)].data());
    in.v_ptr.push_back(in.v[static_cast<size_t>(g)].data());
  }
  return in;
}

// Per (token, query head): explicit scores, max-subtracted softmax and
// weighted sum of V, in double. out: [tokens, heads * head_dim].
std::vector<double> ReferenceDecodeAttention(const Case& c, const Inputs& in) {
  const int group = c.heads / c.kv_heads;
  const int64_t width = static_cast<int64_t>(c.heads) * c.head_dim;
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  std::vector<double> out(static_cast<size_t>(c.tokens * width));
  std::vector<double> p;
  for (int64_t t = 0; t < c.tokens; ++t) {
    for (int h = 0; h < c.heads; ++h) {
      const int64_t keys = c.position + t + 1;
      p.assign(static_cast<size_t>(keys), 0.0);
      const float* qh = in.q.data() + t * width + h * c.head_dim;
      const float* kh = in.k_ptr[static_cast<size_t>(h / group)];
      const float* vh = in.v_ptr[static_cast<size_t>(h / group)];
      double max = -INFINITY;
      for (int64_t j = 0; j < keys; ++j) {
        double dot = 0;
        for (int d = 0; d < c.head_dim; ++d) {
          dot += static_cast<double>(qh[d]) * kh[j * c.head_dim + d];
        }
        p[static_cast<size_t>(j)] = dot * scale;
        max = std::max(max, p[static_cast<size_t>(j)]);
      }
      double sum = 0;
      for (double& x : p) sum += (x = std::exp(x - max));
      double* o = out.data() + t * width + h * c.head_dim;
      for (int64_t j = 0; j < keys; ++j) {
        for (int d = 0; d < c.head_dim; ++d) {
          o[d] += p[static_cast<size_t>(j)] / sum * vh[j * c.head_dim + d];
        }
      }
    }
  }
  return out;
}

std::vector<float> Attend(const Case& c, const Inputs& in) {
  std::vector<float> out(static_cast<size_t>(c.tokens * c.heads * c.head_dim), NAN);
  DecodeAttention(c.heads, c.kv_heads, c.head_dim, c.position, c.tokens, in.q.data(), in.k_ptr,
                  in.v_ptr, out.data());
  return out;
}

// Scaled max error: max |got - want| / max |want|.
double ScaledMaxError(const std::vector<float>& got, const std::vector<double>& want) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err = std::max(err, std::abs(got[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return err / scale;
}

// GQA groups of 1 to 14 query heads (7 fills an AVX2 vector but for one lane,
// 14 and several tokens span lane groups), head dims off and on multiples of
// 8, positions in the first key block, on block edges (256) and far past
// them; tokens > 1 at positions just below a block edge leave whole blocks
// hidden from the first tokens.
const Case kCases[] = {
    {14, 2, 64, 0, 1},    {14, 2, 64, 1, 1},    {14, 2, 64, 255, 1}, {14, 2, 64, 256, 1},
    {14, 2, 64, 4095, 1}, {14, 2, 64, 5000, 1}, {14, 2, 64, 254, 3}, {14, 2, 64, 5000, 4},
    {7, 1, 8, 0, 1},      {7, 1, 8, 700, 2},    {4, 4, 128, 300, 1}, {4, 4, 128, 5000, 3},
    {8, 1, 20, 513, 1},   {8, 2, 96, 1000, 5},  {28, 2, 72, 257, 2}, {6, 3, 40, 0, 6},
    {2, 1, 128, 5000, 1}, {12, 4, 8, 1, 3},
};

TEST(DecodeAttention, MatchesScalarReferenceOnEveryTarget) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(testing::Message()
                 << c.heads << " heads, " << c.kv_heads << " kv heads, dim " << c.head_dim
                 << ", position " << c.position << ", tokens " << c.tokens);
    const Inputs in = MakeInputs(c);
    const std::vector<double> want = ReferenceDecodeAttention(c, in);
    test::ForEachSimdTarget([&](const std::string&) {
      const std::vector<float> got = Attend(c, in);
      EXPECT_LE(ScaledMaxError(got, want), 1e-5);
    });
  }
}

// The reference's weights sum to 1: one key with every other score far below
// it gives out = v of that key; a misplaced block or lane shows up as a
// different row of V.
TEST(DecodeAttention, PicksTheOneMatchingKeyAcrossBlocks) {
  const Case c{14, 2, 64, 3000, 2};
  Inputs in = MakeInputs(c);
  const int64_t keys = c.position + c.tokens;
  for (auto& kh : in.k) std::fill(kh.begin(), kh.end(), 0.0f);
  const int group = c.heads / c.kv_heads;
  // Query head h of token t looks along its own dim t * heads + h (all
  // distinct) for key (h * 211 + t * 37) % keys, which holds a large value
  // there: score 200, every other score 0.
  for (int64_t t = 0; t < c.tokens; ++t) {
    for (int h = 0; h < c.heads; ++h) {
      const int64_t row = t * c.heads + h;
      float* qh = in.q.data() + row * c.head_dim;
      std::fill(qh, qh + c.head_dim, 0.0f);
      qh[row] = 40.0f;
      const int64_t j = std::min<int64_t>((h * 211 + t * 37) % keys, c.position + t);
      in.k[static_cast<size_t>(h / group)][static_cast<size_t>(j * c.head_dim + row)] = 40.0f;
    }
  }
  test::ForEachSimdTarget([&](const std::string&) {
    const std::vector<float> got = Attend(c, in);
    for (int64_t t = 0; t < c.tokens; ++t) {
      for (int h = 0; h < c.heads; ++h) {
        const int64_t j = std::min<int64_t>((h * 211 + t * 37) % keys, c.position + t);
        const float* vj = in.v[static_cast<size_t>(h / group)].data() + j * c.head_dim;
        for (int d = 0; d < c.head_dim; ++d) {
          ASSERT_NEAR(got[static_cast<size_t>((t * c.heads + h) * c.head_dim + d)], vj[d], 1e-5)
              << "token " << t << " head " << h << " dim " << d;
        }
      }
    }
  });
}

TEST(DecodeAttention, SameResultForAnyThreadCount) {
  const Case c{14, 2, 64, 2000, 3};
  const Inputs in = MakeInputs(c);
  test::ForEachSimdTarget([&](const std::string&) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    const std::vector<float> one = Attend(c, in);
    omp_set_num_threads(3);
    const std::vector<float> three = Attend(c, in);
    omp_set_num_threads(saved);
    EXPECT_EQ(one, three);
  });
}

}  // namespace
}  // namespace kvq
