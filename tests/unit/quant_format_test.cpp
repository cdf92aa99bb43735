// Formats: names, byte costs, and every fast kernel against its scalar
// reference (test-quantize-fns style: the table is iterated, so a new
// format is tested for free).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "kvq/common/error.h"
#include "kvq/common/half.h"
#include "kvq/common/random.h"
#include "kvq/model/rope.h"
#include "kvq/quant/format.h"
#include "kvq/quant/kernels.h"
#include "kvq/quant/quantize.h"
#include "test_util.h"

namespace kvq {
namespace {

// A float normal on the sequence these blocks were built with.
float Normal(SplitMix64& rng) { return static_cast<float>(rng.NormalOpen()); }

constexpr int kRows = 64;
constexpr int kDim = 64;

// Adversarial [kRows, kDim] blocks.
std::vector<std::pair<std::string, std::vector<float>>> Blocks() {
  std::vector<std::pair<std::string, std::vector<float>>> blocks;
  SplitMix64 rng(7);
  auto make = [&](const std::string& name, auto&& value) {
    std::vector<float> x(kRows * kDim);
    for (int t = 0; t < kRows; ++t) {
      for (int c = 0; c < kDim; ++c) x[t * kDim + c] = value(t, c);
    }
    blocks.emplace_back(name, x);
  };
  make("gauss", [&](int, int) { return Normal(rng); });
  make("outlier_channels",
       [&](int, int c) { return c == 5 || c == 40 ? 130.0f + Normal(rng) : Normal(rng); });
  make("all_zero", [](int, int) { return 0.0f; });
  make("negative_zero", [](int, int) { return -0.0f; });
  make("constant", [](int, int) { return 0.37f; });
  make("denormals", [&](int t, int c) {
    return (t + c) % 3 == 0 ? std::ldexp(Normal(rng), -140) : std::ldexp(Normal(rng), -128);
  });
  make("huge", [&](int, int) { return 3e37f * Normal(rng); });
  make("fp16_range",
       [&](int, int) { return 60000.0f * static_cast<float>(rng.UniformOpen() - 0.5); });
  make("sparse", [&](int t, int c) { return (t * 7 + c) % 11 == 0 ? Normal(rng) : 0.0f; });
  make("ties", [&](int t, int c) { return 0.5f * static_cast<float>((t * kDim + c) % 255 - 127); });
  return blocks;
}

TEST(QuantFormat, NamesRoundTrip) {
  for (const char* name : {"fp16",
                           "bf16",
                           "int8:tensor",
                           "int8:token",
                           "int8:channel",
                           "int4:g32:dim",
                           "int4:g32:token",
                           "int2:g64:token",
                           "int8:tensor:asym",
                           "int4:g32:dim:sym",
                           "fp8e4m3",
                           "fp8e5m2",
                           "q8_0",
                           "q4_0",
                           "q4_1",
                           "iq4_nl",
                           "iq4_nl:search",
                           "nvfp4",
                           "int4:g32:token+had+prerope+bias+sink4+recent32+trunc",
                           "q4_0+had+sink1"}) {
    const FormatSpec spec = FormatSpec::Parse(name);
    EXPECT_EQ(spec.Name(), name);
    EXPECT_EQ(FormatSpec::Parse(spec.Name()), spec);
  }
  // Parsing accepts any modifier order and explicit defaults; Name() is canonical.
  EXPECT_EQ(FormatSpec::Parse("int8:tensor+trunc+had").Name(), "int8:tensor+had+trunc");
  EXPECT_EQ(FormatSpec::Parse("int4:g32:dim:asym").Name(), "int4:g32:dim");
  EXPECT_EQ(FormatSpec::Parse("int8:token:sym").Name(), "int8:token");
  EXPECT_THROW(FormatSpec::Parse("q4_0+trunc"), InputError);
  EXPECT_THROW(FormatSpec::Parse("int8:g0:dim"), InputError);
  EXPECT_THROW(FormatSpec::Parse("fp16:tensor"), InputError);
}

TEST(QuantFormat, ByteCosts) {
  auto cost = [](const char* name, int64_t len = 4096) {
    return FormatCost(FormatSpec::Parse(name), 64, len);
  };
  EXPECT_EQ(cost("fp16").per_token, 128);
  EXPECT_EQ(cost("int8:tensor").per_token, 64);
  EXPECT_EQ(cost("int8:tensor").per_sequence, 4);
  EXPECT_EQ(cost("int8:token").per_token, 68);
  EXPECT_EQ(cost("int8:channel").per_sequence, 256);
  EXPECT_EQ(cost("int4:g32:dim").per_token, 32 + 2 * 8);
  EXPECT_EQ(cost("int4:g32:token").per_token, 32 + 64 * 8.0 / 32);
  EXPECT_EQ(cost("int2:g64:token").per_token, 16 + 64 * 8.0 / 64);
  EXPECT_EQ(cost("fp8e4m3").per_token, 64);
  EXPECT_EQ(cost("fp8e5m2").per_sequence, 4);
  EXPECT_EQ(cost("q8_0").per_token, 68);
  EXPECT_EQ(cost("q4_0").per_token, 36);
  EXPECT_EQ(cost("q4_1").per_token, 40);
  EXPECT_EQ(cost("iq4_nl").per_token, 36);
  EXPECT_EQ(cost("nvfp4").per_token, 36);
  EXPECT_EQ(cost("nvfp4").per_sequence, 4);
  // 4 sink + 28 recent fp16 tokens averaged over 512: (480 * 64 + 32 * 128) / 512.
  EXPECT_EQ(cost("int8:tensor+sink4+recent28", 512).per_token, (480.0 * 64 + 32 * 128) / 512);
}

TEST(QuantFormat, EveryFastPathEqualsItsReferenceBitForBit) {
  const auto blocks = Blocks();
  int compared = 0;
  for (const FormatTraits& traits : FormatTable()) {
    for (const FormatSpec& spec : test::TableExamples(traits, true)) {
      EXPECT_EQ(spec.kind, traits.kind);
      for (const auto& [name, x] : blocks) {
        HeadStats stats;
        AccumulateStats(spec, x.data(), kRows, kDim, stats);
        std::vector<float> ref(x.size()), fast(x.size());
        traits.reference(spec, stats, x.data(), ref.data(), kRows, kDim);
        // fp16 and ggml's fp16 scales overflow to inf on "huge" (3e37), as they should.
        const bool fp16_range = spec.kind == FormatKind::kFp16 || traits.ggml_quantize != nullptr;
        if (!(fp16_range && name == "huge")) {
          for (float v : ref) ASSERT_TRUE(std::isfinite(v)) << spec.Name() << " " << name;
        }
        if (traits.fast == nullptr) continue;
        traits.fast(spec, stats, x.data(), fast.data(), kRows, kDim);
        for (size_t i = 0; i < x.size(); ++i) {
          ASSERT_EQ(FloatBits(fast[i]), FloatBits(ref[i]))
              << spec.Name() << " block " << name << " element " << i << " x=" << x[i];
        }
        ++compared;
        // In place gives the same result.
        std::vector<float> inplace = x;
        traits.fast(spec, stats, inplace.data(), inplace.data(), kRows, kDim);
        ASSERT_EQ(std::memcmp(inplace.data(), fast.data(), 4 * x.size()), 0) << spec.Name();
      }
    }
  }
  EXPECT_GE(compared, 30);  // fp16 and fp8; the fused kernels: quant_fused_test.cpp.
}

// Every row's error band: the round trip of N(0, 1) data, each example.
TEST(QuantFormat, EveryFormatStaysInItsErrorBand) {
  SplitMix64 rng(3);
  std::vector<float> x(kRows * kDim), y(x.size());
  for (float& v : x) v = Normal(rng);
  for (const FormatTraits& traits : FormatTable()) {
    EXPECT_GT(traits.max_gauss_nmse, 0) << traits.name << " has no error band";
    for (const FormatSpec& spec : test::TableExamples(traits, false)) {
      QuantizeHead(spec, HeadContext{}, x.data(), y.data(), kRows, kDim);
      double sse = 0, sum_sq = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        sse += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
        sum_sq += static_cast<double>(x[i]) * x[i];
      }
      EXPECT_LE(sse / sum_sq, traits.max_gauss_nmse) << spec.Name();
      EXPECT_GT(sse / sum_sq, traits.max_gauss_nmse / 100) << spec.Name() << ": a loose band";
    }
  }
}

TEST(QuantFormat, WholePathWithModifiersMatchesReference) {
  const RopeTable rope(RopeConfig{}, kDim, 32);
  SplitMix64 rng(11);
  std::vector<float> bias(kDim), x(kRows * kDim);
  for (float& b : bias) b = 5 * Normal(rng);
  for (float& v : x) v = Normal(rng);
  for (const char* name : {"int8:tensor+had", "int4:g32:token+prerope+bias", "int8:channel+sink3",
                           "fp8e4m3+recent5+had", "int2:g64:token+sink2+recent2", "fp16+prerope"}) {
    const FormatSpec f = FormatSpec::Parse(name);
    HeadContext ctx{32, &rope, bias.data(), false};
    std::vector<float> fast(x.size()), ref(x.size());
    QuantizeHead(f, ctx, x.data(), fast.data(), kRows, kDim);
    ctx.use_reference = true;
    QuantizeHead(f, ctx, x.data(), ref.data(), kRows, kDim);
    for (size_t i = 0; i < x.size(); ++i)
      ASSERT_EQ(FloatBits(fast[i]), FloatBits(ref[i])) << name << " " << i;
  }
}

TEST(QuantFormat, TruncationGivesAboutFourTimesTheMseOfNearest) {
  SplitMix64 rng(3);
  std::vector<float> x(256 * 64), y(x.size());
  for (float& v : x) v = static_cast<float>(2 * rng.UniformOpen() - 1);
  auto mse = [&](const char* name) {
    QuantizeHead(FormatSpec::Parse(name), HeadContext{}, x.data(), y.data(), 256, 64);
    double s = 0;
    for (size_t i = 0; i < x.size(); ++i) s += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    return s / static_cast<double>(x.size());
  };
  for (const char* g : {"int8:token", "int8:tensor", "int4:g32:dim"}) {
    const double ratio = mse((std::string(g) + "+trunc").c_str()) / mse(g);
    EXPECT_GE(ratio, 3.5) << g;
    EXPECT_LE(ratio, 4.5) << g;
  }
}

TEST(QuantFormat, ZeroRangeHeadsNeverDivideByZero) {
  std::vector<float> zero(kRows * kDim, 0.0f), y(zero.size());
  for (const FormatTraits& traits : FormatTable()) {
    for (const FormatSpec& spec : test::TableExamples(traits, true)) {
      QuantizeHead(spec, HeadContext{}, zero.data(), y.data(), kRows, kDim);
      for (float v : y) ASSERT_EQ(v, 0.0f) << spec.Name();
    }
  }
  std::vector<float> constant(kRows * kDim, -2.5f);
  QuantizeHead(FormatSpec::Parse("int4:g32:dim"), HeadContext{}, constant.data(), y.data(), kRows,
               kDim);
  for (float v : y) ASSERT_EQ(v, -2.5f);  // Asymmetric: a constant group is exact.
}

TEST(QuantFormat, HadamardIsOrthonormalAndRoundTrips) {
  SplitMix64 rng(5);
  for (int n : {2, 16, 64, 128, 256}) {
    std::vector<float> x(4 * static_cast<size_t>(n));
    for (float& v : x) v = 100 * Normal(rng);
    std::vector<float> y = x;
    HadamardRows(y.data(), 4, n);
    double norm_x = 0, norm_y = 0, diff = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      norm_x += double(x[i]) * x[i];
      norm_y += double(y[i]) * y[i];
    }
    EXPECT_NEAR(norm_y / norm_x, 1.0, 1e-6) << n;
    HadamardRows(y.data(), 4, n);
    for (size_t i = 0; i < x.size(); ++i) diff += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    EXPECT_LT(std::sqrt(diff / norm_x), 1e-6) << n;
  }
}

