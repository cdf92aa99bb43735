// The forward pass against Hugging Face transformers' own outputs on tiny
// random-weight models (tests/data/*-tiny, see their READMEs).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "kvq/common/io.h"
#include "kvq/common/layout.h"
#include "kvq/model/model.h"
#include "test_util.h"

namespace kvq {
namespace {

// err(T) = max |got - expected| / max |expected|, the fixtures' measure.
double ScaledMaxError(std::span<const float> got, std::span<const float> expected) {
  EXPECT_EQ(got.size(), expected.size());
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(static_cast<double>(got[i]) - expected[i]));
    max_ref = std::max(max_ref, std::abs(static_cast<double>(expected[i])));
  }
  return max_diff / max_ref;
}

std::vector<int32_t> ReadIds(const std::filesystem::path& path) {
  const auto json = nlohmann::json::parse(ReadTextFile(path));
  return json.at("input_ids").get<std::vector<int32_t>>();
}

std::vector<float> Floats(const SafeTensorsFile& file, const std::string& name) {
  const TensorView& t = file.Get(name);
  std::vector<float> values(static_cast<size_t>(t.numel()));
  t.ToFloat(values);
  return values;
}

// Token-major [T, heads, D] -> head-major [heads, T, D], as the fixtures hold them.
std::vector<float> HeadMajor(const float* x, int64_t tokens, int heads, int dim) {
  std::vector<float> out(static_cast<size_t>(tokens * heads * dim));
  ToHeadMajor(x, tokens, heads, dim, out.data());
  return out;
}

struct Recorder : LayerHook {
  int heads = 0, kv_heads = 0, dim = 0, hidden = 0, attn_width = 0;
  std::vector<std::vector<float>> q, k, v, attn, out;
  void OnKV(LayerKV& kv) override {
    q.push_back(HeadMajor(kv.q, kv.tokens, heads, dim));
    k.push_back(HeadMajor(kv.k, kv.tokens, kv_heads, dim));
    v.push_back(HeadMajor(kv.v, kv.tokens, kv_heads, dim));
  }
  void OnOutputs(const LayerOutputs& o) override {
    attn.emplace_back(o.attn, o.attn + o.tokens * attn_width);
    out.emplace_back(o.out, o.out + o.tokens * hidden);
  }
};

class GoldenModel : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenModel, MatchesTransformers) {
  const auto dir = test::DataDir() / GetParam();
  Model model = Model::Load(dir);
  const ModelConfig& c = model.config();
  const auto ids = ReadIds(dir / "input_ids.json");
  const auto expected = SafeTensorsFile::Open(dir / "expected.safetensors");

  Recorder recorder;
  recorder.heads = c.num_heads;
  recorder.kv_heads = c.num_kv_heads;
  recorder.dim = c.head_dim;
  recorder.hidden = c.hidden_size;
  recorder.attn_width = c.num_heads * c.head_dim;
  std::vector<float> hidden;
  model.Forward(ids, static_cast<int64_t>(ids.size()), &recorder, &hidden);

  ASSERT_EQ(recorder.q.size(), static_cast<size_t>(c.num_layers));
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    EXPECT_LE(ScaledMaxError(recorder.q[l], Floats(expected, p + "q")), 2e-5) << p << "q";
    EXPECT_LE(ScaledMaxError(recorder.k[l], Floats(expected, p + "k")), 2e-5) << p << "k";
    EXPECT_LE(ScaledMaxError(recorder.v[l], Floats(expected, p + "v")), 1e-5) << p << "v";
    EXPECT_LE(ScaledMaxError(recorder.attn[l], Floats(expected, p + "attn")), 1e-5) << p << "attn";
    EXPECT_LE(ScaledMaxError(recorder.out[l], Floats(expected, p + "out")), 1e-5) << p << "out";
  }
  std::vector<float> logits(ids.size() * static_cast<size_t>(c.vocab_size));
  model.Logits(hidden.data(), static_cast<int64_t>(ids.size()), logits.data());
  EXPECT_LE(ScaledMaxError(logits, Floats(expected, "logits")), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenModel,
                         ::testing::Values("qwen2-tiny/tied-bf16", "qwen2-tiny/untied-f16-gqa4",
                                           "qwen2-tiny/sharded-f32", "llama-tiny/plain-f16",
                                           "llama-tiny/llama3-rope-bf16",
                                           "qwen3-tiny/tied-bf16-headdim"),
                         test::FixtureTestName);

}  // namespace
}  // namespace kvq
