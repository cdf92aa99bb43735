// Strategies and the layer API against the reference system's semantics,
// recomputed here in the plainest possible way.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "kvq/capture/dump.h"
#include "kvq/capture/synthetic.h"
#include "kvq/common/error.h"
#include "kvq/quant/quantize.h"
#include "kvq/quant/strategy.h"
#include "test_util.h"

namespace kvq {
namespace {

SyntheticDumpOptions SmallQwen() {
  SyntheticDumpOptions o;
  o.num_layers = 9;  // Up to layer 8, the last outlier head of strat3.
  o.tokens = 256;
  o.chunk_len = 128;
  return o;
}

// The reference system: scale = 127 / max|x| over the group, q = rint(x * scale)
// as int8, x' = q / scale; MSE = SSE / (tokens * head_dim).
double ReferenceSse(const float* x, int64_t tokens, int d, bool per_token) {
  double sse = 0;
  auto group = [&](const float* g, int64_t n) {
    float amax = 0;
    for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(g[i]));
    const float scale = 127.0f / amax;
    for (int64_t i = 0; i < n; ++i) {
      const auto q = static_cast<int8_t>(std::nearbyint(g[i] * scale));
      const float back = amax == 0 ? 0.0f : static_cast<float>(q) / scale;
      sse += (static_cast<double>(g[i]) - back) * (static_cast<double>(g[i]) - back);
    }
  };
  if (per_token) {
    for (int64_t t = 0; t < tokens; ++t) group(x + t * d, d);
  } else {
    group(x, tokens * d);
  }
  return sse;
}

TEST(QuantStrategy, Strat1AndStrat2MatchAnIndependentComputation) {
  test::ScratchDir dir;
  const auto options = SmallQwen();
  WriteSyntheticDump(dir / "kv.safetensors", options);
  const KvDump dump = KvDump::Open(dir / "kv.safetensors");
  const DumpInfo& info = dump.info();
  std::vector<float> x(static_cast<size_t>(info.num_kv_heads * info.tokens * info.head_dim));
  std::vector<float> y(x.size());
  const int64_t per_head = info.tokens * info.head_dim;
  for (int preset : {1, 2}) {
    const Strategy s = Strategy::Parse(std::to_string(preset));
    for (int layer : {0, 3, 8}) {
      for (KvTensor t : {KvTensor::kK, KvTensor::kV}) {
        t == KvTensor::kK ? dump.ReadK(layer, x) : dump.ReadV(layer, x);
        const LayerContext ctx = DumpLayerContext(info, dump.ReadKBias(layer));
        QuantizeLayer(s, t, layer, ctx, x, y);
        for (int h = 0; h < info.num_kv_heads; ++h) {
          double sse = 0;
          for (int64_t i = 0; i < per_head; ++i) {
            const double e = static_cast<double>(x[h * per_head + i]) - y[h * per_head + i];
            sse += e * e;
          }
          const double expected =
              ReferenceSse(x.data() + h * per_head, info.tokens, info.head_dim, preset == 2);
          EXPECT_NEAR(sse, expected, 1e-9 * expected)
              << "strat" << preset << " layer " << layer << " head " << h;
          EXPECT_GT(sse, 0);
        }
      }
    }
  }
}

TEST(QuantStrategy, Strat3KeepsTheOutlierHeadsFp16) {
  const Strategy s = Strategy::Parse("strat3");
  EXPECT_EQ(s.preset_number, 3);
  for (int l = 0; l < 24; ++l) {
    for (int h = 0; h < 2; ++h) {
      const bool fp16 = (l == 0) || (l == 1 && h == 1) || l == 2 || (l == 8 && h == 0);
      EXPECT_EQ(s.Format(KvTensor::kK, l, h).Name(), fp16 ? "fp16" : "int8:tensor") << l << h;
      EXPECT_EQ(s.Format(KvTensor::kV, l, h).Name(), "int8:token");
    }
  }
  const KvGeometry qwen{24, 2, 64};
  EXPECT_EQ(Strategy::Parse("fp16").Cost(qwen, 4096).per_token, 12288);
  EXPECT_EQ(Strategy::Parse("1").Cost(qwen, 4096).per_token, 6144);
  EXPECT_EQ(Strategy::Parse("1").Cost(qwen, 4096).per_sequence, 96 * 4);
  EXPECT_EQ(Strategy::Parse("2").Cost(qwen, 4096).per_token, 6528);
  EXPECT_EQ(s.Cost(qwen, 4096).per_token, 6720);
}

TEST(QuantStrategy, SpecOverridesAndLists) {
  const Strategy s =
      Strategy::Parse("k=int8:tensor,v=int8:token,k[0.0]=fp16,k[8.*]=q4_0,v[1-2.1]=nvfp4");
  EXPECT_EQ(s.Format(KvTensor::kK, 0, 0).Name(), "fp16");
  EXPECT_EQ(s.Format(KvTensor::kK, 0, 1).Name(), "int8:tensor");
  EXPECT_EQ(s.Format(KvTensor::kK, 8, 1).Name(), "q4_0");
  EXPECT_EQ(s.Format(KvTensor::kV, 2, 1).Name(), "nvfp4");
  EXPECT_EQ(s.Format(KvTensor::kV, 3, 1).Name(), "int8:token");
  EXPECT_EQ(s.preset_number, 0);

  const auto list =
      ParseStrategyList("1,2,strat3,k[0-2.*]=fp16,k=int8:channel,v=int4:g32:token;int8:token");
  ASSERT_EQ(list.size(), 5u);
  EXPECT_EQ(list[0].preset_number, 1);
  EXPECT_EQ(list[2].name, "strat3,k[0-2.*]=fp16");
  EXPECT_EQ(list[2].Format(KvTensor::kK, 8, 1).Name(), "int8:tensor");
  EXPECT_EQ(list[2].Format(KvTensor::kK, 1, 0).Name(), "fp16");
  EXPECT_EQ(list[3].name, "k=int8:channel,v=int4:g32:token");
  EXPECT_EQ(list[4].Format(KvTensor::kV, 5, 0).Name(), "int8:token");
  EXPECT_EQ(Strategy::Parse("strat3,v=int4:g32:dim").Format(KvTensor::kV, 0, 0).Name(),
            "int4:g32:dim");
  EXPECT_EQ(ParseStrategyList("k=int8:channel,v=int4:g32:token").size(), 1u);
}

void ExpectInputError(const std::string& spec, const std::string& fragment) {
  try {
    Strategy::Parse(spec).Validate({24, 2, 64});
    ADD_FAILURE() << spec << " was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)
        << spec << " -> " << e.what();
  }
}

TEST(QuantStrategy, BadSpecsPointAtTheOffendingPart) {
  ExpectInputError("k=int8:tensor,v=int8:tokn", "'tokn'");
  ExpectInputError("k=int8:tensor,x=fp16", "'x' is not a target");
  ExpectInputError("k[0.a]=fp16", "'[0.a]'");
  ExpectInputError("k[30.0]=fp16", "layer out of range");
  ExpectInputError("v=int8:token+prerope", "K only");
  ExpectInputError("strat4", "'strat4' is neither a preset");
  ExpectInputError("k=int9:tensor", "'int9'");
  ExpectInputError("k=int4:g48:dim", "multiple of 48");
  ExpectInputError("k=int4:g32", "'g32' must be followed by :dim");
  ExpectInputError("k=fp8e4m3+wobble", "'wobble' is not a modifier");
  ExpectInputError("strat1,int8:token", "item 'int8:token' needs the form");
}

TEST(QuantStrategy, PresetsApplyToAnyGeometry) {
  // strat3 names K heads up to (8, 0); on a 2-layer model with one kv head
  // the rules past the geometry match nothing instead of refusing the preset.
  const Strategy s = Strategy::Parse("strat3");
  for (const KvGeometry g : {KvGeometry{2, 2, 64}, KvGeometry{2, 1, 64}, KvGeometry{1, 1, 32}}) {
    EXPECT_NO_THROW(s.Validate(g)) << g.num_layers << "x" << g.num_kv_heads;
  }
  EXPECT_EQ(s.Format(KvTensor::kK, 0, 0).Name(), "fp16");
  EXPECT_EQ(s.Format(KvTensor::kK, 1, 0).Name(), "int8:tensor");
  EXPECT_EQ(s.Format(KvTensor::kK, 1, 1).Name(), "fp16");
  // K: three fp16 heads (2D bytes) and one int8:tensor (D); V: four int8:token (D + 4).
  EXPECT_EQ(s.Cost({2, 2, 64}, 4096).per_token, 3 * 128 + 64 + 4 * (64 + 4));
  // Selectors the user wrote are still checked, also after a preset base.
  EXPECT_THROW(Strategy::Parse("k[8.0]=fp16").Validate({2, 2, 64}), InputError);
  EXPECT_THROW(Strategy::Parse("strat3,k[8.0]=fp16").Validate({2, 2, 64}), InputError);
  EXPECT_THROW(Strategy::Parse("strat1,v[0.1]=fp16").Validate({2, 1, 64}), InputError);
}

TEST(QuantStrategy, PlanFilesRoundTripAndRefuseOtherGeometry) {
  test::ScratchDir dir;
  const KvGeometry g{24, 2, 64};
  const Strategy s = Strategy::Parse("strat3,v[4.*]=int4:g32:dim+had");
  { std::ofstream(dir / "plan.json") << PlanJson(s, g); }
  const Strategy plan = Strategy::Parse("plan:" + (dir / "plan.json").string());
  for (KvTensor t : {KvTensor::kK, KvTensor::kV}) {
    for (int l = 0; l < 24; ++l) {
      for (int h = 0; h < 2; ++h) EXPECT_EQ(plan.Format(t, l, h), s.Format(t, l, h));
    }
  }
  EXPECT_EQ(plan.Cost(g, 512).per_token, s.Cost(g, 512).per_token);
  plan.Validate(g);
  EXPECT_THROW(plan.Validate({28, 4, 128}), InputError);
  EXPECT_THROW(Strategy::Parse("plan:" + (dir / "missing.json").string()), InputError);
}

TEST(QuantStrategy, CalibratedStatsGivePromptByPromptTheWholeSequenceScale) {
  auto o = SmallQwen();
  const SyntheticLayer layer = MakeSyntheticLayer(o, 0);
  LayerContext ctx = DumpLayerContext(o.Info(), layer.k_bias);
  const Strategy s = Strategy::Parse("k=int8:tensor,v=fp8e4m3");
  std::vector<float> whole(layer.k.size());
  QuantizeLayer(s, KvTensor::kK, 0, ctx, layer.k, whole);
  const LayerStats stats = CalibrateLayer(s, KvTensor::kK, 0, ctx, layer.k);
  // Prompt 1 alone ([heads, chunk_len, head_dim]) with the whole sequence's stats.
  const int64_t per_head = o.tokens * o.head_dim, chunk = o.chunk_len * o.head_dim;
  std::vector<float> prompt(static_cast<size_t>(o.num_kv_heads * chunk)), out(prompt.size());
  for (int h = 0; h < o.num_kv_heads; ++h) {
    std::copy_n(layer.k.data() + h * per_head + chunk, chunk, prompt.data() + h * chunk);
  }
  QuantizeLayer(s, KvTensor::kK, 0, ctx, prompt, out, &stats);
  for (int h = 0; h < o.num_kv_heads; ++h) {
    for (int64_t i = 0; i < chunk; ++i) {
      ASSERT_EQ(out[h * chunk + i], whole[h * per_head + chunk + i]) << h << " " << i;
    }
  }
  // Without stats the prompt's own (smaller) amax gives a different result.
  QuantizeLayer(s, KvTensor::kK, 0, ctx, prompt, out);
  int differ = 0;
  for (int64_t i = 0; i < chunk; ++i) differ += out[i] != whole[chunk + i];
  EXPECT_GT(differ, 0);
}

TEST(QuantStrategy, NonFiniteInputNamesLayerAndHead) {
  auto o = SmallQwen();
  SyntheticLayer layer = MakeSyntheticLayer(o, 2);
  layer.v[static_cast<size_t>(o.tokens * o.head_dim + 7)] = NAN;
  const LayerContext ctx = DumpLayerContext(o.Info(), layer.k_bias);
  try {
    QuantizeLayer(Strategy::Parse("strat2"), KvTensor::kV, 2, ctx, layer.v, layer.v);
    ADD_FAILURE() << "NaN accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("layer 2 v head 1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kvq
