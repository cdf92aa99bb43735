// The fused quantize-dequantize-error kernel (quant/fused.h) against the
// scalar references: dequantized values bit for bit, error sums against a
// plain serial double sum.
#include <gtest/gtest.h>

#include <cmath>

#include "kvq/capture/dump.h"
#include "kvq/capture/synthetic.h"
#include "kvq/common/error.h"
#include "kvq/common/half.h"
#include "kvq/common/random.h"
#include "kvq/metrics/tensor_error.h"
#include "kvq/quant/fused.h"
#include "kvq/quant/quantize.h"
#include "test_util.h"

namespace kvq {
namespace {

// A float normal on the sequence these blocks were built with.
float Normal(SplitMix64& rng) { return static_cast<float>(rng.NormalOpen()); }

constexpr int kRows = 96;  // Three prompts of 32 (g<N>:token groups restart).
constexpr int kDim = 64;
constexpr int64_t kChunk = 32;
// fused.h: SSE within (16 + 4) * 2^-24 relative for fp16 sources.
constexpr double kHalfSumsTolerance = 1.2e-6;

// The scalar reference round trip of a [rows, dim] block.
std::vector<float> ReferenceRoundTrip(const FormatSpec& f, const std::vector<float>& x, int rows,
                                      int dim) {
  HeadContext ctx;
  ctx.chunk_len = kChunk;
  ctx.use_reference = true;
  std::vector<float> ref(x.size());
  QuantizeHead(f, ctx, x.data(), ref.data(), rows, dim);
  return ref;
}

// The error sums of x -> y as a serial double sum, the kernel's yardstick.
QdqErrorSums SerialSums(const float* x, const float* y, int64_t n) {
  QdqErrorSums sums;
  sums.count = n;
  for (int64_t i = 0; i < n; ++i) {
    const double e = static_cast<double>(x[i]) - static_cast<double>(y[i]);
    sums.sse += e * e;
    sums.sum_sq += static_cast<double>(x[i]) * x[i];
    sums.max_abs = std::max(sums.max_abs, std::fabs(x[i]));
  }
  return sums;
}

// Adversarial [kRows, kDim] blocks; every value representable in fp16 unless
// the name says otherwise (so the fp16 source sees the same values).
std::vector<std::pair<std::string, std::vector<float>>> Blocks() {
  std::vector<std::pair<std::string, std::vector<float>>> blocks;
  SplitMix64 rng(2024);
  auto make = [&](const std::string& name, auto&& value) {
    std::vector<float> x(kRows * kDim);
    for (int t = 0; t < kRows; ++t) {
      for (int c = 0; c < kDim; ++c) x[t * kDim + c] = RoundToHalf(value(t, c));
    }
    blocks.emplace_back(name, x);
  };
  make("gauss", [&](int, int) { return Normal(rng); });
  make("outlier_channels",
       [&](int, int c) { return c == 5 || c == 40 ? 130.0f + Normal(rng) : Normal(rng); });
  make("all_zero", [](int, int) { return 0.0f; });
  make("signed_zeros", [](int t, int c) { return (t + c) % 3 == 0 ? -0.0f : 0.0f; });
  make("zeros_and_positives",
       [&](int t, int c) { return (t * 5 + c) % 4 == 0 ? std::fabs(Normal(rng)) : -0.0f; });
  make("constant", [](int, int) { return 0.37f; });
  make("fp16_subnormals", [&](int t, int c) { return std::ldexp(Normal(rng), -20 - (t + c) % 6); });
  make("fp16_range",
       [&](int, int) { return 60000.0f * static_cast<float>(rng.UniformOpen() - 0.5); });
  make("sparse", [&](int t, int c) { return (t * 7 + c) % 11 == 0 ? Normal(rng) : 0.0f; });
  make("ties", [&](int t, int c) { return 0.5f * static_cast<float>((t * kDim + c) % 255 - 127); });
  make("ties_small",
       [&](int t, int c) { return 0.125f * static_cast<float>((t + 3 * c) % 17 - 8); });
  make("first_max_wins", [&](int t, int c) {
    return (c % 32 == 3 || c % 32 == 9) ? ((t % 2) ? 4.0f : -4.0f) * (c % 32 == 9 ? -1 : 1)
                                        : Normal(rng);
  });
  // Float-only: far outside fp16 (denormal floats, huge values).
  auto raw = [&](const std::string& name, auto&& value) {
    std::vector<float> x(kRows * kDim);
    for (int t = 0; t < kRows; ++t) {
      for (int c = 0; c < kDim; ++c) x[t * kDim + c] = value(t, c);
    }
    blocks.emplace_back(name, x);
  };
  raw("float_denormals", [&](int t, int c) {
    return (t + c) % 3 == 0 ? std::ldexp(Normal(rng), -140) : std::ldexp(Normal(rng), -128);
  });
  raw("float_huge", [&](int, int) { return 3e37f * Normal(rng); });
  // q8_0 blocks with d = 1 (max 127): values just below and at k + 1/2,
  // which roundf sends to k and to k + 1.
  raw("float_below_halves", [&](int t, int c) {
    if (c % 32 == 0) return 127.0f;
    const float half = static_cast<float>((t + c) % 100) + 0.5f;
    const float v = (t + c) % 3 == 0 ? half : std::nextafter(half, 0.0f);
    return (t * 3 + c) % 2 ? -v : v;
  });
  raw("float_gauss", [&](int, int) { return Normal(rng); });
  return blocks;
}

// The format table's examples that the fused kernel covers at kDim, and
// their +had variants that it covers (the per-token int formats).
std::vector<FormatSpec> Formats() {
  std::vector<FormatSpec> specs;
  for (const FormatTraits& traits : FormatTable()) {
    for (const FormatSpec& spec : test::TableExamples(traits, true)) {
      if (HasFusedKernel(spec, kDim)) specs.push_back(spec);
      FormatSpec rotated = spec;
      rotated.hadamard = true;
      if (HasFusedKernel(rotated, kDim)) specs.push_back(rotated);
    }
  }
  return specs;
}

// Every row with a fused kernel covers its examples whose blocks along
// head_dim are whole vectors of up to 16 lanes, and declines modifiers.
TEST(QuantFused, CoversTheTableAndDeclinesTheRest) {
  for (const FormatTraits& traits : FormatTable()) {
    for (const FormatSpec& spec : test::TableExamples(traits, true)) {
      const int block = spec.HeadDimBlock();
      EXPECT_EQ(HasFusedKernel(spec, kDim),
                traits.fused != nullptr && (block == 1 || block % 16 == 0))
          << spec.Name();
    }
  }
  for (const char* name :
       {"bf16", "int8:tensor+had", "int8:token+sink4", "int8:g8:dim", "fp16+prerope",
        "int4:token+bias", "int4:g32:token+had", "int4:g16:dim+had", "int8:channel+had", "q8_0+had",
        "fp8e4m3+had", "int8:token+had+sink4"}) {
    EXPECT_FALSE(HasFusedKernel(FormatSpec::Parse(name), kDim)) << name;
  }
  EXPECT_FALSE(HasFusedKernel(FormatSpec::Parse("int8:token"), 24));
  // +had is fused for the per-token int formats, head_dim a power of two
  // from 16 to 256.
  for (const char* name : {"int8:token+had", "int4:token:asym+had", "int2:token+had+trunc"}) {
    for (const int dim : {16, 32, 64, 128, 256}) {
      EXPECT_TRUE(HasFusedKernel(FormatSpec::Parse(name), dim)) << name << " " << dim;
    }
    EXPECT_FALSE(HasFusedKernel(FormatSpec::Parse(name), 512)) << name;
  }
  EXPECT_TRUE(HasFusedKernel(FormatSpec::Parse("q4_0"), 32));
  EXPECT_FALSE(HasFusedKernel(FormatSpec::Parse("q4_0"), 48));
}

// y from the fused kernel (in place too) equals the scalar reference path
// bit for bit; its error sums (fp16 and float sources) equal a serial double
// sum of that reference within fused.h's bounds: 1e-12 relative for float
// sources (double lanes), 1.2e-6 for fp16 sources (float lanes folded into
// double every 16 terms).
TEST(QuantFused, EqualsTheReferenceBitForBit) {
  int compared = 0;
  for (const auto& [block, x] : Blocks()) {
    const bool fp16_exact = block.rfind("float_", 0) != 0;
    std::vector<uint16_t> half(x.size());
    for (size_t i = 0; i < x.size(); ++i) half[i] = FloatToHalf(x[i]);
    for (const FormatSpec& f : Formats()) {
      const std::string name = f.Name();
      const std::vector<float> ref = ReferenceRoundTrip(f, x, kRows, kDim);
      std::vector<float> y(x.size());
      const QdqErrorSums serial = SerialSums(x.data(), ref.data(), kRows * kDim);
      const double sse = serial.sse, sum_sq = serial.sum_sq;
      const float max_abs = serial.max_abs;
      // y, or the sums where given.
      auto check = [&](const char* source, const QdqErrorSums* sums, double tolerance) {
        if (sums == nullptr) {
          for (size_t i = 0; i < x.size(); ++i) {
            ASSERT_EQ(FloatBits(y[i]), FloatBits(ref[i]))
                << name << " block " << block << " source " << source << " element " << i
                << " x=" << x[i];
          }
          return;
        }
        EXPECT_EQ(sums->count, kRows * kDim);
        EXPECT_EQ(sums->max_abs, max_abs) << name << " " << block;
        if (std::isfinite(sse)) {
          EXPECT_NEAR(sums->sse, sse, tolerance * sse) << name << " " << block << " " << source;
        }
        EXPECT_NEAR(sums->sum_sq, sum_sq, tolerance * sum_sq)
            << name << " " << block << " " << source;
      };
      test::ForEachSimdTarget([&](const std::string&) {
        FusedQuantizeHead(f, kChunk, nullptr, x.data(), kRows, kDim, nullptr, y.data(), nullptr);
        check("float", nullptr, 0);
        QdqErrorSums sums;
        FusedQuantizeHead(f, kChunk, nullptr, x.data(), kRows, kDim, nullptr, nullptr, &sums);
        check("float sums", &sums, 1e-12);
        if (fp16_exact) {
          sums = {};
          FusedQuantizeHead(f, kChunk, half.data(), nullptr, kRows, kDim, nullptr, nullptr, &sums);
          check("fp16 sums", &sums, kHalfSumsTolerance);
        }
        y = x;  // In place (QuantizeHead's use).
        FusedQuantizeHead(f, kChunk, nullptr, y.data(), kRows, kDim, nullptr, y.data(), nullptr);
        check("in place", nullptr, 0);
        // QuantizeHead's fast path is this kernel.
        HeadContext fast_ctx;
        fast_ctx.chunk_len = kChunk;
        QuantizeHead(f, fast_ctx, x.data(), y.data(), kRows, kDim);
        check("QuantizeHead", nullptr, 0);
      });
      ++compared;
    }
  }
  EXPECT_GT(compared, 1500);
}

// The kernel's head-dim specialisations (64 and 128: per-channel ranges and
// parameters in registers, per-token batches) and the generic loops (other
// multiples of 16) agree with the reference, fp16 and float sources; 37 rows
// end in a partial batch of 16 tokens and a partial g16:token group.
TEST(QuantFused, EveryHeadDimEqualsTheReference) {
  SplitMix64 rng(11);
  for (int rows : {kRows, 37}) {
    for (int dim : {16, 48, 64, 128, 256}) {
      std::vector<float> x(static_cast<size_t>(rows * dim));
      for (size_t i = 0; i < x.size(); ++i) {
        x[i] = RoundToHalf((i % static_cast<size_t>(dim) == 3 ? 40.0f : 1.0f) * Normal(rng));
      }
      std::vector<uint16_t> half(x.size());
      for (size_t i = 0; i < x.size(); ++i) half[i] = FloatToHalf(x[i]);
      for (const char* name :
           {"int8:channel", "int4:channel:asym", "int8:g16:token", "int8:tensor", "int8:token",
            "int4:token:asym", "int8:token+trunc", "int8:g16:dim", "fp8e4m3", "nvfp4", "q8_0",
            "iq4_nl:search", "int8:token+had", "int4:token:asym+had", "int3:token+had+trunc"}) {
        const FormatSpec f = FormatSpec::Parse(name);
        if (!HasFusedKernel(f, dim)) continue;
        const std::vector<float> ref = ReferenceRoundTrip(f, x, rows, dim);
        std::vector<float> y(x.size());
        const QdqErrorSums serial = SerialSums(x.data(), ref.data(), rows * dim);
        const double sse = serial.sse, sum_sq = serial.sum_sq;
        test::ForEachSimdTarget([&](const std::string&) {
          FusedQuantizeHead(f, kChunk, nullptr, x.data(), rows, dim, nullptr, y.data(), nullptr);
          for (size_t i = 0; i < x.size(); ++i) {
            ASSERT_EQ(FloatBits(y[i]), FloatBits(ref[i]))
                << name << " rows " << rows << " dim " << dim << " " << i;
          }
          for (const bool from_half : {false, true}) {
            QdqErrorSums sums;
            FusedQuantizeHead(f, kChunk, from_half ? half.data() : nullptr,
                              from_half ? nullptr : x.data(), rows, dim, nullptr, nullptr, &sums);
            const double tolerance = from_half ? kHalfSumsTolerance : 1e-12;
            EXPECT_NEAR(sums.sse, sse, tolerance * sse)
                << name << " rows " << rows << " dim " << dim;
            EXPECT_NEAR(sums.sum_sq, sum_sq, tolerance * sum_sq)
                << name << " rows " << rows << " dim " << dim;
            EXPECT_EQ(sums.max_abs, serial.max_abs) << name << " rows " << rows << " dim " << dim;
          }
        });
      }
    }
  }
}

// Sequence-global statistics given by the caller (a calibration over a
// larger block): values beyond the calibrated range clamp identically.
TEST(QuantFused, CallerStatisticsMatchTheReference) {
  SplitMix64 rng(5);
  std::vector<float> calib(kRows * kDim), x(kRows * kDim);
  for (float& v : calib) v = Normal(rng);
  for (float& v : x) v = 3 * Normal(rng);
  // Far beyond the calibration: x / scale around 1e9, where float errors of
  // the nvfp4 grid search tie.
  std::vector<float> huge(x.size());
  for (float& v : huge) v = 1e9f * Normal(rng);
  for (const char* name : {"int8:tensor", "int4:tensor:asym", "int8:channel", "int2:channel:asym",
                           "fp8e4m3", "fp8e5m2", "nvfp4", "int8:tensor+trunc"}) {
    const FormatSpec f = FormatSpec::Parse(name);
    HeadContext ctx;
    ctx.use_reference = true;
    const HeadStats stats = CalibrateHead(f, ctx, calib.data(), kRows, kDim);
    for (const std::vector<float>* block : {&x, &huge}) {
      std::vector<float> ref(x.size()), y(x.size());
      QuantizeHead(f, ctx, block->data(), ref.data(), kRows, kDim, &stats);
      test::ForEachSimdTarget([&](const std::string&) {
        FusedQuantizeHead(f, 0, nullptr, block->data(), kRows, kDim, &stats, y.data(), nullptr);
        for (size_t i = 0; i < x.size(); ++i)
          ASSERT_EQ(FloatBits(y[i]), FloatBits(ref[i])) << name << " " << i;
      });
    }
  }
}

TEST(QuantFused, NonFiniteInputIsAnInputError) {
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    std::vector<float> x(kRows * kDim, 0.5f);
    x[777] = bad;
    std::vector<uint16_t> half(x.size());
    for (size_t i = 0; i < x.size(); ++i) half[i] = FloatToHalf(x[i]);
    test::ForEachSimdTarget([&](const std::string&) {
      for (const char* name : {"int8:tensor", "int8:token", "fp8e4m3", "q8_0", "fp16"}) {
        QdqErrorSums sums;
        EXPECT_THROW(FusedQuantizeHead(FormatSpec::Parse(name), 0, nullptr, x.data(), kRows, kDim,
                                       nullptr, nullptr, &sums),
                     InputError)
            << name;
        EXPECT_THROW(FusedQuantizeHead(FormatSpec::Parse(name), 0, half.data(), nullptr, kRows,
                                       kDim, nullptr, nullptr, &sums),
                     InputError)
            << name;
        // Without sums (QuantizeHead's use) the kernel checks too.
        std::vector<float> y(x.size());
        EXPECT_THROW(FusedQuantizeHead(FormatSpec::Parse(name), 0, nullptr, x.data(), kRows, kDim,
                                       nullptr, y.data(), nullptr),
                     InputError)
            << name;
      }
    });
  }
}

// MeasureDump (fused for most formats, generic for the rest) against the
// plain path: widen, QuantizeHead with the reference kernels, serial sums.
TEST(QuantFused, MeasureDumpMatchesThePlainPath) {
  test::ScratchDir dir;
  SyntheticDumpOptions o;
  o.num_layers = 3;
  o.tokens = 256;
  o.chunk_len = 64;
  WriteSyntheticDump(dir / "kv.safetensors", o);
  const KvDump dump = KvDump::Open(dir / "kv.safetensors");
  const DumpInfo& info = dump.info();
  const int64_t per_head = info.tokens * info.head_dim;
  std::vector<float> layer(static_cast<size_t>(info.num_kv_heads * per_head));
  std::vector<float> y(static_cast<size_t>(per_head));
  test::ForEachSimdTarget([&](const std::string&) {
    for (const char* spec :
         {"strat1", "strat2", "strat3", "int8:channel", "k=int4:g32:token,v=int4:g32:dim",
          "k=q4_1,v=fp8e5m2", "k=q8_0,v=nvfp4", "k=iq4_nl,v=int8:token+had"}) {
      const Strategy s = Strategy::Parse(spec);
      const auto rows = MeasureDump(dump, s);
      ASSERT_EQ(rows.size(), static_cast<size_t>(info.num_layers * 2 * info.num_kv_heads));
      for (const ErrorRow& row : rows) {
        if (row.tensor == KvTensor::kK) {
          dump.ReadK(row.layer, layer);
        } else {
          dump.ReadV(row.layer, layer);
        }
        const FormatSpec& f = s.Format(row.tensor, row.layer, row.head);
        EXPECT_EQ(row.format, f.Name());
        const float* x = layer.data() + row.head * per_head;
        HeadContext ctx;
        ctx.chunk_len = info.chunk_len;
        ctx.use_reference = true;
        QuantizeHead(f, ctx, x, y.data(), info.tokens, info.head_dim);
        const QdqErrorSums serial = SerialSums(x, y.data(), per_head);
        const double sse = serial.sse, sum_sq = serial.sum_sq;
        EXPECT_EQ(row.error.count, per_head);
        EXPECT_EQ(row.error.max_abs, static_cast<double>(serial.max_abs));
        // fp16 dump: the fused kernel's float-lane bound (the generic path is
        // closer still).
        EXPECT_NEAR(row.error.sse, sse, kHalfSumsTolerance * sse)
            << spec << " " << row.layer << " " << row.head;
        EXPECT_NEAR(row.error.sum_sq, sum_sq, kHalfSumsTolerance * sum_sq);
      }
    }
  });
}

}  // namespace
}  // namespace kvq
