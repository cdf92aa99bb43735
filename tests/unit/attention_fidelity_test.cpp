// Attention fidelity metrics and `kvq attn`, checked against an independent
// double-precision reference: the test's own int8 quantizers (the reference
// system's strat1/strat3 recipe), naive attention in double and the metric
// formulas written out again.
#include "kvq/metrics/attention_fidelity.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvq/capture/dump.h"
#include "kvq/capture/synthetic.h"
#include "kvq/common/io.h"
#include "kvq/common/random.h"
#include "test_util.h"

namespace kvq {
namespace {

// A small Qwen-like dump: 2 layers, 4 query heads on 2 kv heads, two
// prompts of 128 tokens; layer 0's K heads carry outlier channels.
SyntheticDumpOptions SmallOptions() {
  SyntheticDumpOptions o;
  o.num_layers = 2;
  o.num_heads = 4;
  o.num_kv_heads = 2;
  o.head_dim = 64;
  o.tokens = 256;
  o.chunk_len = 128;
  o.outlier_heads = {{0, 0}, {0, 1}};
  return o;
}

// int8 symmetric over a range of values (the reference's strat1 per head,
// strat2 per token): s = 127 / amax, q = rint(x * s), y = q / s.
void Int8Qdq(float* x, int64_t n) {
  float amax = 0;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::abs(x[i]));
  if (amax == 0) return;
  const float s = 127.0f / amax;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::clamp(std::nearbyint(x[i] * s), -127.0f, 127.0f) / s;
  }
}

// Naive causal GQA attention in double; x: [heads, tokens, hd].
std::vector<double> NaiveAttention(const std::vector<float>& q, const std::vector<float>& k,
                                   const std::vector<float>& v, int heads, int kv_heads,
                                   int64_t tokens, int64_t chunk, int hd) {
  std::vector<double> out(q.size());
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<double> p;
  for (int h = 0; h < heads; ++h) {
    const int kvh = h / (heads / kv_heads);
    for (int64_t t = 0; t < tokens; ++t) {
      const int64_t c0 = t / chunk * chunk;
      p.assign(static_cast<size_t>(t - c0 + 1), 0.0);
      double mx = -INFINITY;
      for (int64_t j = c0; j <= t; ++j) {
        double dot = 0;
        for (int d = 0; d < hd; ++d) {
          dot += static_cast<double>(q[(h * tokens + t) * hd + d]) * k[(kvh * tokens + j) * hd + d];
        }
        p[j - c0] = dot * scale;
        mx = std::max(mx, p[j - c0]);
      }
      double sum = 0;
      for (double& x : p) sum += (x = std::exp(x - mx));
      for (int d = 0; d < hd; ++d) {
        double acc = 0;
        for (int64_t j = c0; j <= t; ++j) acc += p[j - c0] * v[(kvh * tokens + j) * hd + d];
        out[(h * tokens + t) * hd + d] = acc / sum;
      }
    }
  }
  return out;
}

struct Expected {
  double nmse = 0, cos = 0, cos_min = 2;
};

// The metric definitions, over heads [h0, h1) of [heads, tokens, hd] outputs.
Expected Metrics(const std::vector<double>& o, const std::vector<double>& oq, int h0, int h1,
                 int64_t tokens, int hd) {
  double err = 0, ref = 0, cos_sum = 0;
  Expected e;
  for (int h = h0; h < h1; ++h) {
    for (int64_t t = 0; t < tokens; ++t) {
      double dot = 0, aa = 0, bb = 0;
      for (int d = 0; d < hd; ++d) {
        const double a = o[(h * tokens + t) * hd + d], b = oq[(h * tokens + t) * hd + d];
        err += (a - b) * (a - b);
        ref += a * a;
        dot += a * b;
        aa += a * a;
        bb += b * b;
      }
      const double c = dot / std::sqrt(aa * bb);
      cos_sum += c;
      e.cos_min = std::min(e.cos_min, c);
    }
  }
  e.nmse = err / ref;
  e.cos = cos_sum / static_cast<double>((h1 - h0) * tokens);
  return e;
}

