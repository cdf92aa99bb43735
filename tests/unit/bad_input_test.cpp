// The bad-input table of docs/bad-inputs.md, row by row, through the CLI:
// every row's input gives its one-line message, its exit code (2 bad usage
// or input, 1 runtime failure) and leaves no output file and no temporary.
// Rows that docs/bad-inputs.md points at other tests are not repeated here.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <thread>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kvq/capture/capture.h"
#include "kvq/capture/dump.h"
#include "kvq/common/error.h"
#include "kvq/common/half.h"
#include "kvq/common/io.h"
#include "kvq/common/json.h"
#include "kvq/model/config.h"
#include "kvq/model/model.h"
#include "kvq/model/random_model.h"
#include "kvq/model/safetensors.h"
#include "kvq/quant/strategy.h"
#include "test_util.h"

namespace kvq {
namespace {

namespace fs = std::filesystem;
using test::RunKvq;

// The BF16 fixture every model row starts from.
fs::path GoodModel() { return test::DataDir() / "qwen2-tiny/tied-bf16"; }
std::string GoodIds() { return (GoodModel() / "input_ids.json").string(); }

// Every file left in `dir` whose name contains `part`.
std::vector<std::string> FilesWith(const fs::path& dir, const std::string& part) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.find(part) != std::string::npos) names.push_back(name);
  }
  return names;
}

// Runs `kvq <args>` and checks the row: exit code, one error line
// ("kvq: error: " then the message; stdout may hold results printed before
// the failure), and that `out` (when given) was not written and left no
// temporary beside it.
void ExpectRow(const std::string& args, int exit_code, const std::string& message,
               const fs::path& out = {}) {
  SCOPED_TRACE("kvq " + args);
  const test::CommandResult r = RunKvq(args);
  EXPECT_EQ(r.exit_code, exit_code) << r.output;
  const std::string prefix = "kvq: error: ";
  const size_t at = r.output.find(prefix);
  ASSERT_NE(at, std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(prefix, at + 1), std::string::npos) << r.output;
  const std::string line = r.output.substr(at, r.output.find('\n', at) - at);
  EXPECT_NE(line.find(message), std::string::npos) << r.output;
  if (!out.empty()) {
    EXPECT_FALSE(fs::exists(out)) << out;
    EXPECT_TRUE(FilesWith(out.parent_path(), ".tmp").empty());
  }
}

// Every tensor of a safetensors file, bytes copied, in file order.
std::vector<OwnedTensor> ReadAll(const fs::path& path) {
  const SafeTensorsFile file = SafeTensorsFile::Open(path);
  std::vector<OwnedTensor> tensors;
  for (const TensorView& t : file.tensors()) {
    tensors.push_back(
        {{t.name, t.dtype, t.shape}, std::vector<uint8_t>(t.data, t.data + t.nbytes)});
  }
  return tensors;
}

OwnedTensor& Named(std::vector<OwnedTensor>& tensors, const std::string& name) {
  auto it = std::find_if(tensors.begin(), tensors.end(),
                         [&](const OwnedTensor& t) { return t.spec.name == name; });
  EXPECT_NE(it, tensors.end()) << name;
  return *it;
}

void SetBf16(OwnedTensor& t, size_t index, float value) {
  ASSERT_EQ(t.spec.dtype, DType::kBF16);
  const uint16_t bits = FloatToBf16(value);
  std::memcpy(t.bytes.data() + 2 * index, &bits, 2);
}

// A copy of the good model whose tensors went through `edit`.
fs::path EditedModel(const fs::path& dir, const std::string& name,
                     const std::function<void(std::vector<OwnedTensor>&)>& edit) {
  const fs::path model = dir / name;
  fs::create_directory(model);
  fs::copy(GoodModel() / "config.json", model / "config.json");
  std::vector<OwnedTensor> tensors = ReadAll(GoodModel() / "model.safetensors");
  edit(tensors);
  WriteSafeTensors(model / "model.safetensors", tensors);
  return model;
}

// A copy of the good model whose model.safetensors is `bytes`.
fs::path RawModel(const fs::path& dir, const std::string& name, const std::string& bytes) {
  const fs::path model = dir / name;
  fs::create_directory(model);
  fs::copy(GoodModel() / "config.json", model / "config.json");
  std::ofstream(model / "model.safetensors", std::ios::binary) << bytes;
  return model;
}

// An 8-byte little-endian length, the header text, then `data_bytes` zeros.
std::string RawSafetensors(const std::string& header, size_t data_bytes,
                           uint64_t header_length = std::numeric_limits<uint64_t>::max()) {
  const uint64_t n =
      header_length == std::numeric_limits<uint64_t>::max() ? header.size() : header_length;
  std::string bytes(8, '\0');
  std::memcpy(bytes.data(), &n, 8);
  return bytes + header + std::string(data_bytes, '\0');
}

std::string Capture(const fs::path& model, const fs::path& out, const std::string& more = "") {
  return "capture --model " + model.string() + " --input-ids " + GoodIds() + " --out " +
         out.string() + more;
}

// ---- Usage. ----

TEST(BadInput, UsageErrorsExit2) {
  test::CommandResult r = RunKvq("version --bogus");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--bogus"), std::string::npos) << r.output;
  r = RunKvq("quant");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--kv is required"), std::string::npos) << r.output;
  r = RunKvq("no-such-command");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = RunKvq("capture --model x --input-ids y --corpus wikitext --out z");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("excludes"), std::string::npos) << r.output;
  EXPECT_EQ(RunKvq("version").exit_code, 0);
}

// ---- Model files. ----