// The butterflies written out plainly: stage h = 1, 2, 4, ... adds and
// subtracts the pairs (j, j + h), then the rows are scaled by 1 / sqrt(n).
// HadamardRows (vectorised) must give the same floats, on every SIMD target.
TEST(QuantFormat, HadamardEqualsThePlainButterfliesBitForBit) {
  SplitMix64 rng(17);
  for (int n : {1, 2, 4, 8, 16, 32, 64, 128, 256}) {
    constexpr int kHadamardRows = 5;
    std::vector<float> x(kHadamardRows * static_cast<size_t>(n));
    for (size_t i = 0; i < x.size(); ++i) {
      x[i] = i % 7 == 0 ? 3e4f * Normal(rng) : std::ldexp(Normal(rng), -static_cast<int>(i % 30));
    }
    std::vector<float> expected = x;
    const float norm = 1.0f / std::sqrt(static_cast<float>(n));
    for (int r = 0; r < kHadamardRows; ++r) {
      float* v = expected.data() + r * n;
      for (int h = 1; h < n; h *= 2) {
        for (int i = 0; i < n; i += 2 * h) {
          for (int j = i; j < i + h; ++j) {
            const float a = v[j], b = v[j + h];
            v[j] = a + b;
            v[j + h] = a - b;
          }
        }
      }
      for (int i = 0; i < n; ++i) v[i] *= norm;
    }
    test::ForEachSimdTarget([&](const std::string&) {
      std::vector<float> y = x;
      HadamardRows(y.data(), kHadamardRows, n);
      for (size_t i = 0; i < y.size(); ++i) {
        ASSERT_EQ(FloatBits(y[i]), FloatBits(expected[i])) << "n " << n << " element " << i;
      }
    });
  }
}