TEST(AttentionFidelityTest, VectorCosineConventions) {
  const float zero[3] = {0, 0, 0}, a[3] = {1, -2, 3}, b[3] = {-1, 2, -3}, c[3] = {0.1f, 0.7f, 3};
  EXPECT_EQ(VectorCosine(zero, zero, 3), 1.0);
  EXPECT_EQ(VectorCosine(zero, a, 3), 0.0);
  EXPECT_EQ(VectorCosine(a, zero, 3), 0.0);
  EXPECT_EQ(VectorCosine(a, a, 3), 1.0);
  EXPECT_EQ(VectorCosine(a, b, 3), -1.0);
  const double want = (0.1 * 1 - 2 * 0.7 + 9) / std::sqrt(14.0 * (0.01 + 0.49 + 9));
  EXPECT_NEAR(VectorCosine(a, c, 3), want, 1e-7);
}

TEST(AttentionFidelityTest, EmptyAndZeroReferenceConventions) {
  FidelityStats s;
  EXPECT_EQ(s.nmse(), 0.0);
  EXPECT_EQ(s.cos(), 1.0);
  s.sum_sq_err = 1;
  EXPECT_TRUE(std::isinf(s.nmse()));
}

class FidelityDumpTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    scratch_ = new test::ScratchDir;
    WriteSyntheticDump(Path(), SmallOptions());
  }
  static void TearDownTestSuite() { delete scratch_; }
  static std::filesystem::path Path() { return *scratch_ / "dump.safetensors"; }
  static test::ScratchDir* scratch_;
};
test::ScratchDir* FidelityDumpTest::scratch_ = nullptr;

TEST_F(FidelityDumpTest, Fp16OnFp16DumpIsExact) {
  const KvDump dump = KvDump::Open(Path());
  ASSERT_EQ(dump.info().dtype, DType::kF16);
  LayerReference ref;
  FidelityWorkspace ws;
  const Strategy fp16 = Strategy::Parse("fp16");
  for (int layer = 0; layer < dump.info().num_layers; ++layer) {
    ref.Load(dump, layer);
    const LayerFidelity f = EvaluateLayer(ref, fp16, ws);
    EXPECT_EQ(f.all.nmse(), 0.0);
    EXPECT_EQ(f.all.cos(), 1.0);
    EXPECT_EQ(f.all.cos_min, 1.0);
    EXPECT_EQ(f.all.max_abs, 0.0);
    for (const FidelityStats& h : f.heads) {
      EXPECT_EQ(h.nmse(), 0.0);
      EXPECT_EQ(h.cos(), 1.0);
    }
  }
}