TEST(BadInput, MalformedSafetensorsExit2) {
  test::ScratchDir dir;
  const fs::path out = dir / "out.safetensors";
  const std::string entry = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  struct Row {
    const char* name;
    std::string bytes;
    const char* message;
  };
  const std::vector<Row> rows = {
      {"shorter than 8 bytes", "abc", "truncated safetensors file (3 bytes"},
      {"header length past the end", RawSafetensors(entry, 8, 1 << 20), "runs past the end"},
      {"header length 2^62", RawSafetensors(entry, 8, uint64_t{1} << 62),
       "is over kvq's limit of 104857600 bytes (100 MiB)"},
      {"header not JSON", RawSafetensors("{\"w\": [", 8), "header is not valid JSON"},
      {"header not an object", RawSafetensors("[1, 2]", 0), "header is not a JSON object"},
      {"offsets outside the data",
       RawSafetensors(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", 8),
       "outside the data section"},
      {"offsets disagree with the shape",
       RawSafetensors(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
       "needs 12 bytes, data_offsets give 8"},
      {"shape overflows",
       RawSafetensors(
           R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8),
       "shape is too large"},
      {"unknown dtype",
       RawSafetensors(R"({"w":{"dtype":"F128","shape":[2],"data_offsets":[0,8]}})", 8),
       "unknown dtype \"F128\""},
      {"overlapping tensors",
       RawSafetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                      12),
       "tensors 'a' and 'b' overlap"},
      {"empty tensor inside an earlier one, then an overlap",
       RawSafetensors(R"({"a":{"dtype":"U8","shape":[100],"data_offsets":[0,100]},)"
                      R"("b":{"dtype":"U8","shape":[0],"data_offsets":[10,10]},)"
                      R"("c":{"dtype":"U8","shape":[10],"data_offsets":[30,40]}})",
                      100),
       "tensors 'a' and 'c' overlap"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    const fs::path model = RawModel(dir.path(), "m", row.bytes);
    ExpectRow(Capture(model, out), 2, row.message, out);
    ExpectRow(Capture(model, out), 2, (model / "model.safetensors").string(), out);
    fs::remove_all(model);
  }
}

TEST(BadInput, WeightsOfTheWrongDtypeShapeOrNameExit2) {
  test::ScratchDir dir;
  const fs::path out = dir / "out.safetensors";
  const std::string q = "model.layers.1.self_attn.q_proj.weight";
  ExpectRow(Capture(EditedModel(dir.path(), "dtype",
                                [&](auto& t) { Named(t, q).spec.dtype = DType::kI16; }),
                    out),
            2, "tensor '" + q + "' has dtype I16; weights must be F32, F16 or BF16", out);
  ExpectRow(Capture(EditedModel(dir.path(), "shape",
                                [&](auto& t) {
                                  Named(t, q).spec.shape = {32, 128};
                                }),
                    out),
            2, "tensor '" + q + "' has shape [32, 128], config.json implies [64, 64]", out);
  ExpectRow(
      Capture(EditedModel(dir.path(), "missing", [&](auto& t) { t.erase(t.begin() + 3); }), out), 2,
      "model has no tensor", out);
  const fs::path bad_config = dir / "config";
  fs::create_directory(bad_config);
  fs::copy(GoodModel() / "model.safetensors", bad_config / "model.safetensors");
  std::ofstream(bad_config / "config.json") << "{\"architectures\": [\"Qwen2ForCausalLM\"],";
  ExpectRow(Capture(bad_config, out), 2, "config.json: not valid JSON", out);
}

TEST(BadInput, ConfigCountsOfZeroExit2) {
  test::ScratchDir dir;
  std::string config = ReadTextFile(GoodModel() / "config.json");
  config.replace(config.find("\"num_attention_heads\": 4"), 24, "\"num_attention_heads\": 0");
  WriteTextFileAtomic(dir / "config.json", config);
  ExpectRow("bytes --model " + dir.path().string(), 2,
            "'num_attention_heads' must be a positive integer, got 0");
  fs::copy(GoodModel() / "model.safetensors", dir / "model.safetensors");
  ExpectRow(Capture(dir.path(), dir / "out.safetensors"), 2,
            "'num_attention_heads' must be a positive integer, got 0", dir / "out.safetensors");
}

TEST(BadInput, NonFiniteWeightsNameTheTensorAndExit2) {
  test::ScratchDir dir;
  const fs::path out = dir / "out.safetensors";
  const std::string down = "model.layers.1.mlp.down_proj.weight";
  // down_proj is [64, 160]: element 170 is row 1, column 10.
  ExpectRow(
      Capture(EditedModel(dir.path(), "nan", [&](auto& t) { SetBf16(Named(t, down), 170, NAN); }),
              out),
      2, "tensor '" + down + "' holds nan at element 170 (row 1, column 10)", out);
  // The embedding row of a token in the input: named with its element.
  const std::vector<int32_t> ids = ReadInputIdsJson(GoodIds());
  const auto row = static_cast<size_t>(ids[3]);
  ExpectRow(Capture(EditedModel(dir.path(), "embed",
                                [&](auto& t) {
                                  SetBf16(Named(t, "model.embed_tokens.weight"), row * 64 + 7,
                                          INFINITY);
                                }),
                    out),
            2,
            fmt::format("tensor 'model.embed_tokens.weight' holds inf at element {} (row {}, "
                        "column 7)",
                        row * 64 + 7, row),
            out);
}

// The good model with a trained context of 16 positions, in dir/short-context.
fs::path ShortContextModel(const fs::path& dir) {
  const fs::path model = dir / "short-context";
  fs::create_directory(model);
  nlohmann::json config = nlohmann::json::parse(ReadTextFile(GoodModel() / "config.json"));
  config["max_position_embeddings"] = 16;
  WriteTextFileAtomic(model / "config.json", config.dump());
  fs::copy(GoodModel() / "model.safetensors", model / "model.safetensors");
  return model;
}

// Prompts longer than the trained context are refused before any work,
// naming the flag that sets their length; the library refuses them too.
TEST(BadInput, PromptsPastMaxPositionEmbeddingsNameTheFlag) {
  test::ScratchDir dir;
  const fs::path model = ShortContextModel(dir.path());
  const fs::path out = dir / "out.safetensors";
  const std::string limit =
      "config.json: 32 positions are more than the model's "
      "max_position_embeddings 16; ";
  ExpectRow(Capture(model, out, " --tokens 32 --chunk-len 32"), 2, limit + "lower --chunk-len 32",
            out);
  ExpectRow("ppl --model " + model.string() + " --input-ids " + GoodIds() +
                " --tokens 32 --strategy strat1 --json " + (dir / "p.json").string(),
            2, limit + "the 32 tokens are one prompt: split them with --chunk-len", dir / "p.json");
  // Prompts of 16 fit.
  EXPECT_EQ(RunKvq(Capture(model, out, " --tokens 32 --chunk-len 16")).exit_code, 0);
  Model loaded = Model::Load(model);
  const std::vector<int32_t> ids = ReadInputIdsJson(GoodIds());
  try {
    loaded.Forward(std::span(ids).first(17), 17, nullptr, nullptr);
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("17 positions are more than the model's "
                                         "max_position_embeddings 16"),
              std::string::npos)
        << e.what();
  }
  // max_position_embeddings must be a positive integer when given.
  nlohmann::json config = nlohmann::json::parse(ReadTextFile(model / "config.json"));
  config["max_position_embeddings"] = -1;
  WriteTextFileAtomic(model / "config.json", config.dump());
  ExpectRow(Capture(model, dir / "out2.safetensors"), 2,
            "'max_position_embeddings' must be a positive integer, got -1",
            dir / "out2.safetensors");
}

// kvq generate refuses more new tokens than fit the trained context before
// any work, naming --max-new-tokens: the prompt and every new token but the
// last go through the model, so an 8-token prompt leaves room for 9 new
// tokens in 16 positions, and exactly 9 run.
TEST(BadInput, GenerateRefusesNewTokensPastMaxPositionEmbeddings) {
  test::ScratchDir dir;
  const fs::path model = ShortContextModel(dir.path());
  const fs::path out = dir / "g.json";
  const std::string generate = "generate --model " + model.string() + " --input-ids " + GoodIds() +
                               " --strategy int8:token --ignore-eos --json " + out.string();
  ExpectRow(generate + " --tokens 8 --max-new-tokens 10", 2,
            "--max-new-tokens 10 after a prompt of 8 tokens needs 17 positions, more than the "
            "model's max_position_embeddings 16: at most 9 new tokens fit",
            out);
  ExpectRow(generate + " --tokens 17 --max-new-tokens 1", 2,
            "the prompt's 17 tokens are more than the model's max_position_embeddings 16", out);
  const test::CommandResult fits = RunKvq(generate + " --tokens 8 --max-new-tokens 9");
  ASSERT_EQ(fits.exit_code, 0) << fits.output;
  EXPECT_EQ(nlohmann::json::parse(ReadTextFile(out)).at("baseline").at("tokens").size(), 9u);
}

// Decode steps read the stored matrices (no float32 copy): a NaN there is
// found by the step's own scan, named like the forward pass names it, and
// found again on the next step (a scan that threw marks nothing checked).
TEST(BadInput, NonFiniteWeightsAreFoundByDecodeSteps) {
  test::ScratchDir dir;
  const std::string up = "model.layers.1.mlp.up_proj.weight";
  Model model = Model::Load(
      EditedModel(dir.path(), "nan", [&](auto& t) { SetBf16(Named(t, up), 170, NAN); }));
  // Attention over a one-token cache is that token's v (softmax of one key).
  struct CopyV : CachedAttention {
    int group = 0, head_dim = 0;
    void Attend(const LayerKV& kv, int64_t, float* attn) override {
      for (int h = 0; h < group * 2; ++h) {
        std::copy_n(kv.v + (h / group) * head_dim, head_dim, attn + h * head_dim);
      }
    }
  } attention;
  attention.head_dim = model.config().head_dim;
  attention.group = model.config().group_size();
  ASSERT_EQ(model.config().num_kv_heads, 2);
  const int32_t id[1] = {5};
  std::vector<float> hidden;
  for (int call = 0; call < 2; ++call) {
    try {
      model.ForwardAt(id, 0, attention, &hidden);
      ADD_FAILURE() << "call " << call << ": no error";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("tensor '" + up +
                                           "' holds nan at element 170 (row 2, column 42)"),
                std::string::npos)
          << e.what();
    }
  }
  // The tied head, read in place by a one-row Logits: an embedding row the
  // forward pass never widened.
  Model inf_head = Model::Load(EditedModel(dir.path(), "head", [&](auto& t) {
    SetBf16(Named(t, "model.embed_tokens.weight"), 200 * 64 + 3, INFINITY);
  }));
  std::vector<float> row(64, 0.5f), logits(static_cast<size_t>(inf_head.config().vocab_size));
  try {
    inf_head.Logits(row.data(), 1, logits.data());
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(
        std::string(e.what()).find("tensor 'model.embed_tokens.weight' holds inf at element " +
                                   std::to_string(200 * 64 + 3) + " (row 200, column 3)"),
        std::string::npos)
        << e.what();
  }
}

