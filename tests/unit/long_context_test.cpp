// Long contexts: the forward pass's working memory grows by a fixed, small
// number of floats per token (docs/long-context.md), and cutting its
// projections and MLP into row blocks changes no result.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "kvq/model/model.h"
#include "kvq/model/random_model.h"
#include "test_util.h"

namespace kvq {
namespace {

// A small model with a wide MLP (intermediate 2048 = 32 x hidden), where a
// [tokens, 2 intermediate] buffer would dwarf everything else.
std::filesystem::path WideMlpModel(const test::ScratchDir& dir) {
  ModelConfig c = FindModelPreset("tiny").config;
  c.vocab_size = 1000;
  c.num_layers = 1;
  c.intermediate_size = 2048;
  WriteRandomModel(c, 5, DType::kBF16, dir / "model");
  return dir / "model";
}

std::vector<int32_t> Ids(int64_t n) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t)
    ids[static_cast<size_t>(t)] = static_cast<int32_t>(t * 7919 % 1000);
  return ids;
}

// Scratch after a 4096-token prompt: at most T x (3 hidden + 2 kv width)
// floats (residual stream, q, attention output; k, v) plus what does not
// grow with T: 512-row blocks of the norm output, qkv and gate_up, one
// layer's float32 weights and the RoPE table. A [T, 2 intermediate] MLP
// buffer alone would be 4096 x 4096 floats (64 MiB), far above the bound.
TEST(LongContext, ForwardScratchGrowsLinearlyWithASmallSlope) {
  test::ScratchDir dir;
  Model model = Model::Load(WideMlpModel(dir));
  const ModelConfig& c = model.config();
  const int64_t T = 4096, H = c.hidden_size, I = c.intermediate_size;
  const int64_t nq = c.num_heads * c.head_dim, nkv = c.num_kv_heads * c.head_dim;
  ASSERT_EQ(nq, H);
  std::vector<float> hidden;
  model.Forward(Ids(T), T, nullptr, &hidden);
  const int64_t per_token = 3 * H + 2 * nkv;
  const int64_t blocks = 512 * (H + nq + 2 * nkv + 2 * I);
  const int64_t layer_weights = (nq + 2 * nkv) * H + H * nq + 3 * I * H + 4 * H + nq + 2 * nkv + 64;
  const int64_t rope = T * c.head_dim;
  const auto bound = static_cast<size_t>((T * per_token + blocks + layer_weights + rope) * 4);
  EXPECT_LE(model.ScratchBytes(), bound);
  EXPECT_GE(model.ScratchBytes(), static_cast<size_t>(T * per_token * 4));
}

// Eleven prompts of 100 tokens in one call (rows cross the 512-row block
// edges inside prompts 5 and 10) give each prompt's hidden states as a call
// with that prompt alone (one partial block).
TEST(LongContext, RowBlocksDoNotChangeResults) {
  test::ScratchDir dir;
  Model model = Model::Load(WideMlpModel(dir));
  const int64_t H = model.config().hidden_size, L = 100, prompts = 11;
  const std::vector<int32_t> ids = Ids(L * prompts);
  std::vector<float> together, alone;
  model.Forward(ids, L, nullptr, &together);
  for (int64_t p = 0; p < prompts; ++p) {
    model.Forward(std::span(ids).subspan(static_cast<size_t>(p * L), static_cast<size_t>(L)), L,
                  nullptr, &alone);
    double max_diff = 0, max_ref = 0;
    for (int64_t i = 0; i < L * H; ++i) {
      const double a = alone[static_cast<size_t>(i)];
      max_diff = std::max(max_diff, std::abs(together[static_cast<size_t>(p * L * H + i)] - a));
      max_ref = std::max(max_ref, std::abs(a));
    }
    EXPECT_LE(max_diff, 1e-5 * max_ref) << "prompt " << p;
  }
}

}  // namespace
}  // namespace kvq
