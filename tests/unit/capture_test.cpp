// kvq capture and make-model, end to end through the CLI.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include <fmt/ranges.h>

#include "kvq/capture/capture.h"
#include "kvq/capture/dump.h"
#include "kvq/common/io.h"
#include "kvq/model/config.h"
#include "test_util.h"

namespace kvq {
namespace {

double ScaledMaxError(const std::vector<float>& got, const TensorView& expected) {
  std::vector<float> ref(static_cast<size_t>(expected.numel()));
  expected.ToFloat(ref);
  double diff = 0, scale = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(got[i]) - ref[i]));
    scale = std::max(scale, std::abs(static_cast<double>(ref[i])));
  }
  return diff / scale;
}

class CaptureFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(CaptureFixture, F32DumpMatchesTransformers) {
  test::ScratchDir dir;
  const auto model = test::DataDir() / GetParam();
  const auto out = dir / "dump.safetensors";
  const auto result =
      test::RunKvq("capture --dtype f32 --model " + model.string() + " --input-ids " +
                   (model / "input_ids.json").string() + " --out " + out.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const KvDump dump = KvDump::Open(out);
  const auto expected = SafeTensorsFile::Open(model / "expected.safetensors");
  const DumpInfo& info = dump.info();
  EXPECT_EQ(info.dtype, DType::kF32);
  EXPECT_EQ(info.chunk_len, info.tokens);
  for (int l = 0; l < info.num_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    std::vector<float> q(static_cast<size_t>(info.num_heads * info.tokens * info.head_dim));
    std::vector<float> kv(static_cast<size_t>(info.num_kv_heads * info.tokens * info.head_dim));
    dump.ReadQ(l, q);
    EXPECT_LE(ScaledMaxError(q, expected.Get(p + "q")), 2e-5);
    dump.ReadK(l, kv);
    EXPECT_LE(ScaledMaxError(kv, expected.Get(p + "k")), 2e-5);
    dump.ReadV(l, kv);
    EXPECT_LE(ScaledMaxError(kv, expected.Get(p + "v")), 1e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(Qwen2, CaptureFixture,
                         ::testing::Values("qwen2-tiny/tied-bf16", "qwen2-tiny/untied-f16-gqa4",
                                           "qwen2-tiny/sharded-f32"),
                         [](const auto& param_info) {
                           std::string name = param_info.param.substr(11);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(Capture, RecordsBiasChunksAndMetadata) {
  test::ScratchDir dir;
  const auto model = test::DataDir() / "qwen2-tiny/untied-f16-gqa4";
  const auto out = dir / "dump.safetensors";
  const auto result =
      test::RunKvq("capture --model " + model.string() + " --input-ids " +
                   (model / "input_ids.json").string() + " --chunk-len 50 --out " + out.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const KvDump dump = KvDump::Open(out);
  EXPECT_EQ(dump.info().dtype, DType::kF16);
  EXPECT_EQ(dump.info().chunk_len, 50);
  EXPECT_EQ(dump.info().num_chunks(), 4);
  EXPECT_EQ(dump.info().architecture, "Qwen2ForCausalLM");
  EXPECT_EQ(dump.info().rope.theta, 10000.0);
  ASSERT_TRUE(dump.info().has_k_bias);
  // The bias is the k_proj bias of the weights, exactly.
  const auto weights = SafeTensorsFile::Open(model / "model.safetensors");
  std::vector<float> bias(16);
  weights.Get("model.layers.1.self_attn.k_proj.bias").ToFloat(bias);
  EXPECT_EQ(dump.ReadKBias(1), bias);
  EXPECT_EQ(dump.InputIds().size(), 200u);
}

TEST(Capture, ChunksAreIndependentPrompts) {
  // The second prompt of a chunked capture equals a capture of its tokens alone.
  test::ScratchDir dir;
  const auto model = test::DataDir() / "qwen2-tiny/untied-f16-gqa4";
  const auto ids = ReadInputIdsJson(model / "input_ids.json");
  std::ofstream(dir / "second.json")
      << "{\"input_ids\": [" << fmt::format("{}", fmt::join(ids.begin() + 100, ids.end(), ","))
      << "]}";
  const std::string common = "capture --dtype f32 --model " + model.string();
  ASSERT_EQ(test::RunKvq(common + " --input-ids " + (model / "input_ids.json").string() +
                         " --chunk-len 100 --out " + (dir / "chunked.safetensors").string())
                .exit_code,
            0);
  ASSERT_EQ(test::RunKvq(common + " --input-ids " + (dir / "second.json").string() + " --out " +
                         (dir / "alone.safetensors").string())
                .exit_code,
            0);
  const KvDump chunked = KvDump::Open(dir / "chunked.safetensors");
  const KvDump alone = KvDump::Open(dir / "alone.safetensors");
  const int64_t D = chunked.info().head_dim;
  std::vector<float> a(static_cast<size_t>(2 * 200 * D)), b(static_cast<size_t>(2 * 100 * D));
  chunked.ReadK(2, a);
  alone.ReadK(2, b);
  // Equal up to float rounding, not bit for bit: the GEMMs see 200 rows in
  // one run and 100 in the other, and OpenBLAS's Haswell kernel sums edge
  // tiles in another order. A prompt leaking into the next one would move
  // the keys by about their own size.
  float scale = 0;
  for (float v : b) scale = std::max(scale, std::fabs(v));
  ASSERT_GT(scale, 0.0f);
  for (int h = 0; h < 2; ++h)
    for (int64_t i = 0; i < 100 * D; ++i)
      ASSERT_NEAR(a[static_cast<size_t>(h * 200 * D + 100 * D + i)],
                  b[static_cast<size_t>(h * 100 * D + i)], 1e-5f * scale)
          << "head " << h << " value " << i;
}

struct BadCase {
  const char* name;
  std::string args;
  const char* message;
};

TEST(Capture, BadInputExitsWithOneLineAndNoOutput) {
  test::ScratchDir dir;
  const auto good = test::DataDir() / "qwen2-tiny/tied-bf16";
  const auto ids = (good / "input_ids.json").string();
  // A model folder with a config whose head counts do not divide.
  std::filesystem::create_directory(dir / "bad-heads");
  std::filesystem::copy(good / "model.safetensors", dir / "bad-heads/model.safetensors");
  std::string config = ReadTextFile(good / "config.json");
  config.replace(config.find("\"num_key_value_heads\": 2"), 24, "\"num_key_value_heads\": 3");
  std::ofstream(dir / "bad-heads/config.json") << config;
  // A truncated weights file.
  std::filesystem::create_directory(dir / "truncated");
  std::filesystem::copy(good / "config.json", dir / "truncated/config.json");
  std::filesystem::copy(good / "model.safetensors", dir / "truncated/model.safetensors");
  std::filesystem::resize_file(dir / "truncated/model.safetensors", 1000);
  // An unknown architecture.
  std::filesystem::create_directory(dir / "arch");
  std::filesystem::copy(good / "model.safetensors", dir / "arch/model.safetensors");
  config = ReadTextFile(good / "config.json");
  config.replace(config.find("Qwen2ForCausalLM"), 16, "MambaForCausalLM");
  std::ofstream(dir / "arch/config.json") << config;
  std::ofstream(dir / "ids-bad.json") << R"({"input_ids": [1, -4]})";
  std::ofstream(dir / "ids-big.json") << R"({"input_ids": [1, 100000]})";

  const std::string out = (dir / "out.safetensors").string();
  const std::vector<BadCase> cases = {
      {"missing model", "--model " + (dir / "nope").string() + " --input-ids " + ids,
       "no such folder"},
      {"heads", "--model " + (dir / "bad-heads").string() + " --input-ids " + ids,
       "not a multiple of num_key_value_heads"},
      {"truncated", "--model " + (dir / "truncated").string() + " --input-ids " + ids,
       "runs past the end"},
      {"architecture", "--model " + (dir / "arch").string() + " --input-ids " + ids,
       "MambaForCausalLM' is not implemented"},
      {"missing ids", "--model " + good.string() + " --input-ids " + (dir / "none.json").string(),
       "cannot open"},
      {"negative id",
       "--model " + good.string() + " --input-ids " + (dir / "ids-bad.json").string(),
       "input_ids[1]"},
      {"id past vocab",
       "--model " + good.string() + " --input-ids " + (dir / "ids-big.json").string(),
       "outside the model's vocabulary"},
      {"chunk", "--model " + good.string() + " --input-ids " + ids + " --chunk-len 7",
       "does not divide"},
      {"too many tokens", "--model " + good.string() + " --input-ids " + ids + " --tokens 4096",
       "fewer than --tokens"},
  };
  for (const auto& c : cases) {
    const auto result = test::RunKvq("capture " + c.args + " --out " + out);
    EXPECT_EQ(result.exit_code, 2) << c.name << ": " << result.output;
    EXPECT_NE(result.output.find(c.message), std::string::npos) << c.name << ": " << result.output;
    EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1)
        << c.name << ": " << result.output;
    EXPECT_FALSE(std::filesystem::exists(out)) << c.name;
  }
  const auto unwritable = test::RunKvq("capture --model " + good.string() + " --input-ids " + ids +
                                       " --out /nonexistent-dir/x.safetensors");
  EXPECT_EQ(unwritable.exit_code, 1) << unwritable.output;
  EXPECT_NE(unwritable.output.find("/nonexistent-dir/x.safetensors"), std::string::npos);
}

TEST(MakeModel, WritesALoadableModelOfThePresetGeometry) {
  test::ScratchDir dir;
  const auto result =
      test::RunKvq("make-model --preset tiny --seed 3 --dtype f16 --out " + (dir / "m").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const ModelConfig config = ModelConfig::Load(dir / "m/config.json");
  EXPECT_EQ(config.vocab_size, 151936);
  EXPECT_EQ(config.architecture, "Qwen2ForCausalLM");
  // Same seed, same bytes.
  ASSERT_EQ(
      test::RunKvq("make-model --preset tiny --seed 3 --dtype f16 --out " + (dir / "m2").string())
          .exit_code,
      0);
  EXPECT_EQ(ReadTextFile(dir / "m/model.safetensors"), ReadTextFile(dir / "m2/model.safetensors"));
  const auto bad = test::RunKvq("make-model --preset gpt5 --out " + (dir / "x").string());
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("unknown model preset 'gpt5'"), std::string::npos);
}

}  // namespace
}  // namespace kvq