// ---- KV dumps. ----

// A valid dump: 1 layer, 2 heads, 1 kv head, head_dim 4, 8 tokens, F16, with
// a k bias; `edit` may change q, k, v or the bias before they are written.
DumpInfo SmallDumpInfo() {
  DumpInfo info;
  info.model = "tiny";
  info.architecture = "Qwen2ForCausalLM";
  info.num_layers = 1;
  info.num_heads = 2;
  info.num_kv_heads = 1;
  info.head_dim = 4;
  info.tokens = 8;
  info.chunk_len = 8;
  info.has_k_bias = true;
  return info;
}

struct DumpValues {
  std::vector<float> q = std::vector<float>(64, 0.25f), k = std::vector<float>(32, -0.5f),
                     v = std::vector<float>(32, 0.75f), bias = std::vector<float>(4, 0.125f);
};

fs::path WriteDump(const fs::path& path, const std::function<void(DumpValues&)>& edit = {}) {
  DumpValues values;
  for (size_t i = 0; i < values.k.size(); ++i) values.k[i] += 0.01f * static_cast<float>(i);
  if (edit) edit(values);
  DumpWriter writer(path, SmallDumpInfo());
  writer.WriteInputIds(std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8});
  writer.WriteLayer(0, values.q, values.k, values.v, values.bias);
  writer.Commit();
  return path;
}

// A dump written tensor by tensor (to break what DumpWriter cannot).
fs::path WriteRawDump(const fs::path& path, std::map<std::string, std::string> metadata,
                      const std::function<void(std::vector<OwnedTensor>&)>& edit) {
  test::ScratchDir scratch;
  std::vector<OwnedTensor> tensors = ReadAll(WriteDump(scratch / "good.safetensors"));
  edit(tensors);
  WriteSafeTensors(path, tensors, metadata);
  return path;
}

std::string Quant(const fs::path& dump, const std::string& strategy = "strat1") {
  return "quant --kv " + dump.string() + " --strategy '" + strategy + "' --no-table";
}

TEST(BadInput, MalformedDumpsExit2) {
  test::ScratchDir dir;
  const fs::path csv = dir / "rows.csv";
  const std::string csv_flag = " --csv " + csv.string();
  ExpectRow(Quant(GoodModel() / "model.safetensors") + csv_flag, 2, "not a kvq KV dump", csv);

  const auto metadata = SmallDumpInfo().ToMetadata();
  ExpectRow(Quant(WriteRawDump(dir / "shape.safetensors", metadata,
                               [](auto& t) {
                                 Named(t, "layers.0.k").spec.shape = {1, 4, 8};
                               })) +
                csv_flag,
            2, "tensor 'layers.0.k' has shape [1, 4, 8], expected [1, 8, 4] from the metadata",
            csv);
  ExpectRow(Quant(WriteRawDump(dir / "dtype.safetensors", metadata,
                               [](auto& t) { Named(t, "layers.0.v").spec.dtype = DType::kI16; })) +
                csv_flag,
            2, "tensor 'layers.0.v' has dtype I16, expected F16 or F32", csv);
  auto lying = metadata;
  lying["num_layers"] = "99999999999";
  ExpectRow(Quant(WriteRawDump(dir / "layers.safetensors", lying, [](auto&) {})) + csv_flag, 2,
            "dump metadata 'num_layers' = '99999999999' is not an integer in [1, 2147483647]", csv);
  lying = metadata;
  lying["num_layers"] = "2";
  ExpectRow(Quant(WriteRawDump(dir / "missing.safetensors", lying, [](auto&) {})) + csv_flag, 2,
            "no tensor 'layers.1.q'", csv);
}

TEST(BadInput, NonFiniteDumpValuesExit2) {
  test::ScratchDir dir;
  const fs::path csv = dir / "rows.csv";
  // K head 0, token 3, dim 1 (k is [1, 8, 4]): element 13.
  const fs::path k_inf = WriteDump(dir / "k-inf.safetensors", [](auto& v) { v.k[13] = INFINITY; });
  ExpectRow(Quant(k_inf) + " --csv " + csv.string(), 2, "layer 0 k head 0: token 3 holds inf", csv);
  // The generic path (a Hadamard rotation around the fused kernel) too.
  ExpectRow(Quant(k_inf, "k=int8:token+had,v=fp16") + " --csv " + csv.string(), 2,
            "layer 0 k head 0: token 3 holds inf", csv);
  ExpectRow("attn --kv " + k_inf.string() + " --strategy fp16 --csv " + csv.string(), 2,
            "layers.0.k head 0 token 3 holds inf", csv);
  const fs::path q_nan = WriteDump(dir / "q-nan.safetensors", [](auto& v) { v.q[40] = NAN; });
  ExpectRow("attn --kv " + q_nan.string() + " --strategy fp16", 2,
            "layers.0.q head 1 token 2 holds nan");
  const fs::path bias_nan =
      WriteDump(dir / "bias-nan.safetensors", [](auto& v) { v.bias[2] = NAN; });
  // The k bias is read by formats that use it (+bias).
  ExpectRow(Quant(bias_nan, "k=int8:token+bias,v=fp16") + " --csv " + csv.string(), 2,
            "layers.0.k_bias head 0 holds nan", csv);
}

// ---- Strategies and plans. ----

TEST(BadInput, PlanForAnotherGeometryExit2) {
  test::ScratchDir dir;
  const fs::path dump = WriteDump(dir / "dump.safetensors");
  const fs::path csv = dir / "rows.csv";
  WriteTextFileAtomic(dir / "plan.json", PlanJson(Strategy::Parse("strat1"), {3, 1, 4}));
  ExpectRow(Quant(dump, "plan:" + (dir / "plan.json").string()) + " --csv " + csv.string(), 2,
            "the plan was made for 3 layers x 1 kv heads x head_dim 4, the model has 1 x 1 x 4",
            csv);
  WriteTextFileAtomic(dir / "broken.json",
                      R"({"kind": "kvq.plan", "geometry": {"num_layers": 1}})");
  ExpectRow(Quant(dump, "plan:" + (dir / "broken.json").string()), 2, "malformed");
  WriteTextFileAtomic(dir / "formats.json",
                      R"({"kind": "kvq.plan", "geometry": {"num_layers": 1, "num_kv_heads": 1,)"
                      R"( "head_dim": 4}, "k": [["int9:token"]], "v": [["fp16"]]})");
  ExpectRow(Quant(dump, "plan:" + (dir / "formats.json").string()), 2, "k[0][0]");
  ExpectRow(Quant(dump, "k=int4:g32:dim"), 2, "head_dim");
}

