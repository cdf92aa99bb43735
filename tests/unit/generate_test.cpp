// Incremental decoding with a quantized KV cache (docs/generate.md): the
// quantize-on-append rules against a plain whole-cache re-quantization, fp32
// decoding against full forward passes and the transformers goldens,
// teacher-forced decoding against kvq ppl, sampling, and the CLI's numbers
// against independent computations.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "kvq/common/error.h"
#include "kvq/common/half.h"
#include "kvq/common/io.h"
#include "kvq/common/layout.h"
#include "kvq/generate/generate.h"
#include "kvq/metrics/perplexity.h"
#include "kvq/model/safetensors.h"
#include "kvq/quant/quantize.h"
#include "kvq/tokenizer/tokenizer.h"
#include "test_util.h"

namespace kvq {
namespace {

ModelConfig Geometry(int layers, int kv_heads, int head_dim) {
  ModelConfig c;
  c.num_layers = layers;
  c.num_kv_heads = kv_heads;
  c.num_heads = kv_heads;
  c.head_dim = head_dim;
  return c;
}

std::vector<float> Normals(SplitMix64& rng, size_t n) {
  std::vector<float> x(n);
  for (float& v : x) v = static_cast<float>(rng.Normal());
  return x;
}

// The plain reference: the cache of one head after `length` tokens, computed
// from the whole history at once the way kvq ppl quantizes a prompt
// (QuantizeHead over tokens [0, end) at positions 0..end-1, the sink kept
// fp16 inside it), where `end` is as far as the rules have quantized by now;
// tokens [end, length) fp16; scales calibrated on the first `prefill` tokens.
// ctx: the RoPE table and k bias for +prerope / +bias.
std::vector<float> ReferenceCache(const FormatSpec& f, HeadContext ctx, const float* x,
                                  int64_t length, int64_t prefill, int D, int64_t* quantized) {
  std::vector<float> y(static_cast<size_t>(length * D));
  for (size_t i = 0; i < y.size(); ++i) y[i] = RoundToHalf(x[i]);
  FormatSpec whole = f;
  whole.recent = 0;
  const int64_t S = std::min<int64_t>(f.sink, length);
  int64_t end = std::max(S, length - f.recent);
  const bool groups = f.kind == FormatKind::kInt && f.granularity == Granularity::kGroupToken;
  if (groups) end = S + (end - S) / f.group * f.group;
  HeadStats stats;
  if (f.NeedsStats()) {
    ctx.chunk_len = prefill;
    stats = CalibrateHead(whole, ctx, x, prefill, D);
  }
  *quantized = end - S;
  if (end > S) {
    ctx.chunk_len = end;
    QuantizeHead(whole, ctx, x, y.data(), end, D, f.NeedsStats() ? &stats : nullptr);
  }
  return y;
}

TEST(KvCacheTest, AppendRulesMatchWholeCacheRequantization) {
  const int L = 2, G = 2, D = 32;
  const ModelConfig c = Geometry(L, G, D);
  const int64_t prefill = 5, total = 29;
  SplitMix64 rng(7);
  const std::vector<float> k = Normals(rng, static_cast<size_t>(total * G * D));
  const std::vector<float> v = Normals(rng, k.size());
  const std::vector<float> k_bias = Normals(rng, static_cast<size_t>(G * D));  // [G, D]
  const RopeTable rope(c.rope, D, total);
  for (const char* spec :
       {"k=int4:g4:token+sink2+recent3,v=int8:channel+recent2", "k=int8:tensor+sink1,v=nvfp4+had",
        "kv=int4:g8:dim+recent5,k[1.0]=q4_0+sink3,v[0.1]=fp8e4m3", "kv=int2:g4:token",
        "kv=int8:token+sink4", "k=int3:g8:token:sym+recent8,v=iq4_nl",
        "k=int4:g8:dim+prerope+sink2+recent3,v=int8:token", "k=int4:g4:token+bias+recent2",
        "k=int8:channel+prerope+bias,v=q8_0", "k=q4_0+had+prerope+bias+sink1,v=int4:token"}) {
    SCOPED_TRACE(spec);
    const Strategy s = Strategy::Parse(spec);
    QuantizedKvCache cache(c, &s);
    int64_t length = 0;
    while (length < total) {
      const int64_t n = length == 0 ? prefill : 1;
      for (int l = 0; l < L; ++l) {
        cache.Append(l, k.data() + length * G * D, v.data() + length * G * D, n, k_bias.data());
      }
      length += n;
      ASSERT_EQ(cache.length(1), length);
      for (KvTensor tensor : {KvTensor::kK, KvTensor::kV}) {
        const std::vector<float>& src = tensor == KvTensor::kK ? k : v;
        for (int l = 0; l < L; ++l) {
          for (int h = 0; h < G; ++h) {
            std::vector<float> history(static_cast<size_t>(length * G * D));
            ToHeadMajor(src.data(), length, G, D, history.data());  // Head-major [G, length, D].
            int64_t quantized = 0;
            HeadContext ctx;
            ctx.rope = &rope;
            if (tensor == KvTensor::kK) ctx.k_bias = k_bias.data() + h * D;
            const std::vector<float> expected =
                ReferenceCache(s.Format(tensor, l, h), ctx, history.data() + h * length * D, length,
                               prefill, D, &quantized);
            ASSERT_EQ(0, std::memcmp(expected.data(), cache.Values(tensor, l, h),
                                     expected.size() * sizeof(float)))
                << KvTensorName(tensor) << " layer " << l << " head " << h << " length " << length;
            ASSERT_EQ(cache.QuantizedTokens(tensor, l, h), quantized);
          }
        }
      }
    }
  }
}

TEST(KvCacheTest, HandCheckedRules) {
  const int D = 32;
  const ModelConfig c = Geometry(1, 1, D);
  SplitMix64 rng(3);
  std::vector<float> x = Normals(rng, 10 * D);
  // g4:token: tokens wait in fp16 until four complete a group.
  {
    const Strategy s = Strategy::Parse("kv=int4:g4:token");
    QuantizedKvCache cache(c, &s);
    for (int t = 0; t < 7; ++t) cache.Append(0, &x[t * D], &x[t * D], 1);
    EXPECT_EQ(cache.Rule(KvTensor::kK, 0, 0), AppendRule::kTokenGroups);
    EXPECT_EQ(cache.QuantizedTokens(KvTensor::kK, 0, 0), 4);
    const float* y = cache.Values(KvTensor::kK, 0, 0);
    for (int i = 4 * D; i < 7 * D; ++i) ASSERT_EQ(y[i], RoundToHalf(x[i]));
    int differ = 0;
    for (int i = 0; i < 4 * D; ++i) differ += y[i] != RoundToHalf(x[i]);
    EXPECT_GT(differ, 4 * D / 2);
    cache.Append(0, &x[7 * D], &x[7 * D], 1);
    EXPECT_EQ(cache.QuantizedTokens(KvTensor::kK, 0, 0), 8);
  }
  // int8:tensor: the prefill's scale is kept; a later, larger value clamps to it.
  {
    std::vector<float> prompt(2 * D, 0.25f);
    prompt[5] = -1.0f;  // amax 1.
    const Strategy s = Strategy::Parse("kv=int8:tensor");
    QuantizedKvCache cache(c, &s);
    cache.Append(0, prompt.data(), prompt.data(), 2);
    std::vector<float> big(D, 5.0f);
    cache.Append(0, big.data(), big.data(), 1);
    const float* y = cache.Values(KvTensor::kV, 0, 0);
    EXPECT_EQ(y[5], -1.0f);
    for (int d = 0; d < D; ++d) EXPECT_EQ(y[2 * D + d], 1.0f);  // 127 / (127 / 1).
    EXPECT_EQ(cache.Rule(KvTensor::kV, 0, 0), AppendRule::kCalibrated);
  }
  // A prefill with nothing past the sink cannot calibrate.
  {
    const Strategy s = Strategy::Parse("kv=int8:channel+sink4");
    QuantizedKvCache cache(c, &s);
    EXPECT_THROW(cache.Append(0, x.data(), x.data(), 4), kvq::InputError);
  }
  // +prerope: a token is quantized with RoPE undone at its own position.
  {
    const Strategy s = Strategy::Parse("k=int4:token+prerope,v=fp16");
    const RopeTable rope(c.rope, D, 10);
    QuantizedKvCache cache(c, &s);
    for (int t = 0; t < 10; ++t) cache.Append(0, &x[t * D], &x[t * D], 1);
    const FormatSpec plain = FormatSpec::Parse("int4:token");
    for (int t = 0; t < 10; ++t) {
      std::vector<float> y(x.begin() + t * D, x.begin() + (t + 1) * D);
      ApplyRope(rope, y.data(), 1, D, t, /*inverse=*/true);
      QuantizeHead(plain, {}, y.data(), y.data(), 1, D);
      ApplyRope(rope, y.data(), 1, D, t);
      for (int d = 0; d < D; ++d) {
        ASSERT_EQ(cache.Values(KvTensor::kK, 0, 0)[t * D + d], y[static_cast<size_t>(d)])
            << "token " << t;
      }
    }
  }
}

TEST(KvCacheTest, Bytes) {
  const int D = 32;
  const ModelConfig c = Geometry(1, 1, D);
  std::vector<float> x(10 * D, 0.5f);
  auto bytes = [&](const Strategy* s, int tokens) {
    QuantizedKvCache cache(c, s);
    cache.Append(0, x.data(), x.data(), 1);
    for (int t = 1; t < tokens; ++t) cache.Append(0, &x[t * D], &x[t * D], 1);
    return cache.Bytes();
  };
  EXPECT_EQ(bytes(nullptr, 10), 10 * 2 * 32 * 4);
  const Strategy a = Strategy::Parse("k=int8:token+sink2,v=fp16");
  // K: 8 tokens x (32 int8 + 4-byte scale) + 2 fp16 tokens; V: 10 fp16 tokens.
  EXPECT_EQ(bytes(&a, 10), 8 * 36 + 2 * 64 + 10 * 64);
  const Strategy b = Strategy::Parse("k=int4:g4:token");
  // K: 4 tokens at 32 x (4 bits + (scale + min) / 4 tokens) = 80 bytes, 2 fp16; V: 6 fp16.
  EXPECT_EQ(bytes(&b, 6), 4 * 80 + 2 * 64 + 6 * 64);
  const Strategy t = Strategy::Parse("kv=int8:tensor");
  // 5 int8 tokens per tensor plus one 4-byte scale each.
  EXPECT_EQ(bytes(&t, 5), 2 * (5 * 32 + 4));
}

std::vector<int32_t> ReadIds(const std::filesystem::path& path) {
  return nlohmann::json::parse(ReadTextFile(path)).at("input_ids").get<std::vector<int32_t>>();
}

double ScaledMaxError(const float* got, const float* expected, size_t n) {
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < n; ++i) {
    max_diff = std::max(max_diff, std::abs(static_cast<double>(got[i]) - expected[i]));
    max_ref = std::max(max_ref, std::abs(static_cast<double>(expected[i])));
  }
  return max_diff / max_ref;
}

class DecodeFixture : public ::testing::TestWithParam<std::string> {};

// fp32 cache: at every step, the logits of a full forward pass over the same
// prefix, and the transformers goldens.
TEST_P(DecodeFixture, Fp32CacheMatchesForwardAndGolden) {
  const auto dir = test::DataDir() / GetParam();
  Model model = Model::Load(dir);
  const int64_t V = model.config().vocab_size;
  std::vector<int32_t> ids = ReadIds(dir / "input_ids.json");
  ids.resize(std::min<size_t>(ids.size(), 40));
  const int64_t P = 3, n = static_cast<int64_t>(ids.size());
  const DecodeRun run =
      TeacherForced(model, std::span(ids).first(P), std::span(ids).subspan(P), nullptr);
  ASSERT_EQ(run.logits.size(), static_cast<size_t>((n - P) * V));
  const auto expected = SafeTensorsFile::Open(dir / "expected.safetensors");
  std::vector<float> golden(static_cast<size_t>(expected.Get("logits").numel()));
  expected.Get("logits").ToFloat(golden);
  std::vector<float> hidden, logits(static_cast<size_t>(V));
  const int64_t H = model.config().hidden_size;
  for (int64_t i = 0; i < n - P; ++i) {
    const int64_t t = P - 1 + i;  // The position whose logits predict ids[t + 1].
    model.Forward(std::span(ids).first(static_cast<size_t>(t + 1)), t + 1, nullptr, &hidden);
    model.Logits(hidden.data() + t * H, 1, logits.data());
    const float* got = run.logits.data() + i * V;
    EXPECT_LE(ScaledMaxError(got, logits.data(), static_cast<size_t>(V)), 5e-6) << "step " << i;
    EXPECT_LE(ScaledMaxError(got, golden.data() + t * V, static_cast<size_t>(V)), 1e-5)
        << "step " << i;
  }
  // Greedy generation picks the argmax of the forward pass over prompt + generated.
  const DecodeRun greedy = Generate(model, std::span(ids).first(P), nullptr, 8, {}, false);
  std::vector<int32_t> seq(ids.begin(), ids.begin() + P);
  for (int32_t token : greedy.tokens) {
    const auto T = static_cast<int64_t>(seq.size());
    model.Forward(seq, T, nullptr, &hidden);
    model.Logits(hidden.data() + (T - 1) * H, 1, logits.data());
    ASSERT_EQ(token, std::max_element(logits.begin(), logits.end()) - logits.begin());
    seq.push_back(token);
  }
  EXPECT_EQ(greedy.decode_steps, 7);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, DecodeFixture,
                         ::testing::Values("qwen2-tiny/tied-bf16", "qwen2-tiny/untied-f16-gqa4",
                                           "qwen2-tiny/sharded-f32", "llama-tiny/plain-f16",
                                           "llama-tiny/llama3-rope-bf16",
                                           "qwen3-tiny/tied-bf16-headdim"),
                         test::FixtureTestName);

struct Sums {
  double nll = 0, kl = 0;
};

// Teacher-forced decoding over ids: per-token NLL of ids[t + 1] and KL
// against the exact-cache run, summed.
Sums TeacherForcedSums(Model& model, const std::vector<int32_t>& ids, const Strategy& s) {
  const int64_t V = model.config().vocab_size;
  const auto prompt = std::span(ids).first(1);
  const auto forced = std::span(ids).subspan(1);
  const DecodeRun base = TeacherForced(model, prompt, forced, nullptr);
  const DecodeRun quant = TeacherForced(model, prompt, forced, &s);
  Sums sums;
  for (size_t i = 0; i < forced.size(); ++i) {
    const TokenComparison cmp =
        CompareNextToken(base.logits.data() + i * V, quant.logits.data() + i * V, V, forced[i]);
    sums.nll += cmp.nll;
    sums.kl += cmp.kl;
  }
  return sums;
}

// Teacher-forced decoding of ids (one prompt) with `spec` gives kvq ppl's
// per-token NLL and KL, and the quantization shows in the KL.
void ExpectTeacherForcedMatchesPerplexity(Model& model, const std::vector<int32_t>& ids,
                                          const char* spec) {
  SCOPED_TRACE(spec);
  const auto L = static_cast<int64_t>(ids.size());
  const Strategy s = Strategy::Parse(spec);
  const PerplexityReport ppl = EvaluatePerplexity(model, ids, L, {s});
  const Sums sums = TeacherForcedSums(model, ids, s);
  const PredictionStats& p = ppl.strategies[0].total;
  ASSERT_EQ(p.predictions, L - 1);
  EXPECT_NEAR(sums.nll / static_cast<double>(L - 1), p.nll(), 2e-5);
  EXPECT_NEAR(sums.kl / static_cast<double>(L - 1), p.kl_mean(), 1e-6 + 1e-3 * p.kl_mean());
  EXPECT_GT(p.kl_mean(), 1e-6);
}

// For formats quantized per token, teacher-forced decoding gives kvq ppl's
// per-token NLL and KL; +recent (a sliding window in decoding, the prompt's
// last tokens in ppl) does not, which shows the comparison can fail.
TEST(GenerateTest, TeacherForcedMatchesPerplexity) {
  const auto dir = test::DataDir() / "qwen3-tiny/tied-bf16-headdim";
  Model model = Model::Load(dir);
  std::vector<int32_t> ids = ReadIds(dir / "input_ids.json");
  ids.resize(48);
  const auto L = static_cast<int64_t>(ids.size());
  for (const char* spec : {"int8:token", "int4:g8:dim", "q4_0", "k=iq4_nl,v=q8_0",
                           "kv=int4:token+sink3", "k=int4:token+had,v=q4_1", "int2:g16:dim"}) {
    ExpectTeacherForcedMatchesPerplexity(model, ids, spec);
  }
  const Strategy recent = Strategy::Parse("kv=int2:token+recent8");
  const PerplexityReport ppl = EvaluatePerplexity(model, ids, L, {recent});
  const Sums sums = TeacherForcedSums(model, ids, recent);
  EXPECT_GT(std::abs(sums.kl / static_cast<double>(L - 1) - ppl.strategies[0].total.kl_mean()),
            1e-3 * ppl.strategies[0].total.kl_mean());
}

// +prerope and +bias: the cache quantizes each token in the working basis of
// its absolute position (with the layer's k_proj bias), so teacher-forced
// decoding again gives kvq ppl's per-token NLL and KL. Qwen2 has a k bias.
TEST(GenerateTest, TeacherForcedMatchesPerplexityWithPreRopeAndBias) {
  const auto dir = test::DataDir() / "qwen2-tiny/tied-bf16";
  Model model = Model::Load(dir);
  ASSERT_TRUE(model.config().qkv_bias);
  std::vector<int32_t> ids = ReadIds(dir / "input_ids.json");
  ids.resize(std::min<size_t>(ids.size(), 48));
  for (const char* spec :
       {"k=int4:token+prerope,v=int8:token", "k=int4:g8:dim+bias,v=int8:g8:dim",
        "k=int4:token+prerope+bias,v=int4:token", "k=int4:g8:dim+had+prerope+bias+sink2"}) {
    ExpectTeacherForcedMatchesPerplexity(model, ids, spec);
  }
  // Without the modifier the numbers differ: the test can tell them apart.
  const Strategy with = Strategy::Parse("k=int4:token+prerope+bias,v=fp16");
  const Strategy without = Strategy::Parse("k=int4:token,v=fp16");
  const double a = TeacherForcedSums(model, ids, with).kl;
  const double b = TeacherForcedSums(model, ids, without).kl;
  EXPECT_GT(std::abs(a - b), 1e-3 * std::max(a, b));
}

// Generation stops after the first end-of-sequence token, which it keeps.
TEST(GenerateTest, StopsAtEos) {
  const auto dir = test::DataDir() / "qwen2-tiny/tied-bf16";
  Model model = Model::Load(dir);
  const std::vector<int32_t> prompt = {5, 17, 300};
  const DecodeRun free = Generate(model, prompt, nullptr, 10, {}, false);
  EXPECT_EQ(free.stop, StopReason::kLength);
  ASSERT_EQ(free.tokens.size(), 10u);
  // The first token that has not appeared before index i (i > 0) as the EOS.
  size_t i = 1;
  while (i < free.tokens.size() &&
         std::find(free.tokens.begin(), free.tokens.begin() + static_cast<int64_t>(i),
                   free.tokens[i]) != free.tokens.begin() + static_cast<int64_t>(i)) {
    ++i;
  }
  ASSERT_LT(i, free.tokens.size()) << "greedy tokens all repeat the first";
  const std::vector<int32_t> eos = {99999, free.tokens[i]};
  const DecodeRun stopped = Generate(model, prompt, nullptr, 10, {}, false, eos);
  EXPECT_EQ(stopped.stop, StopReason::kEos);
  EXPECT_EQ(stopped.tokens, std::vector<int32_t>(free.tokens.begin(), free.tokens.begin() + i + 1));
  EXPECT_EQ(stopped.decode_steps, static_cast<int64_t>(i));
}

TEST(GenerateTest, EosTokenIds) {
  test::ScratchDir scratch;
  const auto write = [&](const char* name, const std::string& text) {
    WriteTextFileAtomic(scratch / name, text);
  };
  EXPECT_TRUE(EosTokenIds(scratch.path(), 100).empty());
  write("config.json", R"({"eos_token_id": 7})");
  EXPECT_EQ(EosTokenIds(scratch.path(), 100), std::vector<int32_t>({7}));
  write("generation_config.json", R"({"eos_token_id": [3, 9]})");  // Takes precedence.
  EXPECT_EQ(EosTokenIds(scratch.path(), 100), std::vector<int32_t>({3, 9}));
  write("generation_config.json", R"({"eos_token_id": 100})");
  EXPECT_THROW(EosTokenIds(scratch.path(), 100), InputError);
  write("generation_config.json", R"({"eos_token_id": "x"})");
  EXPECT_THROW(EosTokenIds(scratch.path(), 100), InputError);
  write("generation_config.json", R"({"do_sample": false})");  // No id here: config.json's.
  EXPECT_EQ(EosTokenIds(scratch.path(), 100), std::vector<int32_t>({7}));
}

TEST(GenerateTest, PickToken) {
  const std::vector<float> ties = {1, 3, 3, 2};
  SplitMix64 rng(1);
  EXPECT_EQ(PickToken(ties.data(), 4, {}, rng), 1);  // Greedy: the first argmax.
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  for (uint64_t seed = 0; seed < 20; ++seed) {
    SplitMix64 r(seed);
    EXPECT_EQ(PickToken(logits.data(), 3, {1.0, 1e-9, seed}, r), 0);  // Nucleus of one.
  }
  auto frequencies = [&](const SamplingOptions& o) {
    SplitMix64 r(o.seed);
    std::vector<double> f(3);
    const int draws = 40000;
    for (int i = 0; i < draws; ++i) f[static_cast<size_t>(PickToken(logits.data(), 3, o, r))] += 1;
    for (double& x : f) x /= draws;
    return f;
  };
  const auto full = frequencies({1.0, 1.0, 42});
  EXPECT_NEAR(full[0], 0.5, 0.01);
  EXPECT_NEAR(full[1], 0.3, 0.01);
  EXPECT_NEAR(full[2], 0.2, 0.01);
  const auto nucleus = frequencies({1.0, 0.7, 42});  // {0.5, 0.3} reaches 0.7: renormalised.
  EXPECT_NEAR(nucleus[0], 0.625, 0.01);
  EXPECT_NEAR(nucleus[1], 0.375, 0.01);
  EXPECT_EQ(nucleus[2], 0.0);
  const auto hot = frequencies({2.0, 1.0, 42});  // p ~ sqrt(p): 0.4167, 0.3227, 0.2635.
  const double z = std::sqrt(0.5) + std::sqrt(0.3) + std::sqrt(0.2);
  EXPECT_NEAR(hot[0], std::sqrt(0.5) / z, 0.01);
  EXPECT_NEAR(hot[2], std::sqrt(0.2) / z, 0.01);
  // Seeded: the same draws again.
  const auto dir = test::DataDir() / "qwen2-tiny/tied-bf16";
  Model model = Model::Load(dir);
  const std::vector<int32_t> prompt = {5, 17, 300};
  const SamplingOptions sampling{0.8, 0.9, 1234};
  const DecodeRun a = Generate(model, prompt, nullptr, 12, sampling, false);
  const DecodeRun b = Generate(model, prompt, nullptr, 12, sampling, false);
  EXPECT_EQ(a.tokens, b.tokens);
  const DecodeRun greedy = Generate(model, prompt, nullptr, 12, {}, false);
  EXPECT_NE(a.tokens, greedy.tokens);
}

// Forward with each layer's K and V replaced by QuantizeLayer's values (the
// kvq ppl path), for the CLI test's independent KL.
struct QuantHook : LayerHook {
  const ModelConfig* c = nullptr;
  const Strategy* s = nullptr;
  void OnKV(LayerKV& kv) override {
    LayerContext ctx;
    ctx.num_kv_heads = c->num_kv_heads;
    ctx.head_dim = c->head_dim;
    ctx.chunk_len = kv.tokens;
    std::vector<float> buf(static_cast<size_t>(kv.tokens * c->num_kv_heads * c->head_dim));
    for (float* x : {kv.k, kv.v}) {
      ToHeadMajor(x, kv.tokens, c->num_kv_heads, c->head_dim, buf.data());
      QuantizeLayer(*s, x == kv.k ? KvTensor::kK : KvTensor::kV, kv.layer, ctx, buf, buf);
      ToTokenMajor(buf.data(), kv.tokens, c->num_kv_heads, c->head_dim, x);
    }
  }
};

std::vector<double> LogSoftmax(const float* logits, int64_t V) {
  double max = *std::max_element(logits, logits + V), sum = 0;
  for (int64_t v = 0; v < V; ++v) sum += std::exp(logits[v] - max);
  std::vector<double> out(static_cast<size_t>(V));
  for (int64_t v = 0; v < V; ++v) out[static_cast<size_t>(v)] = logits[v] - max - std::log(sum);
  return out;
}

TEST(GenerateCliTest, JsonAndCsvAgainstIndependentComputations) {
  test::ScratchDir scratch;
  const auto dir = test::DataDir() / "qwen2-tiny/tied-bf16";
  const auto tokenizer = test::RepoDataDir() / "tokenizer/qwen2.5/tokenizer.json";
  const auto result = test::RunKvq(
      "generate --model " + dir.string() + " --input-ids " + (dir / "input_ids.json").string() +
      " --tokens 8 --tokenizer " + tokenizer.string() +
      " --strategy 'int8:token;int4:g8:token' --max-new-tokens 6 --json " +
      (scratch / "g.json").string() + " --csv " + (scratch / "g.csv").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto j = nlohmann::json::parse(ReadTextFile(scratch / "g.json"));
  EXPECT_EQ(j.at("prompt_tokens"), 8);
  ASSERT_EQ(j.at("strategies").size(), 2u);

  Model model = Model::Load(dir);
  const ModelConfig& c = model.config();
  const int64_t V = c.vocab_size;
  std::vector<int32_t> prompt = ReadIds(dir / "input_ids.json");
  prompt.resize(8);
  const Tokenizer tok = Tokenizer::Load(tokenizer);
  const std::vector<int32_t> base = j.at("baseline").at("tokens").get<std::vector<int32_t>>();
  ASSERT_EQ(base.size(), 6u);
  EXPECT_EQ(j.at("baseline").at("text"), tok.Decode(base));

  // The fp16-cache and each strategy's logits by full forward passes over
  // prompt + baseline tokens, with the ppl path's quantization hook.
  std::vector<int32_t> seq = prompt;
  seq.insert(seq.end(), base.begin(), base.end() - 1);
  const auto T = static_cast<int64_t>(seq.size());
  auto forward_logits = [&](const char* spec) {
    const Strategy s = Strategy::Parse(spec);
    QuantHook hook;
    hook.c = &c;
    hook.s = &s;
    std::vector<float> hidden, logits(static_cast<size_t>(T * V));
    model.Forward(seq, T, &hook, &hidden);
    model.Logits(hidden.data(), T, logits.data());
    return logits;
  };
  const std::vector<float> fp16 = forward_logits("fp16");
  for (size_t i = 0; i < base.size(); ++i) {  // The baseline is greedy on the fp16 cache.
    const float* row = fp16.data() + (7 + i) * V;
    EXPECT_EQ(base[i], std::max_element(row, row + V) - row);
  }
  // Cache bytes by hand: 2 layers x 2 kv heads x (K, V), head_dim 16, 13
  // tokens cached (the last generated one is never fed back).
  const double expected_bytes[] = {13 * 8 * 20.0, 8 * (8 * 24.0 + 5 * 32.0)};
  EXPECT_EQ(j.at("baseline").at("cache_bytes"), 13 * 8 * 32.0);
  const char* specs[] = {"int8:token", "int4:g8:token"};
  for (size_t s = 0; s < 2; ++s) {
    const auto& r = j.at("strategies")[s];
    SCOPED_TRACE(specs[s]);
    EXPECT_EQ(r.at("strategy"), specs[s]);
    EXPECT_EQ(r.at("cache_bytes"), expected_bytes[s]);
    EXPECT_GT(r.at("tokens_per_s").get<double>(), 0);
    const auto tokens = r.at("tokens").get<std::vector<int32_t>>();
    EXPECT_EQ(r.at("text"), tok.Decode(tokens));
    const Strategy strategy = Strategy::Parse(specs[s]);
    EXPECT_EQ(tokens, Generate(model, prompt, &strategy, 6, {}, false).tokens);
    int matches = 0;
    int64_t first = -1;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (tokens[i] == base[i]) {
        ++matches;
      } else if (first < 0) {
        first = static_cast<int64_t>(i);
      }
    }
    EXPECT_DOUBLE_EQ(r.at("match_fraction").get<double>(), matches / 6.0);
    if (first < 0) {
      EXPECT_TRUE(r.at("first_divergence").is_null());
    } else {
      EXPECT_EQ(r.at("first_divergence"), first);
    }
    EXPECT_EQ(r.at("rules")[0].at("rule"), s == 0 ? "per-token" : "token-groups");
    if (s == 0) {
      // int8:token is quantized per token: the teacher-forced KL equals the
      // full forward pass's, computed here in double.
      const std::vector<float> quant = forward_logits(specs[s]);
      double sum = 0;
      for (size_t i = 0; i < base.size(); ++i) {
        const auto lp = LogSoftmax(fp16.data() + (7 + i) * V, V);
        const auto lq = LogSoftmax(quant.data() + (7 + i) * V, V);
        double kl = 0;
        for (int64_t v = 0; v < V; ++v) {
          kl += std::exp(lp[static_cast<size_t>(v)]) *
                (lp[static_cast<size_t>(v)] - lq[static_cast<size_t>(v)]);
        }
        EXPECT_NEAR(r.at("kl")[i].get<double>(), kl, 1e-6 + 1e-3 * kl) << "step " << i;
        sum += kl;
      }
      EXPECT_NEAR(r.at("kl_mean").get<double>(), sum / 6, 1e-6 + 1e-3 * sum / 6);
      EXPECT_GT(sum, 0);
    }
  }
  const std::string csv = ReadTextFile(scratch / "g.csv");
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "strategy,new_tokens,stop_reason,first_divergence,match_fraction,kl_mean,tokens_per_s,"
            "cache_bytes,rules,text");
  EXPECT_NE(csv.find(",2080,int8:token=per-token,"), std::string::npos) << csv;
  EXPECT_NE(csv.find(",int4:g8:token=token-groups,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\nint8:token,6,length,"), std::string::npos) << csv;
  EXPECT_NE(csv.find(",2080,"), std::string::npos) << csv;