TEST(QuantFormat, HadamardKeyWithOriginalQueryEqualsRotatedAttention) {
  // q . K' (K' returned in the original basis) == (H q) . Q(H K) up to float rounding.
  SplitMix64 rng(9);
  std::vector<float> k(kRows * kDim), q(kDim);
  for (float& v : k) v = Normal(rng);
  for (int c = 0; c < kDim; c += 9) k[c] = 50;  // An outlier channel in token 0.
  for (float& v : q) v = Normal(rng);
  std::vector<float> kq(k.size());
  QuantizeHead(FormatSpec::Parse("int4:token+had"), HeadContext{}, k.data(), kq.data(), kRows,
               kDim);
  std::vector<float> hk = k, hq = q;
  HadamardRows(hk.data(), kRows, kDim);
  HadamardRows(hq.data(), 1, kDim);
  std::vector<float> hkq(hk.size());
  QuantizeHead(FormatSpec::Parse("int4:token"), HeadContext{}, hk.data(), hkq.data(), kRows, kDim);
  for (int t = 0; t < kRows; ++t) {
    double a = 0, b = 0, scale = 0;
    for (int c = 0; c < kDim; ++c) {
      a += double(q[c]) * kq[t * kDim + c];
      b += double(hq[c]) * hkq[t * kDim + c];
      scale += std::fabs(double(q[c]) * k[t * kDim + c]);
    }
    EXPECT_NEAR(a, b, 1e-5 * scale) << t;
  }
}