// ---- Tokens: corpora, tokenizers. ----

std::string CorpusCapture(const fs::path& corpus, const fs::path& out, int tokens) {
  return "capture --model " + GoodModel().string() + " --tokenizer " +
         (test::DataDir() / "bad-inputs/byte-bpe-tokenizer.json").string() + " --corpus " +
         corpus.string() + " --tokens " + std::to_string(tokens) + " --out " + out.string();
}

TEST(BadInput, CorporaAndTokenizersExit2) {
  test::ScratchDir dir;
  const fs::path out = dir / "out.safetensors";
  WriteTextFileAtomic(dir / "empty.txt", "");
  ExpectRow(CorpusCapture(dir / "empty.txt", out, 16), 2,
            "empty.txt has 0 tokens, fewer than the 16 requested", out);
  WriteTextFileAtomic(dir / "empty.jsonl", "\n\n");
  ExpectRow(CorpusCapture(dir / "empty.jsonl", out, 16), 2,
            "empty.jsonl has 0 tokens, fewer than the 16 requested", out);
  WriteTextFileAtomic(dir / "short.txt", "abc abc abc");
  ExpectRow(CorpusCapture(dir / "short.txt", out, 100), 2,
            "short.txt has 5 tokens, fewer than the 100 requested", out);
  // Gzip magic and a valid header, then a deflate stream cut short.
  WriteTextFileAtomic(dir / "cut.jsonl.gz",
                      std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xab\x56\x2a", 13));
  ExpectRow(CorpusCapture(dir / "cut.jsonl.gz", out, 16), 2,
            "cut.jsonl.gz: cannot read: truncated gzip stream", out);
  // And the run works on a real corpus with that tokenizer.
  WriteTextFileAtomic(dir / "ok.txt", "abc abc abc abc abc abc abc abc");
  EXPECT_EQ(RunKvq(CorpusCapture(dir / "ok.txt", out, 8)).exit_code, 0);
  EXPECT_TRUE(fs::exists(out));

  WriteTextFileAtomic(dir / "tokenizer.json", R"({"model": {"type": "Unigram"}})");
  ExpectRow("tokenize --tokenizer " + (dir / "tokenizer.json").string() + " --text hi", 2,
            "tokenizer.json");
}

// ---- Output: unwritable folders, a full disk, SIGINT. ----

TEST(BadInput, UnwritableOutputExits1) {
  test::ScratchDir dir;
  const fs::path dump = WriteDump(dir / "dump.safetensors");
  ExpectRow(Quant(dump) + " --csv /nonexistent-kvq-dir/rows.csv", 1,
            "/nonexistent-kvq-dir/rows.csv: cannot write: No such file or directory");
  WriteTextFileAtomic(dir / "file", "x");
  ExpectRow(Quant(dump) + " --json " + (dir / "file/rows.json").string(), 1,
            "cannot write: Not a directory");
  ExpectRow(Capture(GoodModel(), dir / "file/out.safetensors"), 1, "cannot write: Not a directory");
}

// Runs `kvq <args>` with its atomic temporary for `target` pointing at
// /dev/full: popen's shell makes the link under its own PID ($$), then execs
// kvq, which keeps that PID, so every write gets ENOSPC as on a full disk.
test::CommandResult RunOnFullDisk(const fs::path& target, const std::string& args) {
  const std::string command = "ln -s /dev/full '" + target.string() + ".'$$'.tmp' && exec " +
                              test::KvqBinary().string() + " " + args + " 2>&1";
  test::CommandResult result;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
    result.output.append(buffer.data(), n);
  }
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

TEST(BadInput, FullDiskExits1AndLeavesNothing) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  test::ScratchDir dir;
  const fs::path dump = WriteDump(dir / "dump.safetensors");
  const fs::path csv = dir / "rows.csv";
  const fs::path out = dir / "out.safetensors";
  for (const auto& [target, args] : {std::pair{csv, Quant(dump) + " --csv " + csv.string()},
                                     std::pair{out, Capture(GoodModel(), out)}}) {
    SCOPED_TRACE(args);
    const test::CommandResult r = RunOnFullDisk(target, args);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(target.string() + ": write failed: No space left on device"),
              std::string::npos)
        << r.output;
    EXPECT_FALSE(fs::exists(target));
    EXPECT_TRUE(FilesWith(dir.path(), ".tmp").empty());
  }
}

// SIGINT while capture is writing its dump: the process dies of SIGINT and
// neither the dump nor its temporary remains.
TEST(BadInput, SigintDuringCaptureLeavesNoFile) {
  test::ScratchDir dir;
  // Big enough that the forward pass takes a while after the dump's
  // temporary appears: 4 layers, 8192 tokens in one prompt.
  ModelConfig config = FindModelPreset("tiny").config;
  config.vocab_size = 1000;
  config.num_layers = 4;
  WriteRandomModel(config, 7, DType::kBF16, dir / "model");
  std::string ids = "{\"input_ids\": [";
  for (int t = 0; t < 8192; ++t) {
    if (t) ids += ',';
    ids += std::to_string((t * 7919) % 1000);
  }
  WriteTextFileAtomic(dir / "ids.json", ids + "]}");
  const std::string out = (dir / "dump.safetensors").string();
  const std::string model = (dir / "model").string();
  const std::string ids_path = (dir / "ids.json").string();
  const std::string binary = test::KvqBinary().string();

  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, STDERR_FILENO);
    ::execl(binary.c_str(), binary.c_str(), "capture", "--model", model.c_str(), "--input-ids",
            ids_path.c_str(), "--out", out.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Wait (up to 60 s) for the temporary, then interrupt.
  bool seen = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!seen && std::chrono::steady_clock::now() < deadline) {
    seen = !FilesWith(dir.path(), ".tmp").empty();
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ::kill(pid, SIGINT);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(seen) << "the capture never created its temporary";
  ASSERT_TRUE(WIFSIGNALED(status))
      << "exit status " << WEXITSTATUS(status) << ": the capture finished before SIGINT";
  EXPECT_EQ(WTERMSIG(status), SIGINT);
  EXPECT_FALSE(fs::exists(out));
  EXPECT_TRUE(FilesWith(dir.path(), ".tmp").empty());
}

// The final norm is only read when final hidden states are asked for.
TEST(BadInput, NonFiniteFinalNormIsNamedWhenUsed) {
  test::ScratchDir dir;
  const fs::path model_dir = EditedModel(
      dir.path(), "norm", [](auto& t) { SetBf16(Named(t, "model.norm.weight"), 5, -INFINITY); });
  Model model = Model::Load(model_dir);
  const std::vector<int32_t> ids = {1, 2, 3, 4};
  model.Forward(ids, 4, nullptr, nullptr);
  std::vector<float> hidden;
  try {
    model.Forward(ids, 4, nullptr, &hidden);
    ADD_FAILURE() << "accepted an Inf in model.norm.weight";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'model.norm.weight' holds -inf at element 5"),
              std::string::npos)
        << e.what();
  }
}

// Finite weights whose products overflow float32: the residual stream check
// stops the run at the layer where it happens (a runtime failure, exit 1).
TEST(BadInput, ResidualOverflowNamesLayerAndTokenAndExits1) {
  test::ScratchDir dir;
  const fs::path out = dir / "out.safetensors";
  // A post-attention norm weight of 3e38: gate and up reach ~1e37 and their
  // product overflows for every token.
  const fs::path model = EditedModel(dir.path(), "overflow", [](auto& t) {
    OwnedTensor& norm = Named(t, "model.layers.1.post_attention_layernorm.weight");
    for (size_t i = 0; i < norm.bytes.size() / 2; ++i) SetBf16(norm, i, 3e38f);
  });
  ExpectRow(Capture(model, out), 1, "layer 1: the residual stream holds ", out);
  ExpectRow(Capture(model, out), 1, "at token 0 (prompt 0, position 0)", out);
}

