// ggml block formats against ggml's own reference quantizers
// (tests/data/ggml-quants, llama.cpp 81ff7ab): bytes and dequantized values
// bit for bit (floats compared as uint32).
#include <gtest/gtest.h>

#include <cstring>

#include "kvq/model/safetensors.h"
#include "kvq/quant/format.h"
#include "kvq/quant/kernels.h"
#include "kvq/quant/quantize.h"
#include "test_util.h"

namespace kvq {
namespace {

constexpr int kRows = 200;
constexpr int kDim = 64;

struct Fixture {
  SafeTensorsFile file = SafeTensorsFile::Open(test::DataDir() / "ggml-quants/blocks.safetensors");
  const float* Floats(const char* name) const {
    const TensorView& t = file.Get(name);
    EXPECT_EQ(t.dtype, DType::kF32);
    return reinterpret_cast<const float*>(t.data);
  }
  const uint8_t* Bytes(const char* name) const { return file.Get(name).data; }
};

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

void CheckFormat(const Fixture& fx, FormatKind kind, bool search, const char* prefix,
                 const uint8_t* undefined = nullptr) {
  const float* input = fx.Floats("input");
  const uint8_t* want_bytes = fx.Bytes((std::string(prefix) + ".bytes").c_str());
  const float* want = fx.Floats((std::string(prefix) + ".dequant").c_str());
  const auto row_bytes = 2 * static_cast<size_t>(Traits(kind).block_bytes);
  std::vector<uint8_t> bytes(row_bytes);
  std::vector<float> y(kDim), y_path(kDim);
  int blocks = 0;
  for (int r = 0; r < kRows; ++r) {
    const float* x = input + r * kDim;
    GgmlQuantizeRow(kind, search, x, kDim, bytes.data());
    GgmlDequantizeRow(kind, bytes.data(), kDim, y.data());
    for (int b = 0; b < 2; ++b) {
      const auto bb = static_cast<size_t>(Traits(kind).block_bytes);
      const uint8_t* got = bytes.data() + b * bb;
      const uint8_t* exp = want_bytes + r * row_bytes + b * bb;
      if (undefined != nullptr && undefined[r * 2 + b]) {
        // ggml leaves these nibbles unspecified: d must be 0 and values zero.
        EXPECT_EQ(got[0] | got[1], 0) << prefix << " row " << r;
        for (int j = 0; j < 32; ++j) EXPECT_EQ(y[b * 32 + j], 0.0f);
        continue;
      }
      ++blocks;
      ASSERT_EQ(std::memcmp(got, exp, bb), 0) << prefix << " row " << r << " block " << b;
      for (int j = 0; j < 32; ++j) {
        ASSERT_EQ(Bits(y[b * 32 + j]), Bits(want[r * kDim + b * 32 + j]))
            << prefix << " row " << r << " value " << b * 32 + j;
      }
    }
    // The format path (QuantizeHead) gives the same dequantized row.
    FormatSpec f;
    f.kind = kind;
    f.search = search;
    QuantizeHead(f, HeadContext{}, x, y_path.data(), 1, kDim);
    for (int j = 0; j < kDim; ++j) ASSERT_EQ(Bits(y_path[j]), Bits(y[j])) << prefix << " " << r;
  }
  EXPECT_GE(blocks, 2 * kRows - 7) << prefix;
}

TEST(QuantGgml, Q8_0IsBitCompatible) { CheckFormat(Fixture{}, FormatKind::kQ8_0, false, "q8_0"); }
TEST(QuantGgml, Q4_0IsBitCompatible) { CheckFormat(Fixture{}, FormatKind::kQ4_0, false, "q4_0"); }
TEST(QuantGgml, Q4_1IsBitCompatible) { CheckFormat(Fixture{}, FormatKind::kQ4_1, false, "q4_1"); }

TEST(QuantGgml, Iq4NlReferenceRowQuantizerIsBitCompatible) {
  Fixture fx;
  CheckFormat(fx, FormatKind::kIq4Nl, false, "iq4_nl_ref", fx.Bytes("iq4_nl_ref.undefined_qs"));
}

TEST(QuantGgml, Iq4NlSearchingQuantizerIsBitCompatible) {
  CheckFormat(Fixture{}, FormatKind::kIq4Nl, true, "iq4_nl");
}

TEST(QuantGgml, ZeroBlocksWriteIndex8) {
  std::vector<float> zero(32, 0.0f);
  uint8_t bytes[18];
  GgmlQuantizeRow(FormatKind::kIq4Nl, false, zero.data(), 32, bytes);
  EXPECT_EQ(bytes[0] | bytes[1], 0);
  for (int j = 2; j < 18; ++j) EXPECT_EQ(bytes[j], 0x88);
}

}  // namespace
}  // namespace kvq