TEST(QuantFormat, SinkAndRecentTokensStayFp16) {
  SplitMix64 rng(13);
  std::vector<float> x(kRows * kDim), y(x.size());
  for (float& v : x) v = Normal(rng);
  HeadContext ctx;
  ctx.chunk_len = 32;  // Two prompts.
  QuantizeHead(FormatSpec::Parse("int2:g32:dim+sink4+recent3"), ctx, x.data(), y.data(), kRows,
               kDim);
  for (int t = 0; t < kRows; ++t) {
    const int p = t % 32;
    const bool kept = p < 4 || p >= 29;
    int exact = 0;
    for (int c = 0; c < kDim; ++c) exact += y[t * kDim + c] == RoundToHalf(x[t * kDim + c]);
    if (kept) {
      EXPECT_EQ(exact, kDim) << t;
    } else {
      EXPECT_LT(exact, kDim / 2) << t;
    }
  }
}

TEST(QuantFormat, PreRopeAndBiasRemoveWhatTheyShould) {
  // K = R(p)(k0 + b) with k0 small: +prerope+bias quantizes only k0, so the
  // error collapses compared with quantizing K directly.
  const RopeTable rope(RopeConfig{}, kDim, kRows);
  SplitMix64 rng(17);
  std::vector<float> bias(kDim), k(kRows * kDim), y(k.size());
  for (float& b : bias) b = 30 * Normal(rng);
  for (int t = 0; t < kRows; ++t) {
    for (int c = 0; c < kDim; ++c) k[t * kDim + c] = 0.1f * Normal(rng) + bias[c];
    ApplyRope(rope, k.data() + t * kDim, 1, kDim, t);
  }
  HeadContext ctx{kRows, &rope, bias.data(), false};
  auto sse = [&](const char* name) {
    QuantizeHead(FormatSpec::Parse(name), ctx, k.data(), y.data(), kRows, kDim);
    double s = 0;
    for (size_t i = 0; i < k.size(); ++i) s += (double(k[i]) - y[i]) * (double(k[i]) - y[i]);
    return s;
  };
  EXPECT_LT(sse("int4:token+prerope+bias") * 50, sse("int4:token"));
  // Without a bias in the dump, +bias is a no-op.
  HeadContext no_bias{kRows, &rope, nullptr, false};
  std::vector<float> a(k.size()), b(k.size());
  QuantizeHead(FormatSpec::Parse("int4:token+bias"), no_bias, k.data(), a.data(), kRows, kDim);
  QuantizeHead(FormatSpec::Parse("int4:token"), no_bias, k.data(), b.data(), kRows, kDim);
  EXPECT_EQ(a, b);
  // fp16+prerope round-trips RoPE: close to x (fp16 steps of values up to ~100).
  QuantizeHead(FormatSpec::Parse("fp16+prerope"), ctx, k.data(), y.data(), kRows, kDim);
  for (size_t i = 0; i < k.size(); ++i) EXPECT_NEAR(y[i], k[i], 0.05);
}