// ==== Hostile inputs (issue #20): one block per class of docs/bad-inputs.md. ====

// The bytes of a file, to check that a refused command left an input alone.
std::string Bytes(const fs::path& path) { return ReadTextFile(path, size_t{1} << 31); }

// A copy of the good model folder (config, weights, ids) under `dir`.
fs::path CopiedModel(const fs::path& dir) {
  const fs::path model = dir / "model";
  fs::create_directory(model);
  for (const char* name : {"config.json", "model.safetensors", "input_ids.json"})
    fs::copy(GoodModel() / name, model / name);
  return model;
}

// config.json text with `field` set to the JSON `value` (added when absent).
std::string SetConfigField(std::string config, const std::string& field, const std::string& value) {
  const size_t at = config.find("\"" + field + "\"");
  if (at == std::string::npos) {
    config.insert(config.find('{') + 1, "\"" + field + "\": " + value + ",");
    return config;
  }
  const size_t colon = config.find(':', at), end = config.find_first_of(",}", colon);
  config.replace(colon + 1, end - colon - 1, " " + value);
  return config;
}

// `depth` nested arrays around `inner`.
std::string Nested(size_t depth, const std::string& inner = "1") {
  return std::string(depth, '[') + inner + std::string(depth, ']');
}

// ---- Data loss: no output is an input; no two outputs share a file. ----

TEST(HostileInput, OutputsThatAreInputsAreRefusedBeforeAnyWork) {
  test::ScratchDir dir;
  const fs::path model = CopiedModel(dir.path());
  const std::string weights = Bytes(model / "model.safetensors");
  // capture writing over the weights it reads, directly, through "..", and
  // through a symbolic link.
  const std::string ids = " --input-ids " + (model / "input_ids.json").string();
  for (const fs::path& out :
       {model / "model.safetensors", dir / "model/../model/model.safetensors", dir / "link"}) {
    if (out == dir / "link") fs::create_symlink(model / "model.safetensors", out);
    const auto r = RunKvq("capture --model " + model.string() + ids + " --out " + out.string());
    EXPECT_EQ(r.exit_code, 2) << r.output;
    // A link is refused as a link, before it is followed.
    const char* message =
        out == dir / "link" ? "is a symbolic link" : "kvq never writes over its input";
    EXPECT_NE(r.output.find(message), std::string::npos) << r.output;
    EXPECT_EQ(Bytes(model / "model.safetensors"), weights);
  }
  ExpectRow(
      "capture --model " + model.string() + ids + " --out " + (model / "input_ids.json").string(),
      2, "is the input --input-ids");
  ExpectRow(
      "capture --model " + model.string() + ids + " --out " + (model / "config.json").string(), 2,
      "is a file of the input --model");

  const fs::path dump = WriteDump(dir / "dump.safetensors");
  const std::string dump_bytes = Bytes(dump);
  for (const char* flag : {"--csv", "--json", "--seed-csv"}) {
    ExpectRow(Quant(dump) + " " + flag + " " + dump.string(), 2, "is the input --kv");
  }
  ExpectRow("attn --kv " + dump.string() + " --strategy fp16 --json " + dump.string(), 2,
            "is the input --kv");
  ExpectRow("plan --kv " + dump.string() + " --budget-ratio 0.5 --out " + dump.string(), 2,
            "is the input --kv");
  EXPECT_EQ(Bytes(dump), dump_bytes);
  // A plan file named by --strategy is an input too.
  WriteTextFileAtomic(dir / "plan.json", "{}");
  ExpectRow(Quant(dump, "plan:" + (dir / "plan.json").string()) + " --csv " +
                (dir / "plan.json").string(),
            2, "is the input --strategy");
  // plot reading and writing one file.
  WriteTextFileAtomic(dir / "rows.csv", "x");
  ExpectRow("plot --kind nmse --in " + (dir / "rows.csv").string() + " --out " +
                (dir / "rows.csv").string(),
            2, "is the input --in");
}

TEST(HostileInput, TwoOutputsOnOneFileAreRefused) {
  test::ScratchDir dir;
  const fs::path dump = WriteDump(dir / "dump.safetensors");
  const fs::path x = dir / "x";
  ExpectRow(Quant(dump) + " --csv " + x.string() + " --json " + x.string(), 2,
            "--csv and --json name the same file", x);
  ExpectRow(Quant(dump) + " --csv " + x.string() + " --seed-csv " + (dir / "." / "x").string(), 2,
            "--csv and --seed-csv name the same file", x);
  ExpectRow("attn --kv " + dump.string() + " --strategy fp16 --csv " + x.string() + " --json " +
                x.string(),
            2, "name the same file", x);
  ExpectRow("plan --kv " + dump.string() + " --budget-ratio 0.5 --out " + x.string() +
                " --pareto " + x.string(),
            2, "name the same file", x);
}

// ---- Stale state: an output path that is not a regular file is refused. ----

TEST(HostileInput, OutputsThatAreLinksDevicesOrFifosAreNotReplaced) {
  test::ScratchDir dir;
  const fs::path dump = WriteDump(dir / "dump.safetensors");
  WriteTextFileAtomic(dir / "target", "keep");
  fs::create_symlink(dir / "target", dir / "link");
  ExpectRow(Quant(dump) + " --csv " + (dir / "link").string(), 2, "is a symbolic link");
  EXPECT_TRUE(fs::is_symlink(dir / "link"));
  EXPECT_EQ(Bytes(dir / "target"), "keep");
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0644), 0);
  ExpectRow(Quant(dump) + " --csv " + (dir / "fifo").string(), 2, "is a FIFO");
  EXPECT_TRUE(fs::is_fifo(dir / "fifo"));
  if (fs::exists("/dev/null")) ExpectRow(Quant(dump) + " --json /dev/null", 2, "character device");
  fs::create_directory(dir / "folder");
  ExpectRow(Quant(dump) + " --csv " + (dir / "folder").string(), 2, "is a folder");
}

TEST(HostileInput, MakeModelRefusesAFolderHoldingAnotherModel) {
  test::ScratchDir dir;
  const fs::path out = dir / "m";
  fs::create_directory(out);
  WriteTextFileAtomic(out / "model.safetensors.index.json", R"({"weight_map": {}})");
  ExpectRow("make-model --preset tiny --out " + out.string(), 2,
            "holds model.safetensors.index.json");
  EXPECT_FALSE(fs::exists(out / "config.json"));
  fs::remove(out / "model.safetensors.index.json");
  WriteTextFileAtomic(out / "model-00001-of-00002.safetensors", "x");
  ExpectRow("make-model --preset tiny --out " + out.string(), 2,
            "holds model-00001-of-00002.safetensors");
}

// kvq run failing on its input (here: token ids past the tiny model's
// vocabulary, found after the folder exists) removes the run folder it
// created, and keeps a folder that was there before.
TEST(HostileInput, RunRemovesTheFolderItCreatedWhenItFails) {
  test::ScratchDir dir;
  const fs::path model = CopiedModel(dir.path());
  fs::copy(test::RepoDataDir() / "tokenizer/qwen2.5/tokenizer.json", model / "tokenizer.json");
  const std::string run = "run --model " + model.string() +
                          " --corpus wikitext --tokens 64 --chunk-len 64 --no-ppl --out ";
  ExpectRow(run + (dir / "new").string(), 2, "outside the model's vocabulary");
  EXPECT_FALSE(fs::exists(dir / "new"));
  fs::create_directory(dir / "old");
  WriteTextFileAtomic(dir / "old/keep", "x");
  ExpectRow(run + (dir / "old").string(), 2, "outside the model's vocabulary");
  EXPECT_TRUE(fs::exists(dir / "old/keep"));
}

