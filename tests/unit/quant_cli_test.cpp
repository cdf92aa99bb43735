// kvq quant and kvq bytes end to end.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kvq/capture/dump.h"
#include "kvq/capture/synthetic.h"
#include "kvq/common/io.h"
#include "test_util.h"

namespace kvq {
namespace {

using test::RunKvq;

TEST(QuantCli, BytesPrintsTheReferenceFigures) {
  const auto r = RunKvq("bytes --preset qwen2.5-0.5b --tokens 4096");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* line : {"fp16 ", "strat1 ", "strat2 ", "strat3 "}) {
    EXPECT_NE(r.output.find(line), std::string::npos) << line;
  }
  auto row = [&](const std::string& name) {
    const size_t at = r.output.find("\n" + name + " ");
    EXPECT_NE(at, std::string::npos) << name;
    return r.output.substr(at + 1, r.output.find('\n', at + 1) - at - 1);
  };
  EXPECT_NE(row("fp16").find("12,288     (48.0 MiB)"), std::string::npos) << row("fp16");
  EXPECT_NE(row("strat1").find("6,144     (24.0 MiB)"), std::string::npos) << row("strat1");
  EXPECT_NE(row("strat2").find("6,528     (25.5 MiB)"), std::string::npos) << row("strat2");
  EXPECT_NE(row("strat3").find("6,720     (26.2 MiB)"), std::string::npos) << row("strat3");
  EXPECT_NE(row("strat1").find("384 B"), std::string::npos) << row("strat1");  // 96 fp32 scales.
  EXPECT_NE(row("q4_0").find("3,456"), std::string::npos) << row("q4_0");
}

// Every example of the format table, as a whole-cache strategy: `kvq bytes`
// prints its FormatCost over Qwen2.5-0.5B's 24 layers x 2 kv heads, K and V.
TEST(QuantCli, BytesPrintsEveryTableFormat) {
  std::vector<FormatSpec> specs;
  std::string list;
  for (const FormatTraits& traits : FormatTable()) {
    for (const FormatSpec& spec : test::TableExamples(traits, false)) {
      specs.push_back(spec);
      if (!list.empty()) list += ';';
      list += spec.Name();
    }
  }
  const auto r = RunKvq("bytes --preset qwen2.5-0.5b --tokens 4096 --strategy '" + list + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const FormatSpec& spec : specs) {
    const size_t at = r.output.find(fmt::format("\n{} ", spec.Name()));
    ASSERT_NE(at, std::string::npos) << spec.Name();
    std::string figure;
    std::istringstream(r.output.substr(at + 1)) >> figure >> figure;  // name, bytes/token
    std::erase(figure, ',');
    const double expected = FormatCost(spec, 64, 4096).per_token * 24 * 2 * 2;
    EXPECT_NEAR(std::stod(figure), expected, 0.005) << spec.Name();
  }
}

TEST(QuantCli, BytesReadsAModelConfig) {
  test::ScratchDir dir;
  WriteTextFileAtomic(dir / "config.json",
                      R"({"architectures": ["Qwen2ForCausalLM"], "num_hidden_layers": 24,
                          "num_attention_heads": 14, "num_key_value_heads": 2,
                          "hidden_size": 896, "intermediate_size": 4864,
                          "vocab_size": 151936})");
  const auto r = RunKvq("bytes --model " + dir.path().string() + " --strategy strat2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("6,528"), std::string::npos) << r.output;
  EXPECT_EQ(RunKvq("bytes --model " + (dir / "nope").string()).exit_code, 2);
  EXPECT_EQ(RunKvq("bytes --preset llama-9000").exit_code, 2);
  // The config parser capture uses: what capture refuses, bytes refuses.
  WriteTextFileAtomic(dir / "config.json",
                      R"({"num_hidden_layers": 24, "num_attention_heads": 14,
                          "num_key_value_heads": 2, "hidden_size": 896})");
  const auto partial = RunKvq("bytes --model " + dir.path().string());
  EXPECT_EQ(partial.exit_code, 2);
  EXPECT_NE(partial.output.find("'architectures' must list exactly one"), std::string::npos)
      << partial.output;
}

class QuantCliDump : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.num_layers = 9;
    options_.tokens = 256;
    options_.chunk_len = 128;
    WriteSyntheticDump(dump_path(), options_);
  }
  std::filesystem::path dump_path() const { return dir_ / "kv.safetensors"; }
  test::ScratchDir dir_;
  SyntheticDumpOptions options_;
};