  // --prompt TEXT through the tokenizer: the same tokens as the ids it encodes to.
  const auto text =
      test::RunKvq("generate --model " + dir.string() + " --tokenizer " + tokenizer.string() +
                   " --prompt 'a b' --strategy int8:token --max-new-tokens 3 --json " +
                   (scratch / "p.json").string());
  ASSERT_EQ(text.exit_code, 0) << text.output;
  const auto pj = nlohmann::json::parse(ReadTextFile(scratch / "p.json"));
  const std::vector<int32_t> encoded = tok.Encode("a b");
  EXPECT_EQ(pj.at("prompt_tokens"), encoded.size());
  const Strategy int8 = Strategy::Parse("int8:token");
  EXPECT_EQ(pj.at("strategies")[0].at("tokens").get<std::vector<int32_t>>(),
            Generate(model, encoded, &int8, 3, {}, false).tokens);

  EXPECT_EQ(test::RunKvq("generate --model " + dir.string() + " --prompt a --input-ids " +
                         (dir / "input_ids.json").string() + " --strategy int8:token")
                .exit_code,
            2);
}

// The CLI stops at generation_config.json's eos_token_id and says so;
// --ignore-eos generates exactly --max-new-tokens.
TEST(GenerateCliTest, StopsAtEosUnlessIgnored) {
  test::ScratchDir scratch;
  const auto fixture = test::DataDir() / "qwen2-tiny/tied-bf16";
  const auto dir = scratch / "model";
  std::filesystem::create_directories(dir);
  for (const char* name : {"config.json", "model.safetensors", "input_ids.json"}) {
    std::filesystem::copy_file(fixture / name, dir / name);
  }
  Model model = Model::Load(dir);
  std::vector<int32_t> prompt = ReadIds(dir / "input_ids.json");
  prompt.resize(8);
  const Strategy fp16 = Strategy::Parse("fp16");
  const DecodeRun base = Generate(model, prompt, &fp16, 8, {}, false);
  const int32_t eos = base.tokens[2];
  const auto first = static_cast<size_t>(std::find(base.tokens.begin(), base.tokens.end(), eos) -
                                         base.tokens.begin());
  WriteTextFileAtomic(dir / "generation_config.json",
                      "{\"eos_token_id\": " + std::to_string(eos) + "}");
  const std::string args = "generate --model " + dir.string() + " --input-ids " +
                           (dir / "input_ids.json").string() +
                           " --tokens 8 --strategy int8:token --max-new-tokens 8 --json ";
  const auto stopped = test::RunKvq(args + (scratch / "s.json").string());
  ASSERT_EQ(stopped.exit_code, 0) << stopped.output;
  const auto s = nlohmann::json::parse(ReadTextFile(scratch / "s.json"));
  EXPECT_EQ(s.at("baseline").at("stop_reason"), "eos");
  EXPECT_EQ(s.at("baseline").at("tokens").get<std::vector<int32_t>>(),
            std::vector<int32_t>(base.tokens.begin(), base.tokens.begin() + first + 1));
  const auto ignored = test::RunKvq(args + (scratch / "i.json").string() + " --ignore-eos");
  ASSERT_EQ(ignored.exit_code, 0) << ignored.output;
  const auto i = nlohmann::json::parse(ReadTextFile(scratch / "i.json"));
  EXPECT_EQ(i.at("baseline").at("stop_reason"), "length");
  EXPECT_EQ(i.at("baseline").at("tokens").get<std::vector<int32_t>>(), base.tokens);
}

}  // namespace
}  // namespace kvq