// kvq run interrupted once its folder has contents: the signal handler
// removes the folder it created, contents included.
TEST(HostileInput, InterruptedRunRemovesTheFolderItCreated) {
  test::ScratchDir dir;
  const auto made = RunKvq("make-model --preset tiny --out " + (dir / "m").string());
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const fs::path out = dir / "run";
  // Start the run, wait for a file inside its folder, then SIGTERM it.
  const std::string script = test::KvqBinary().string() + " run --model " + (dir / "m").string() +
                             " --corpus wikitext,c4 --tokens 8192 --chunk-len 512 --out " +
                             out.string() +
                             " >/dev/null 2>&1 & pid=$!; i=0; "
                             "while [ -z \"$(find " +
                             out.string() +
                             " -type f 2>/dev/null | head -1)\" ] && "
                             "[ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; "
                             "kill -TERM $pid; wait $pid; echo status=$?";
  FILE* pipe = ::popen(script.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  std::array<char, 256> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    output.append(buffer.data(), n);
  ::pclose(pipe);
  EXPECT_NE(output.find("status=143"), std::string::npos) << output;
  EXPECT_FALSE(fs::exists(out));
}

// kvq run --no-ppl into a folder an earlier run left perplexity files in:
// they are removed, not shown (or read) as this run's.
TEST(HostileInput, RunIntoAnEarlierRunsFolderDropsItsStaleRows) {
  test::ScratchDir dir;
  const auto made = RunKvq("make-model --preset tiny --out " + (dir / "m").string());
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const fs::path stale = dir / "run/m/wikitext";
  fs::create_directories(stale);
  WriteTextFileAtomic(stale / "ppl.json", R"({"stale": true})");
  WriteTextFileAtomic(stale / "ppl.csv", "stale\n");
  WriteTextFileAtomic(stale / "generate.json", R"({"stale": true})");
  WriteTextFileAtomic(dir / "run/m/needle.json", R"({"stale": true})");
  WriteTextFileAtomic(dir / "run/m/needle.csv", "stale\n");
  const auto r = RunKvq("run --model " + (dir / "m").string() +
                        " --corpus wikitext --tokens 128 --chunk-len 128 --strategy strat1 "
                        "--no-ppl --no-generate --out " +
                        (dir / "run").string());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(fs::exists(stale / "ppl.json"));
  EXPECT_FALSE(fs::exists(stale / "ppl.csv"));
  EXPECT_FALSE(fs::exists(stale / "generate.json"));
  EXPECT_FALSE(fs::exists(dir / "run/m/needle.json"));
  EXPECT_FALSE(fs::exists(dir / "run/m/needle.csv"));
}

// ---- Crashes: nesting depth, SIGBUS, NaN in the knapsack. ----

TEST(HostileInput, JsonNestingIsBoundedForEveryReader) {
  // The entry point: 64 levels pass, 65 and 200,000 are refused by name;
  // brackets inside strings do not count.
  EXPECT_NO_THROW(ParseJson(Nested(kMaxJsonDepth), "x"));
  EXPECT_NO_THROW(ParseJson("[\"" + std::string(1000, '[') + "\"]", "x"));
  for (const size_t depth : {size_t{kMaxJsonDepth + 1}, size_t{200000}}) {
    try {
      ParseJson(Nested(depth), "deep.json");
      ADD_FAILURE() << depth;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("deep.json: JSON nested deeper than 64 levels"),
                std::string::npos)
          << e.what();
    }
  }
  // A key twice in one object; the same key in two objects is fine.
  EXPECT_THROW(ParseJson(R"({"a": 1, "b": {"a": 2}, "a": 3})", "x"), InputError);
  EXPECT_NO_THROW(ParseJson(R"({"a": 1, "b": {"a": 2}})", "x"));

  // Every reader, through the CLI.
  test::ScratchDir dir;
  const std::string deep = Nested(200000);
  const fs::path model = CopiedModel(dir.path());
  std::string config = Bytes(model / "config.json");
  config.insert(config.find('{') + 1, "\"deep\": " + deep + ",");
  WriteTextFileAtomic(model / "config.json", config);
  ExpectRow("bytes --model " + model.string(), 2, "config.json: JSON nested deeper");
  ExpectRow(Capture(model, dir / "out.safetensors"), 2, "config.json: JSON nested deeper",
            dir / "out.safetensors");
  WriteTextFileAtomic(dir / "tokenizer.json", "{\"model\": " + deep + "}");
  ExpectRow("tokenize --tokenizer " + (dir / "tokenizer.json").string() + " --text hi", 2,
            "tokenizer.json: JSON nested deeper");
  WriteTextFileAtomic(dir / "plan.json", "{\"kind\": \"kvq.plan\", \"k\": " + deep + "}");
  const fs::path dump = WriteDump(dir / "dump.safetensors");
  ExpectRow(Quant(dump, "plan:" + (dir / "plan.json").string()), 2, "JSON nested deeper");
  WriteTextFileAtomic(dir / "ids.json", "{\"input_ids\": " + deep + "}");
  ExpectRow("capture --model " + GoodModel().string() + " --input-ids " +
                (dir / "ids.json").string() + " --out " + (dir / "o.safetensors").string(),
            2, "ids.json: JSON nested deeper");
  // A safetensors header whose dtype or shape nests deeply.
  for (const std::string& field :
       {"\"dtype\": " + deep + ", \"shape\": [1]", "\"dtype\": \"F32\", \"shape\": " + deep}) {
    const std::string header = "{\"w\": {" + field + ", \"data_offsets\": [0, 4]}}";
    std::ofstream(dir / "deep.safetensors", std::ios::binary) << RawSafetensors(header, 4);
    ExpectRow(Quant(dir / "deep.safetensors"), 2, "JSON nested deeper");
  }
  // A run folder's run.json.
  fs::create_directory(dir / "run");
  WriteTextFileAtomic(dir / "run/run.json", "{\"schema\": " + deep + "}");
  ExpectRow("report --run " + (dir / "run").string(), 2, "run.json: JSON nested deeper");
}

TEST(HostileInput, DuplicateKeysAndRepeatedModifiersAreErrors) {
  test::ScratchDir dir;
  // A safetensors header with one tensor named twice: the first would never
  // be overlap-checked.
  const std::string header = R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, )"
                             R"("w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})";
  std::ofstream(dir / "dup.safetensors", std::ios::binary) << RawSafetensors(header, 4);
  ExpectRow(Quant(dir / "dup.safetensors"), 2, "key 'w' appears twice in one object");
  const fs::path model = CopiedModel(dir.path());
  std::string config = Bytes(model / "config.json");
  config.insert(config.find('{') + 1, "\"num_hidden_layers\": 1,");
  WriteTextFileAtomic(model / "config.json", config);
  ExpectRow("bytes --model " + model.string(), 2, "'num_hidden_layers' appears twice");
  const fs::path dump = WriteDump(dir / "dump.safetensors");
  ExpectRow(Quant(dump, "int8:token+sink4+sink8"), 2, "repeats the modifier '+sink4'");
  ExpectRow(Quant(dump, "int8:token+had+had"), 2, "repeats the modifier");
}