TEST_F(FidelityDumpTest, Strat1AndStrat3MatchIndependentReference) {
  const KvDump dump = KvDump::Open(Path());
  const DumpInfo& info = dump.info();
  const int hd = info.head_dim;
  const int64_t T = info.tokens, per_head = T * hd;
  LayerReference ref;
  FidelityWorkspace ws;
  double cos1_layer0 = 0, cos3_layer0 = 0;
  for (int layer = 0; layer < info.num_layers; ++layer) {
    ref.Load(dump, layer);
    const auto o = NaiveAttention(ref.q, ref.k, ref.v, info.num_heads, info.num_kv_heads, T,
                                  info.chunk_len, hd);
    // strat1: K and V int8, one scale per kv head.
    std::vector<float> k1 = ref.k, v1 = ref.v;
    // strat3: K as strat1 except the reference's outlier heads (kept fp16,
    // and the dump is fp16 already); V int8 per token.
    std::vector<float> k3 = ref.k, v3 = ref.v;
    for (int h = 0; h < info.num_kv_heads; ++h) {
      Int8Qdq(k1.data() + h * per_head, per_head);
      Int8Qdq(v1.data() + h * per_head, per_head);
      const bool keep = (layer == 0) || (layer == 1 && h == 1);
      if (!keep) Int8Qdq(k3.data() + h * per_head, per_head);
    }
    for (int64_t row = 0; row < info.num_kv_heads * T; ++row) Int8Qdq(v3.data() + row * hd, hd);

    for (const auto& [name, k, v] : {std::tuple{"strat1", &k1, &v1}, {"strat3", &k3, &v3}}) {
      const LayerFidelity got = EvaluateLayer(ref, Strategy::Parse(name), ws);
      // The metrics of the kernel's own outputs, recomputed in double.
      const std::vector<double> o32(ref.out.begin(), ref.out.end());
      const std::vector<double> oq32(ws.out.begin(), ws.out.end());
      for (int h = 0; h <= info.num_heads; ++h) {
        const bool layer_row = h == info.num_heads;
        const FidelityStats& s = layer_row ? got.all : got.heads[h];
        const Expected e = layer_row ? Metrics(o32, oq32, 0, info.num_heads, T, hd)
                                     : Metrics(o32, oq32, h, h + 1, T, hd);
        EXPECT_NEAR(s.nmse(), e.nmse, 1e-6 * e.nmse) << name << " layer " << layer << " head " << h;
        EXPECT_NEAR(s.cos(), e.cos, 1e-6) << name << " layer " << layer << " head " << h;
        EXPECT_NEAR(s.cos_min, e.cos_min, 1e-6) << name << " layer " << layer << " head " << h;
      }
      // End to end: quantization and attention redone naively in double. The
      // fp32 kernel differs from double by ~1e-6 relative (scores up to ~50
      // in the outlier layer), which the metrics inherit.
      const auto oq =
          NaiveAttention(ref.q, *k, *v, info.num_heads, info.num_kv_heads, T, info.chunk_len, hd);
      const Expected all = Metrics(o, oq, 0, info.num_heads, T, hd);
      EXPECT_NEAR(got.all.nmse(), all.nmse, 1e-3 * all.nmse) << name << " layer " << layer;
      EXPECT_NEAR(got.all.cos(), all.cos, 1e-5) << name << " layer " << layer;
      EXPECT_NEAR(got.all.cos_min, all.cos_min, 1e-5) << name << " layer " << layer;
      if (layer == 0) (std::string(name) == "strat1" ? cos1_layer0 : cos3_layer0) = all.cos;
    }
  }
  // The outlier channels cost strat1 clearly more than strat3.
  EXPECT_LT(cos1_layer0, cos3_layer0 - 0.01);
  EXPECT_GT(cos3_layer0, 0.999);
}

TEST_F(FidelityDumpTest, PerKvHeadMatchesLayerEvaluation) {
  const KvDump dump = KvDump::Open(Path());
  const DumpInfo& info = dump.info();
  const int64_t per_head = info.tokens * info.head_dim;
  const int group = info.group_size();
  LayerReference ref;
  ref.Load(dump, 0);
  // Quantize only kv head 1 (strat1 recipe); head 0 keeps its values.
  std::vector<float> k = ref.k, v = ref.v;
  Int8Qdq(k.data() + per_head, per_head);
  Int8Qdq(v.data() + per_head, per_head);
  FidelityWorkspace ws;
  const LayerFidelity layer = EvaluateLayerWith(ref, k, v, ws);
  const auto unit = EvaluateKvHead(ref, 1, std::span(k).subspan(per_head, per_head),
                                   std::span(v).subspan(per_head, per_head), ws);
  ASSERT_EQ(unit.size(), static_cast<size_t>(group));
  for (int i = 0; i < group; ++i) {
    const FidelityStats& want = layer.heads[group + i];
    EXPECT_EQ(unit[i].sum_sq_err, want.sum_sq_err);
    EXPECT_EQ(unit[i].sum_sq_ref, want.sum_sq_ref);
    EXPECT_EQ(unit[i].sum_cos, want.sum_cos);
    EXPECT_EQ(unit[i].cos_min_head, group + i);
    EXPECT_EQ(unit[i].cos_min_token, want.cos_min_token);
  }
  // Heads reading the untouched kv head did not move.
  for (int h = 0; h < group; ++h) EXPECT_EQ(layer.heads[h].sum_sq_err, 0.0);
}