TEST_F(QuantCliDump, WritesCsvJsonAndTheReferenceSeedCsv) {
  const auto r = RunKvq("quant --kv " + dump_path().string() +
                        " --strategy 1,2,k=int4:g32:token,v=int4:g32:dim --csv " +
                        (dir_ / "q.csv").string() + " --json " + (dir_ / "q.json").string() +
                        " --seed-csv " + (dir_ / "seed.csv").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("summary 1: 2304.0 bytes/token"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("80% of K error in "), std::string::npos) << r.output;
  const std::string csv = ReadTextFile(dir_ / "q.csv");
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "strategy,tensor,layer,head,format,tokens,head_dim,max_abs,sse,mse,nmse,sqnr_db,"
            "bytes_per_token");
  const int rows_per_strategy = options_.num_layers * 2 * options_.num_kv_heads;
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 3 * rows_per_strategy);
  EXPECT_NE(csv.find("\"k=int4:g32:token,v=int4:g32:dim\",k,0,0,int4:g32:token,256,64,"),
            std::string::npos);
  const auto json = nlohmann::json::parse(ReadTextFile(dir_ / "q.json"));
  ASSERT_EQ(json["rows"].size(), static_cast<size_t>(3 * rows_per_strategy));
  const auto& first = json["rows"][0];
  EXPECT_EQ(first["strategy"], "1");
  EXPECT_EQ(first["format"], "int8:tensor");
  EXPECT_NEAR(first["mse"].get<double>(), first["sse"].get<double>() / (256 * 64), 1e-12);
  EXPECT_NEAR(first["sqnr_db"].get<double>(), -10 * std::log10(first["nmse"].get<double>()), 1e-9);

  // Seed CSV: the reference system's columns and number formatting, strategy numbers 1 and 2.
  std::istringstream seed(ReadTextFile(dir_ / "seed.csv"));
  std::string line;
  std::getline(seed, line);
  char file[32], tensor[2];
  int layer, tokens, head, dim, strategy;
  double max_abs, sse, mse;
  ASSERT_EQ(std::sscanf(line.c_str(), "%31[^,],%d,%1[kv],%d,%d,%d,%d,%lf,%lf,%lf", file, &layer,
                        tensor, &tokens, &head, &dim, &strategy, &max_abs, &sse, &mse),
            10)
      << line;
  EXPECT_EQ(std::string(file), "layer_00.k.bin");
  EXPECT_EQ(strategy, 1);
  EXPECT_NEAR(max_abs, first["max_abs"].get<double>(), 1e-6);
  EXPECT_NEAR(mse, sse / (256 * 64), 1e-6);
  EXPECT_NE(line.find(fmt::format("{:.6f}", first["sse"].get<double>())), std::string::npos);
  std::getline(seed, line);
  EXPECT_EQ(line.substr(0, 27), "layer_00.k.bin,0,k,256,1,64");
  std::getline(seed, line);
  EXPECT_EQ(line.substr(0, 27), "layer_00.v.bin,0,v,256,0,64");
}

TEST(QuantCli, PresetsRunOnATwoLayerDump) {
  // strat3 mentions K head (8, 0); a 2-layer model still takes every preset,
  // while a selector the user wrote past the last layer is refused.
  test::ScratchDir dir;
  SyntheticDumpOptions o;
  o.num_layers = 2;
  o.tokens = 128;
  o.chunk_len = 64;
  WriteSyntheticDump(dir / "kv.safetensors", o);
  const std::string kv = "quant --no-table --kv " + (dir / "kv.safetensors").string();
  auto r = RunKvq(kv + " --strategy fp16,1,2,3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("summary 3: 720.0 bytes/token"), std::string::npos) << r.output;
  r = RunKvq(kv + " --strategy 'strat3,k[8.0]=fp16'");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("layer out of range"), std::string::npos) << r.output;
}

TEST_F(QuantCliDump, BadStrategyAndNonFiniteDumpAreClearErrors) {
  auto r = RunKvq("quant --kv " + dump_path().string() + " --strategy k=int8:tensr --csv " +
                  (dir_ / "x.csv").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("'tensr'"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "x.csv"));

  // A dump with a NaN in layer 1, V head 1.
  DumpInfo info = options_.Info();
  info.num_layers = 2;
  DumpWriter writer(dir_ / "nan.safetensors", info);
  std::vector<int32_t> ids(256, 1);
  writer.WriteInputIds(ids);
  std::vector<float> q(static_cast<size_t>(14 * 256 * 64), 0.5f);
  for (int l = 0; l < 2; ++l) {
    SyntheticLayer layer = MakeSyntheticLayer(options_, l);
    if (l == 1) layer.v[256 * 64 + 100] = NAN;
    writer.WriteLayer(l, q, layer.k, layer.v, layer.k_bias);
  }
  writer.Commit();
  r = RunKvq("quant --kv " + (dir_ / "nan.safetensors").string() + " --strategy strat1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("layer 1 v head 1"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace kvq