// A child that maps a file, registers an output temporary, and reads the
// mapping after the file was truncated: the SIGBUS handler names the file,
// removes the temporary and exits 1.
TEST(HostileInput, TruncatedMappedFileExits1AndRemovesTemporaries) {
  test::ScratchDir dir;
  const fs::path input = dir / "input.bin";
  std::ofstream(input, std::ios::binary) << std::string(1 << 16, 'x');
  const fs::path out = dir / "out.csv";
  EXPECT_EXIT(
      {
        InstallSignalHandlers();
        AtomicFile file(out);
        file.Write("partial");
        const MappedFile mapped = MappedFile::Open(input);
        fs::resize_file(input, 0);
        volatile uint8_t byte = mapped.data()[40000];
        (void)byte;
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(1), "input.bin: the file was truncated .* \\(SIGBUS\\)");
  EXPECT_TRUE(FilesWith(dir.path(), ".tmp").empty());
  EXPECT_FALSE(fs::exists(out));
}

// ---- Leftovers on other signals. ----

TEST(HostileInput, HangupQuitAndBrokenPipeRemoveTemporaries) {
  for (const int signal : {SIGHUP, SIGQUIT, SIGPIPE, SIGINT, SIGTERM}) {
    test::ScratchDir dir;
    SCOPED_TRACE(strsignal(signal));
    EXPECT_EXIT(
        {
          InstallSignalHandlers();
          AtomicFile file(dir / "out.csv");
          file.Write("partial");
          ::raise(signal);
          std::_Exit(0);
        },
        ::testing::KilledBySignal(signal), "");
    EXPECT_TRUE(FilesWith(dir.path(), ".tmp").empty());
  }
}

// `kvq attn ... | head -1` through a real shell pipe: head exits after the
// first line while kvq still has far more than a pipe's buffer to print, so
// kvq's next write raises SIGPIPE before the outputs are committed. kvq dies
// by that signal (141 in the shell), leaves no temporary and no output, and
// prints no crash report.
TEST(HostileInput, BrokenPipeOfARealPipelineLeavesNoOutput) {
  test::ScratchDir dir;
  DumpInfo info = SmallDumpInfo();
  // 1200 layers x 2 strategies x one ~60-byte table row: about 150 KB on
  // stdout, many times the 64 KiB a pipe buffers.
  info.num_layers = 1200;
  const fs::path dump = dir / "dump.safetensors";
  {
    DumpWriter writer(dump, info);
    writer.WriteInputIds(std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8});
    const DumpValues values;
    for (int layer = 0; layer < info.num_layers; ++layer) {
      writer.WriteLayer(layer, values.q, values.k, values.v, values.bias);
    }
    writer.Commit();
  }
  const fs::path csv = dir / "rows.csv", json = dir / "rows.json";
  const fs::path status = dir / "status", stderr_file = dir / "stderr";
  // The inner shell records kvq's own status (head's is the pipeline's). One
  // thread: each layer is tiny, and a team's spin-waits would dominate on a
  // loaded machine.
  const std::string command =
      "OMP_NUM_THREADS=1 sh -c '" + test::KvqBinary().string() + " attn --kv " + dump.string() +
      " --strategy fp16,int8:token --csv " + csv.string() + " --json " + json.string() + " 2>" +
      stderr_file.string() + "; echo $? >" + status.string() + "' | head -1";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::array<char, 256> line{};
  const bool got_line = std::fgets(line.data(), line.size(), pipe) != nullptr;
  while (std::fgetc(pipe) != EOF) {
  }
  EXPECT_EQ(::pclose(pipe), 0);
  ASSERT_TRUE(got_line);
  EXPECT_STREQ(line.data(), "strategy fp16\n");
  EXPECT_EQ(Bytes(status), "141\n") << Bytes(stderr_file);
  EXPECT_EQ(Bytes(stderr_file), "");  // no message, no sanitizer or crash report
  EXPECT_FALSE(fs::exists(csv));
  EXPECT_FALSE(fs::exists(json));
  EXPECT_TRUE(FilesWith(dir.path(), ".tmp").empty());
}

// ---- Hangs: every input-proportional loop is bounded; non-regular files refused. ----

TEST(HostileInput, FifosFoldersAndHugeCountsAreRefusedAtOnce) {
  test::ScratchDir dir;
  ASSERT_EQ(::mkfifo((dir / "ids.fifo").c_str(), 0644), 0);
  const auto start = std::chrono::steady_clock::now();
  ExpectRow("capture --model " + GoodModel().string() + " --input-ids " +
                (dir / "ids.fifo").string() + " --out " + (dir / "o.safetensors").string(),
            2, "ids.fifo: is a FIFO, not a regular file", dir / "o.safetensors");
  ExpectRow(Quant(dir / "ids.fifo"), 2, "is a FIFO, not a regular file");
  ExpectRow("tokenize --tokenizer " +
                (test::RepoDataDir() / "tokenizer/qwen2.5/tokenizer.json").string() + " --corpus " +
                (dir / "ids.fifo").string() + " --tokens 4",
            2, "ids.fifo: is a FIFO, not a regular file");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));

  // A folder where config.json should be.
  fs::create_directories(dir / "m/config.json");
  ExpectRow("bytes --model " + (dir / "m").string(), 2,
            "config.json: is a folder, not a regular file");

  // Counts past any model: refused before any loop runs over them.
  const fs::path model = CopiedModel(dir.path());
  std::string config = Bytes(model / "config.json");
  WriteTextFileAtomic(model / "config.json",
                      SetConfigField(config, "num_hidden_layers", "2000000000"));
  ExpectRow("bytes --model " + model.string(), 2,
            "'num_hidden_layers' = 2000000000 is over kvq's limit of 1024");
}

TEST(HostileInput, TokenizersAskingForHugeTablesAreRefusedByName) {
  test::ScratchDir dir;
  const std::string good = Bytes(test::RepoDataDir() / "tokenizer/qwen2.5/tokenizer.json");
  // A small file naming token id 2^30.
  nlohmann::json j = nlohmann::json::parse(good);
  j["added_tokens"] = nlohmann::json::array({{{"id", 1 << 30}, {"content", "<x>"}}});
  WriteTextFileAtomic(dir / "big-id.json", j.dump());
  ExpectRow("tokenize --tokenizer " + (dir / "big-id.json").string() + " --text hi", 2,
            "big-id.json: added_tokens[0].id = 1073741824: ids must be below");
  // Very many added tokens are no such case: they load and match in linear
  // time (TokenizerTest.ManyAddedTokensLoadAndEncodeInLinearTime).
}

// ---- NaN that flows on: physical ranges are checked where they are read. ----

TEST(HostileInput, OutOfRangeConfigAndDumpValuesNameTheirFile) {
  test::ScratchDir dir;
  const fs::path model = CopiedModel(dir.path());
  const std::string config = Bytes(model / "config.json");
  for (const auto& [field, value, message] :
       {std::tuple{"rms_norm_eps", "-1e-6", "'rms_norm_eps' must be a number in (0, 1)"},
        {"rms_norm_eps", "0", "'rms_norm_eps' must be a number in (0, 1)"},
        {"rope_theta", "1e-300", "rope theta 1e-300 is outside [1, 1e30]"},
        {"rope_theta", "1e300", "rope theta 1e+300 is outside [1, 1e30]"},
        {"rope_theta", "0", "rope theta 0 is outside [1, 1e30]"}}) {
    WriteTextFileAtomic(model / "config.json", SetConfigField(config, field, value));
    ExpectRow(Capture(model, dir / "out.safetensors"), 2, std::string("config.json: ") + message,
              dir / "out.safetensors");
  }
  // A dump whose rope theta is 0 or negative.
  for (const char* theta : {"0", "-10000"}) {
    auto metadata = SmallDumpInfo().ToMetadata();
    metadata["rope"] = std::string("{\"theta\": ") + theta + "}";
    const fs::path dump = WriteRawDump(dir / "theta.safetensors", metadata, [](auto&) {});
    ExpectRow(Quant(dump), 2, "theta.safetensors: dump metadata 'rope': rope theta");
    ExpectRow("attn --kv " + dump.string() + " --strategy fp16", 2, "rope theta");
  }
}