// The planner's shared-softmax path for V candidates: each V's stats are
// bit for bit those of EvaluateKvHead with that V alone.
TEST_F(FidelityDumpTest, ManyVMatchesOneEvaluationPerV) {
  const KvDump dump = KvDump::Open(Path());
  const int64_t per_head = dump.info().tokens * dump.info().head_dim;
  LayerReference ref;
  ref.Load(dump, 0);
  const std::span<const float> k_head = std::span<const float>(ref.k).subspan(per_head, per_head);
  std::vector<std::vector<float>> vs;
  for (int c = 0; c < 3; ++c) {
    std::vector<float> v(ref.v.begin() + per_head, ref.v.begin() + 2 * per_head);
    // A different error per V: int8 round trips of scaled copies.
    for (float& x : v) x *= 1.0f + 0.25f * static_cast<float>(c);
    Int8Qdq(v.data(), per_head);
    vs.push_back(std::move(v));
  }
  std::vector<std::span<const float>> spans(vs.begin(), vs.end());
  FidelityWorkspace ws;
  const auto many = EvaluateKvHeadManyV(ref, 1, k_head, spans, ws);
  ASSERT_EQ(many.size(), vs.size());
  for (size_t c = 0; c < vs.size(); ++c) {
    const auto one = EvaluateKvHead(ref, 1, k_head, vs[c], ws);
    ASSERT_EQ(many[c].size(), one.size());
    for (size_t i = 0; i < one.size(); ++i) {
      EXPECT_EQ(many[c][i].sum_sq_err, one[i].sum_sq_err) << c;
      EXPECT_EQ(many[c][i].sum_sq_ref, one[i].sum_sq_ref) << c;
      EXPECT_EQ(many[c][i].sum_cos, one[i].sum_cos) << c;
      EXPECT_EQ(many[c][i].vectors, one[i].vectors) << c;
      EXPECT_EQ(many[c][i].cos_min, one[i].cos_min) << c;
      EXPECT_EQ(many[c][i].cos_min_head, one[i].cos_min_head) << c;
      EXPECT_EQ(many[c][i].cos_min_token, one[i].cos_min_token) << c;
      EXPECT_EQ(many[c][i].max_abs, one[i].max_abs) << c;
    }
    EXPECT_GT(one[0].sum_sq_err, 0.0) << c;
  }
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST_F(FidelityDumpTest, CliWritesCsvAndJsonRows) {
  test::ScratchDir dir;
  const auto r = test::RunKvq("attn --kv " + Path().string() + " --strategy fp16,strat1 --csv " +
                              (dir / "a.csv").string() + " --json " + (dir / "a.json").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("verdict fp16: worst layer"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("all 2 layers above the floor 0.99"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("verdict strat1"), std::string::npos) << r.output;
  const auto lines = Lines(ReadTextFile(dir / "a.csv"));
  // Header, then per strategy and layer: the layer row and 4 head rows.
  ASSERT_EQ(lines.size(), 1u + 2 * 2 * 5);
  EXPECT_EQ(lines[0], "strategy,layer,head,nmse,cos,cos_min");
  EXPECT_EQ(lines[1], "fp16,0,all,0.000000e+00,1.000000,1.000000");
  EXPECT_EQ(lines[2], "fp16,0,0,0.000000e+00,1.000000,1.000000");
  EXPECT_EQ(lines[6], "fp16,1,all,0.000000e+00,1.000000,1.000000");
  EXPECT_EQ(lines[11].rfind("strat1,0,all,", 0), 0u);
  // The strat1 layer-0 row carries the library's figures.
  const KvDump dump = KvDump::Open(Path());
  LayerReference ref;
  ref.Load(dump, 0);
  FidelityWorkspace ws;
  const LayerFidelity f = EvaluateLayer(ref, Strategy::Parse("strat1"), ws);
  EXPECT_EQ(lines[11], Lines(FidelityCsv(LayerRows("strat1", f)))[1]);
  const std::string json = ReadTextFile(dir / "a.json");
  EXPECT_NE(json.find("\"schema\": \"kvq.attn.v1\""), std::string::npos);
  EXPECT_NE(json.find("\"head\": \"all\""), std::string::npos);
}

TEST_F(FidelityDumpTest, CliLayerSelectionAndErrors) {
  test::ScratchDir dir;
  auto r = test::RunKvq("attn --kv " + Path().string() + " --strategy fp16 --layers spot --csv " +
                        (dir / "spot.csv").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // spot = 0, 7, 8, 23: only layer 0 exists here.
  EXPECT_EQ(Lines(ReadTextFile(dir / "spot.csv")).size(), 1u + 5);

  r = test::RunKvq("attn --kv " + Path().string() + " --strategy fp16 --layers 0,5 --csv " +
                   (dir / "bad.csv").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("--layers: layer 5 does not exist"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "bad.csv"));

  r = test::RunKvq("attn --kv " + Path().string() + " --strategy fp16 --csv " +
                   (dir / "no" / "such" / "dir.csv").string());
  EXPECT_EQ(r.exit_code, 1);  // an unwritable output is a runtime failure in every command
  EXPECT_NE(r.output.find("--csv: "), std::string::npos) << r.output;

  r = test::RunKvq("attn --kv " + Path().string() + " --strategy fp16 --layers x");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("--layers: 'x'"), std::string::npos) << r.output;

  r = test::RunKvq("attn --kv " + Path().string() + " --strategy nonsense");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("nonsense"), std::string::npos) << r.output;

  r = test::RunKvq("attn --kv " + (dir / "missing.safetensors").string() + " --strategy fp16");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("missing.safetensors"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace kvq

namespace kvq {
namespace {

TEST(AttentionByPosition, BucketsDoubleFrom64) {
  const std::vector<std::tuple<int64_t, int>> cases = {
      {0, 0}, {63, 0}, {64, 1}, {127, 1}, {128, 2}, {255, 2}, {256, 3}, {32767, 9}, {32768, 10}};
  for (const auto& [position, bucket] : cases) EXPECT_EQ(PositionBucket(position), bucket);
  EXPECT_EQ(PositionBucketBegin(0), 0);
  EXPECT_EQ(PositionBucketEnd(0), 64);
  EXPECT_EQ(PositionBucketBegin(1), 64);
  EXPECT_EQ(PositionBucketEnd(1), 128);
  EXPECT_EQ(PositionBucketBegin(3), 256);
  EXPECT_EQ(PositionBucketEnd(3), 512);
}

// Per-bucket NMSE and cos recomputed here from the full attention outputs
// (the reference's and the quantized ones), with the formulas written out.
TEST(AttentionByPosition, MatchesRecomputationFromFullOutputs) {
  const int heads = 4, kv_heads = 2, hd = 16;
  const int64_t chunk = 300, T = 2 * chunk;  // Buckets [0,64) .. [256,300).
  SplitMix64 rng(3);
  auto fill = [&rng](std::vector<float>& x, size_t n) {
    x.resize(n);
    for (float& v : x) v = static_cast<float>(rng.Normal());
  };
  const Strategy strategy = Strategy::Parse("strat1");
  std::vector<LayerFidelity> layers;
  std::vector<std::vector<double>> expected_err(2), expected_ref(2), expected_cos(2);
  for (int layer = 0; layer < 2; ++layer) {
    std::vector<float> q, k, v;
    fill(q, static_cast<size_t>(heads * T * hd));
    fill(k, static_cast<size_t>(kv_heads * T * hd));
    fill(v, k.size());
    LayerContext ctx;
    ctx.num_kv_heads = kv_heads;
    ctx.head_dim = hd;
    ctx.chunk_len = chunk;
    LayerReference ref;
    ref.Set(layer, {heads, kv_heads, hd, T, chunk, 0.25f}, q, k, v, ctx);
    FidelityWorkspace ws;
    layers.push_back(EvaluateLayer(ref, strategy, ws));
    const LayerFidelity& f = layers.back();
    ASSERT_EQ(f.positions.size(), 4u);
    std::vector<double> err(4), sq(4), cos(4);
    std::vector<int64_t> vectors(4);
    for (int h = 0; h < heads; ++h) {
      for (int64_t t = 0; t < T; ++t) {
        const int64_t p = t % chunk;
        const size_t b = p < 64 ? 0 : p < 128 ? 1 : p < 256 ? 2 : 3;
        double dot = 0, aa = 0, bb = 0;
        for (int d = 0; d < hd; ++d) {
          const double a = ref.out[static_cast<size_t>((h * T + t) * hd + d)];
          const double o = ws.out[static_cast<size_t>((h * T + t) * hd + d)];
          err[b] += (a - o) * (a - o);
          sq[b] += a * a;
          dot += a * o;
          aa += a * a;
          bb += o * o;
        }
        cos[b] += dot / std::sqrt(aa * bb);
        ++vectors[b];
      }
    }
    const int64_t widths[] = {64, 64, 128, 44};
    for (size_t b = 0; b < 4; ++b) {
      const FidelityStats& s = f.positions[b];
      EXPECT_EQ(s.vectors, widths[b] * 2 * heads) << b;
      EXPECT_EQ(s.vectors, vectors[b]);
      EXPECT_GT(err[b], 0) << b;  // int8 shows.
      EXPECT_NEAR(s.nmse(), err[b] / sq[b], 1e-12 * err[b] / sq[b]) << "layer " << layer;
      EXPECT_NEAR(s.cos(), cos[b] / static_cast<double>(vectors[b]), 1e-12) << b;
    }
    expected_err[static_cast<size_t>(layer)] = err;
    expected_ref[static_cast<size_t>(layer)] = sq;
    expected_cos[static_cast<size_t>(layer)] = cos;
  }
  // Rows: layer 0's buckets, layer 1's, then all layers merged; ends clipped
  // at the prompt length.
  const std::vector<PositionRow> rows = PositionRows("strat1", layers, chunk);
  ASSERT_EQ(rows.size(), 12u);
  EXPECT_EQ(rows[3].layer, 0);
  EXPECT_EQ(rows[3].begin, 256);
  EXPECT_EQ(rows[3].end, 300);
  EXPECT_EQ(rows[8].layer, -1);
  for (size_t b = 0; b < 4; ++b) {
    const FidelityStats& all = rows[8 + b].stats;
    const double err = expected_err[0][b] + expected_err[1][b];
    const double sq = expected_ref[0][b] + expected_ref[1][b];
    EXPECT_NEAR(all.nmse(), err / sq, 1e-12 * err / sq) << b;
    EXPECT_NEAR(all.cos(),
                (expected_cos[0][b] + expected_cos[1][b]) / static_cast<double>(all.vectors),
                1e-12);
  }
  const std::vector<std::string> csv = Lines(PositionCsv(rows));
  EXPECT_EQ(csv[0], "strategy,layer,position_begin,position_end,vectors,nmse,cos");
  EXPECT_EQ(csv[9].rfind("strat1,all,0,64,1024,", 0), 0u) << csv[9];
}

TEST_F(FidelityDumpTest, CliWritesErrorByPosition) {
  test::ScratchDir dir;
  const auto r =
      test::RunKvq("attn --kv " + Path().string() + " --strategy strat1 --json " +
                   (dir / "a.json").string() + " --positions-csv " + (dir / "p.csv").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const KvDump dump = KvDump::Open(Path());
  LayerReference ref;
  FidelityWorkspace ws;
  std::vector<LayerFidelity> layers;
  for (int layer = 0; layer < 2; ++layer) {
    ref.Load(dump, layer);
    layers.push_back(EvaluateLayer(ref, Strategy::Parse("strat1"), ws));
  }
  // Prompts of 128: buckets [0,64) and [64,128), per layer and all.
  EXPECT_EQ(ReadTextFile(dir / "p.csv"), PositionCsv(PositionRows("strat1", layers, 128)));
  EXPECT_EQ(Lines(ReadTextFile(dir / "p.csv")).size(), 1u + 3 * 2);
  const auto json = nlohmann::json::parse(ReadTextFile(dir / "a.json"));
  ASSERT_EQ(json.at("positions").size(), 6u);
  EXPECT_EQ(json.at("positions")[4].at("layer"), "all");
  EXPECT_EQ(json.at("positions")[5].at("position_begin"), 64);
  EXPECT_EQ(json.at("positions")[5].at("position_end"), 128);
}

}  // namespace
}  // namespace kvq