// fp8 decode written independently: (-1)^s 2^(e - bias) (1 + m / 2^M), subnormal
// 2^(1 - bias) m / 2^M.
double Fp8Value(int code, int man_bits, int bias, bool e4m3) {
  const int exp_bits = 7 - man_bits;
  const int s = code >> 7, e = (code >> man_bits) & ((1 << exp_bits) - 1),
            m = code & ((1 << man_bits) - 1);
  if (e4m3 && e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  if (!e4m3 && e == 31) {
    return m ? std::numeric_limits<double>::quiet_NaN()
             : (s ? -1 : 1) * std::numeric_limits<double>::infinity();
  }
  const double mag = e == 0 ? std::pow(2.0, 1 - bias) * m / (1 << man_bits)
                            : std::pow(2.0, e - bias) * (1.0 + double(m) / (1 << man_bits));
  return s ? -mag : mag;
}

TEST(QuantFormat, Fp8DecodeTableIsExhaustivelyRight) {
  for (auto [type, man, bias, e4m3] :
       {std::tuple{Fp8Type::kE4M3, 3, 7, true}, std::tuple{Fp8Type::kE5M2, 2, 15, false}}) {
    for (int code = 0; code < 256; ++code) {
      const double want = Fp8Value(code, man, bias, e4m3);
      const float got = Fp8Decode(static_cast<uint8_t>(code), type);
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(got)) << code;
      } else {
        EXPECT_EQ(static_cast<double>(got), want) << code;
      }
    }
  }
  EXPECT_EQ(Fp8Decode(0x7e, Fp8Type::kE4M3), 448.0f);
  EXPECT_EQ(Fp8Decode(0x7b, Fp8Type::kE5M2), 57344.0f);
}

TEST(QuantFormat, Fp8EncodeIsNearestEvenAndSaturating) {
  SplitMix64 rng(19);
  for (Fp8Type type : {Fp8Type::kE4M3, Fp8Type::kE5M2}) {
    std::vector<float> values;
    // Every midpoint between neighbouring codes, and one float ulp either side.
    for (int code = 0; code < 126; ++code) {
      const float a = Fp8Decode(static_cast<uint8_t>(code), type);
      const float b = Fp8Decode(static_cast<uint8_t>(code + 1), type);
      if (!std::isfinite(b)) break;
      const float mid = (a + b) / 2;
      for (float v : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e30f), a}) {
        values.push_back(v);
        values.push_back(-v);
      }
    }
    for (int i = 0; i < 20000; ++i) {
      values.push_back(std::ldexp(Normal(rng), static_cast<int>(rng.Next() % 50) - 30));
    }
    for (float v : {1e6f, -1e30f, 460.0f, 464.0f, 61440.0f, 1e-30f, -0.0f, 0.0f})
      values.push_back(v);
    for (float v : values) {
      ASSERT_EQ(Fp8Encode(v, type), Fp8EncodeRef(v, type)) << v;
    }
    // Ties to even: halfway between 1 and 1 + 2^-M goes to 1.
    EXPECT_EQ(Fp8Decode(Fp8Encode(1.0625f, Fp8Type::kE4M3), Fp8Type::kE4M3), 1.0f);
    EXPECT_EQ(Fp8Decode(Fp8Encode(1.1875f, Fp8Type::kE4M3), Fp8Type::kE4M3), 1.25f);
    EXPECT_EQ(Fp8Decode(Fp8Encode(1e9f, type), type), Fp8Max(type));
  }
}

TEST(QuantFormat, E2m1RoundsToNearestEven) {
  const float want[][2] = {{0.25f, 0.0f},  {0.75f, 1.0f},  {1.25f, 1.0f}, {1.75f, 2.0f},
                           {2.5f, 2.0f},   {3.5f, 4.0f},   {5.0f, 4.0f},  {5.1f, 6.0f},
                           {100.0f, 6.0f}, {-2.6f, -3.0f}, {0.3f, 0.5f}};
  for (auto [x, y] : want) EXPECT_EQ(E2m1Decode(E2m1Encode(x)), y) << x;
}

}  // namespace
}  // namespace kvq
