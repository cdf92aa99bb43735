#include "kvq/model/safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "kvq/common/error.h"
#include "kvq/common/half.h"
#include "test_util.h"

namespace kvq {
namespace {

// Writes a raw safetensors file from a header text and a data section.
void WriteRaw(const std::filesystem::path& path, const std::string& header, size_t data_bytes,
              int64_t lie_about_length = -1) {
  std::ofstream out(path, std::ios::binary);
  const uint64_t n =
      lie_about_length >= 0 ? static_cast<uint64_t>(lie_about_length) : header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header;
  out << std::string(data_bytes, '\0');
}

std::string OpenError(const std::filesystem::path& path) {
  try {
    SafeTensorsFile::Open(path);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(SafeTensors, RoundTripsThroughWriter) {
  test::ScratchDir dir;
  const std::vector<float> a = {1, 2, 3, 4, 5, 6};
  WriteSafeTensors(dir / "t.safetensors", {MakeF32Tensor("a", {2, 3}, a)}, {{"k", "v"}});
  const auto file = SafeTensorsFile::Open(dir / "t.safetensors");
  const TensorView& view = file.Get("a");
  EXPECT_EQ(view.shape, (std::vector<int64_t>{2, 3}));
  std::vector<float> back(6);
  view.ToFloat(back);
  EXPECT_EQ(back, a);
  EXPECT_EQ(file.metadata().at("k"), "v");
  EXPECT_EQ(file.Find("b"), nullptr);
}

TEST(SafeTensors, WidensEveryHalfCodeExactly) {
  std::vector<uint16_t> codes(1 << 16);
  for (uint32_t c = 0; c < codes.size(); ++c) codes[c] = static_cast<uint16_t>(c);
  TensorView view;
  view.dtype = DType::kF16;
  view.shape = {static_cast<int64_t>(codes.size())};
  view.data = reinterpret_cast<const uint8_t*>(codes.data());
  view.nbytes = codes.size() * 2;
  std::vector<float> wide(codes.size());
  view.ToFloat(wide);
  for (uint32_t c = 0; c < codes.size(); ++c) {
    const float want = HalfToFloat(codes[c]);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(wide[c])) << c;
    } else {
      ASSERT_EQ(FloatBits(wide[c]), FloatBits(want)) << c;
    }
  }
}

TEST(SafeTensors, ReadsFixtureDtypes) {
  const auto bf16 =
      SafeTensorsFile::Open(test::DataDir() / "qwen2-tiny/tied-bf16/model.safetensors");
  EXPECT_EQ(bf16.Get("model.norm.weight").dtype, DType::kBF16);
  const auto f16 =
      SafeTensorsFile::Open(test::DataDir() / "qwen2-tiny/untied-f16-gqa4/model.safetensors");
  EXPECT_EQ(f16.Get("lm_head.weight").dtype, DType::kF16);
  EXPECT_EQ(f16.Get("lm_head.weight").shape, (std::vector<int64_t>{700, 64}));
}

TEST(SafeTensors, OpensShardedCheckpoints) {
  const auto store = TensorStore::Open(test::DataDir() / "qwen2-tiny/sharded-f32");
  EXPECT_NE(store.Find("model.embed_tokens.weight"), nullptr);
  EXPECT_NE(store.Find("model.layers.1.mlp.down_proj.weight"), nullptr);
  EXPECT_THROW(store.Get("model.layers.9.mlp.down_proj.weight"), InputError);
}

TEST(SafeTensors, RejectsLyingHeaders) {
  test::ScratchDir dir;
  const auto path = dir / "bad.safetensors";
  auto entry = [](const std::string& dtype, const std::string& shape, const std::string& offsets) {
    return R"({"w":{"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" +
           offsets + "}}";
  };

  WriteRaw(path, entry("F32", "[2]", "[0,8]"), 8, 1 << 20);
  EXPECT_NE(OpenError(path).find("runs past the end"), std::string::npos) << OpenError(path);

  WriteRaw(path, entry("F32", "[2]", "[0,16]"), 8);
  EXPECT_NE(OpenError(path).find("outside the data section"), std::string::npos);

  WriteRaw(path, entry("F32", "[3]", "[0,8]"), 8);
  EXPECT_NE(OpenError(path).find("needs 12 bytes"), std::string::npos);

  WriteRaw(path, entry("F128", "[2]", "[0,8]"), 8);
  EXPECT_NE(OpenError(path).find("unknown dtype"), std::string::npos);

  WriteRaw(path, entry("F32", "[-2]", "[0,8]"), 8);
  EXPECT_NE(OpenError(path).find("bad dimension"), std::string::npos);

  WriteRaw(
      path,
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
      12);
  EXPECT_NE(OpenError(path).find("overlap"), std::string::npos);

  WriteRaw(path, "{not json", 0);
  EXPECT_NE(OpenError(path).find("not valid JSON"), std::string::npos);

  std::ofstream(path, std::ios::binary | std::ios::trunc) << "abc";
  EXPECT_NE(OpenError(path).find("truncated"), std::string::npos);

  EXPECT_NE(OpenError(dir / "missing.safetensors").find("cannot open"), std::string::npos);
  // Every message names the file.
  EXPECT_NE(OpenError(path).find(path.string()), std::string::npos);
}

TEST(SafeTensors, RejectsShardsOutsideTheModelFolder) {
  test::ScratchDir dir;
  std::ofstream(dir / "model.safetensors.index.json")
      << R"({"weight_map": {"model.norm.weight": "../../etc/passwd"}})";
  try {
    TensorStore::Open(dir.path());
    FAIL() << "expected an error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("leaves the model folder"), std::string::npos);
  }
}

TEST(SafeTensors, WriterLeavesNothingWhenNotCommitted) {
  test::ScratchDir dir;
  { SafeTensorsWriter writer(dir / "x.safetensors", {{"a", DType::kF32, {2}}}, {}); }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

}  // namespace
}  // namespace kvq