// Finite values past fp16's range (65504) in an F32 dump: the default fp16
// and fp8 candidates overflow on V, the attention error of that candidate is
// NaN, and the solvers must not see it (mean-nmse failed in the knapsack with
// an unnamed unit, worst-cos printed a plan built on NaN comparisons).
TEST(HostileInput, CandidatesThatOverflowOnTheDumpAreNamed) {
  test::ScratchDir dir;
  DumpInfo info = SmallDumpInfo();
  info.dtype = DType::kF32;
  info.has_k_bias = false;
  DumpValues values;
  // Varied q and k (uniform attention would hide the error), V around 1e6.
  for (size_t i = 0; i < values.q.size(); ++i) values.q[i] = std::sin(static_cast<float>(i));
  for (size_t i = 0; i < values.k.size(); ++i) values.k[i] = std::cos(static_cast<float>(i));
  for (size_t i = 0; i < values.v.size(); ++i) {
    values.v[i] = 1e6f * (1.5f + std::sin(static_cast<float>(3 * i)));
  }
  const fs::path dump = dir / "huge-v.safetensors";
  DumpWriter writer(dump, info);
  writer.WriteInputIds(std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8});
  writer.WriteLayer(0, values.q, values.k, values.v, {});
  writer.Commit();
  const fs::path out = dir / "plan.json";
  for (const char* objective : {"mean-nmse", "worst-cos"}) {
    ExpectRow("plan --kv " + dump.string() + " --budget-ratio 0.6 --objective " + objective +
                  " --out " + out.string(),
              2,
              "huge-v.safetensors: layer 0 v head 0: candidate 'fp16' gives a non-finite "
              "attention error",
              out);
  }
  // Without the candidates that overflow, the same dump plans.
  const test::CommandResult ok =
      RunKvq("plan --kv " + dump.string() +
             " --budget-ratio 0.6 --v-formats int8:token,int8:tensor --out " + out.string());
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_TRUE(fs::exists(out));
}

// Finite q, k, v whose attention overflows float: V near float's largest
// value in an F32 dump. The softmax weights sum to one, but the weighted sum
// over two or more tokens passes float's range (token 0, causal, sees only
// itself). The reference attention is checked once it is computed, by
// every command that reads it.
TEST(HostileInput, AttentionThatOverflowsFloatIsNamed) {
  test::ScratchDir dir;
  DumpInfo info = SmallDumpInfo();
  info.dtype = DType::kF32;
  DumpValues values;
  for (size_t i = 0; i < values.k.size(); ++i) values.k[i] += 0.01f * static_cast<float>(i);
  for (float& v : values.v) v = 3e38f;
  const fs::path dump = dir / "overflow.safetensors";
  DumpWriter writer(dump, info);
  writer.WriteInputIds(std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8});
  writer.WriteLayer(0, values.q, values.k, values.v, values.bias);
  writer.Commit();
  const fs::path csv = dir / "rows.csv";
  const std::string message =
      "overflow.safetensors: layer 0 head 0 token 1: attention over the dump's q, k, v "
      "overflows float";
  ExpectRow("attn --kv " + dump.string() + " --strategy fp16 --csv " + csv.string(), 2, message,
            csv);
  ExpectRow("plan --kv " + dump.string() + " --budget-ratio 0.6 --out " + csv.string(), 2, message,
            csv);
}

// ---- Defaults that fit, consistent codes. ----

TEST(HostileInput, DefaultsFitSmallHeadsAndCodesAgree) {
  test::ScratchDir dir;
  // head_dim 4: the default candidates that need a group of 32 are left out.
  const fs::path dump = WriteDump(dir / "dump.safetensors");
  EXPECT_EQ(RunKvq("bytes --kv " + dump.string()).exit_code, 0);
  const auto plan = RunKvq("plan --kv " + dump.string() + " --budget-ratio 1");
  EXPECT_EQ(plan.exit_code, 0) << plan.output;
  // A budget past any cost is "everything fits".
  const auto huge = RunKvq("plan --kv " + dump.string() + " --budget 1e30");
  EXPECT_EQ(huge.exit_code, 0) << huge.output;
  // An unwritable output is exit 1 in every command.
  const std::string nowhere = " /nonexistent-kvq-dir/x";
  ExpectRow(Quant(dump) + " --csv" + nowhere, 1, "cannot write");
  ExpectRow("attn --kv " + dump.string() + " --strategy fp16 --csv" + nowhere, 1, "cannot write");
  ExpectRow("plan --kv " + dump.string() + " --budget-ratio 0.6 --out" + nowhere, 1,
            "cannot write");
}

// ---- Messages: one line, named, no raw control bytes or broken UTF-8. ----

TEST(HostileInput, MessagesNeverEchoControlBytesOrBrokenUtf8) {
  EXPECT_EQ(Printable("a\x1b[31mb\nc\xff\xc3\xa9"), "a\\x1B[31mb\\x0Ac\\xFF\xc3\xa9");
  EXPECT_EQ(Printable("\xc2\x9b"), "\\xC2\\x9B");  // C1 CSI
  EXPECT_EQ(Printable("abcdef", 3), "abc...");
  test::ScratchDir dir;
  const fs::path evil = dir / "e\x1b]0;pwned\x07\n.safetensors";
  const test::CommandResult r = RunKvq("quant --kv '" + evil.string() + "' --strategy fp16");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(r.output.find('\x1b'), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find('\x07'), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\\x1B]0;pwned\\x07\\x0A.safetensors"), std::string::npos) << r.output;
  const fs::path dump = WriteDump(dir / "dump.safetensors");
  ExpectRow(Quant(dump, "plan:"), 2, "no plan file after 'plan:'");
  // A range message in words, not the 300 digits of a double's limit.
  const test::CommandResult tokens = RunKvq("bytes --tokens 0");
  EXPECT_EQ(tokens.exit_code, 2);
  // Usage errors: one line, argv's control bytes escaped.
  const test::CommandResult flag =
      RunKvq("quant --kv x --strategy fp16 --bo\"$(printf '\\033')\"gus");
  EXPECT_EQ(flag.exit_code, 2);
  EXPECT_EQ(flag.output.find('\x1b'), std::string::npos) << flag.output;
  EXPECT_NE(flag.output.find("kvq: error: The following argument was not expected: --bo\\x1Bgus"),
            std::string::npos)
      << flag.output;
  EXPECT_EQ(std::count(flag.output.begin(), flag.output.end(), '\n'), 1) << flag.output;
  EXPECT_NE(tokens.output.find("must be a positive integer, got '0'"), std::string::npos)
      << tokens.output;
  EXPECT_LT(tokens.output.size(), 300u) << tokens.output;
}

// ---- Report inputs: the run folder is an input, confined and named. ----

TEST(HostileInput, ReportRefusesRunFilesThatLeaveTheFolderOrLackKeys) {
  test::ScratchDir dir;
  const fs::path run = dir / "run";
  fs::create_directory(run);
  WriteTextFileAtomic(run / "run.json", R"({"schema": "kvq.run.v1"})");
  ExpectRow("report --run " + run.string(), 2, "run.json: missing or malformed field");
  for (const char* folder : {"../outside", "/tmp", "a/../../b"}) {
    WriteTextFileAtomic(run / "run.json",
                        fmt::format(R"({{"schema": "kvq.run.v1", "settings": {{"chunk_len": 8}},)"
                                    R"("models": [{{"model": "m", "folder": "{}", )"
                                    R"("geometry": {{}}}}]}})",
                                    folder));
    ExpectRow("report --run " + run.string(), 2, "leaves the run folder");
  }
  EXPECT_FALSE(fs::exists(dir / "outside"));
}

}  // namespace
}  // namespace kvq
