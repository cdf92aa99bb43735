#pragma once
// The fuzz entry points, one per target. Each feeds arbitrary bytes to one of
// kvq's readers the way the CLI does (through a file where the API takes a
// path) and then uses what was accepted, so that a reader which lets a lie
// through is caught by the code that trusts it.
//
// A clean refusal is a kvq::InputError or kvq::RuntimeError (the CLI prints
// one line and exits 2 or 1). Anything else is a finding: another exception
// escaping, a sanitizer report, KVQ_CHECK aborting, a hang or a runaway
// allocation.
//
// Used by the libFuzzer executables (fuzz/fuzz_main.cpp, built once per
// target as fuzz_<target> with KVQ_FUZZ=ON) and, in the normal build, by
// tests/unit/fuzz_regression_test.cpp, which replays every file of
// tests/data/fuzz-regressions/<target>/.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <zlib.h>

#include "kvq/capture/dump.h"
#include "kvq/common/error.h"
#include "kvq/metrics/tensor_error.h"
#include "kvq/model/config.h"
#include "kvq/model/rope.h"
#include "kvq/model/safetensors.h"
#include "kvq/quant/strategy.h"
#include "kvq/tokenizer/corpus.h"
#include "kvq/tokenizer/tokenizer.h"

namespace kvq::fuzz {

using Bytes = std::span<const uint8_t>;

inline std::string_view AsText(Bytes data) {
  return {reinterpret_cast<const char*>(data.data()), data.size()};
}

// A folder of this process for the files the targets write; removed at exit.
class ScratchFolder {
 public:
  ScratchFolder()
      : path_(std::filesystem::temp_directory_path() / ("kvq-fuzz-" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(path_);
  }
  ~ScratchFolder() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline const std::filesystem::path& Scratch() {
  static const ScratchFolder folder;
  return folder.path();
}

inline std::filesystem::path WriteFile(const std::string& name, Bytes data) {
  const std::filesystem::path path = Scratch() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  return path;
}

// The shipped Qwen2.5 tokenizer, loaded once per process.
inline const Tokenizer& Qwen() {
  static const Tokenizer tokenizer = Tokenizer::Load(DataDir() / "tokenizer/qwen2.5");
  return tokenizer;
}

// Runs `body`, treating kvq's own errors as clean refusals.
template <typename Body>
void Refusable(Body&& body) {
  try {
    body();
  } catch (const InputError&) {
  } catch (const RuntimeError&) {
  }
}

// Widens every float tensor: reads every byte the header claims.
inline void TouchTensors(const std::vector<TensorView>& tensors) {
  std::vector<float> values;
  for (const TensorView& t : tensors) {
    if (t.dtype != DType::kF32 && t.dtype != DType::kF16 && t.dtype != DType::kBF16) continue;
    values.resize(static_cast<size_t>(t.numel()));
    t.ToFloat(values);
  }
}

// safetensors header and data section: SafeTensorsFile::Open.
inline void Safetensors(Bytes data) {
  const auto path = WriteFile("fuzz.safetensors", data);
  Refusable([&] {
    const SafeTensorsFile file = SafeTensorsFile::Open(path);
    TouchTensors(file.tensors());
    for (const TensorView& t : file.tensors()) {
      if (file.Find(t.name) == nullptr) KVQ_CHECK(false);
    }
  });
}

// model.safetensors.index.json: TensorStore::Open on a folder holding the
// input as the index and two small valid shards.
inline void TensorIndex(Bytes data) {
  static const std::filesystem::path dir = [] {
    const auto folder = Scratch() / "index-model";
    std::filesystem::create_directories(folder);
    const std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = {7, 8};
    WriteSafeTensors(folder / "model-00001-of-00002.safetensors", {MakeF32Tensor("a", {2, 3}, a)});
    WriteSafeTensors(folder / "model-00002-of-00002.safetensors", {MakeF32Tensor("b", {2}, b)});
    return folder;
  }();
  const std::filesystem::path index = dir / "model.safetensors.index.json";
  std::ofstream(index, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  Refusable([&] {
    const TensorStore store = TensorStore::Open(dir);
    for (const char* name : {"a", "b"}) {
      if (const TensorView* t = store.Find(name)) TouchTensors({*t});
    }
  });
}

// config.json (ModelConfig::Parse) and a dump's rope metadata (RopeConfig).
inline void Config(Bytes data) {
  const std::string text(AsText(data));
  Refusable([&] {
    const ModelConfig c = ModelConfig::Parse(text, "config.json");
    KVQ_CHECK(c.num_heads % c.num_kv_heads == 0 && c.head_dim % 2 == 0);
  });
  Refusable([&] { RopeConfig::FromJson(text); });
}

// tokenizer.json (Tokenizer::FromJson), then encode and decode with it.
inline void TokenizerJson(Bytes data) {
  Refusable([&] {
    const Tokenizer t = Tokenizer::FromJson(AsText(data), "tokenizer.json");
    const std::vector<int32_t> ids = t.Encode("Hello, world! <x>y abc\n\n  123 \xC3\xA9t\xC3\xA9");
    for (int32_t id : ids) KVQ_CHECK(id >= 0 && id < t.vocab_size());
    t.Decode(ids);
  });
}

// Tokenizer encode on arbitrary bytes with the shipped Qwen2.5 tokenizer.
inline void TokenizerEncode(Bytes data) {
  const Tokenizer& t = Qwen();
  Refusable([&] {
    const std::vector<int32_t> ids = t.Encode(AsText(data));
    for (int32_t id : ids) KVQ_CHECK(id >= 0 && id < t.vocab_size());
    t.Decode(ids);
  });
}

// The geometry strategies are checked against: 2 layers x 2 kv heads x 16.
inline constexpr KvGeometry kGeometry{2, 2, 16};

inline void UseStrategy(const Strategy& s) {
  s.Validate(kGeometry);
  s.Cost(kGeometry, 64);
  PlanJson(s, kGeometry);
}

// Strategy specs (Strategy::Parse and the --strategy list splitter). Specs
// that name a plan file are left to the plan target.
inline void StrategySpec(Bytes data) {
  const std::string_view text = AsText(data);
  if (text.find("plan:") != std::string_view::npos) return;
  Refusable([&] { UseStrategy(Strategy::Parse(text)); });
  Refusable([&] {
    for (const Strategy& s : ParseStrategyList(text)) UseStrategy(s);
  });
}

// Plan files (plan:FILE): parsed, then used for the geometry they claim when
// that is small enough to walk.
inline void PlanFile(Bytes data) {
  const auto path = WriteFile("plan.json", data);
  Refusable([&] {
    const Strategy s = Strategy::Parse("plan:" + path.string());
    Refusable([&] { UseStrategy(s); });
    const KvGeometry& g = s.plan_geometry;
    if (g.num_layers > 0 && g.num_layers <= 256 && g.num_kv_heads > 0 && g.num_kv_heads <= 256 &&
        g.head_dim > 0 && g.head_dim <= 4096) {
      s.Validate(g);
      s.Cost(g, 64);
      PlanJson(s, g);
    }
  });
}

// Corpus readers. The first byte picks the kind of file: plain text, JSON
// lines, gzip as given (the rest is the .gz file) or JSON lines gzipped here
// (so that mutations reach the JSON reader behind the inflater).
inline void Corpus(Bytes data) {
  if (data.empty()) return;
  const int mode = data[0] % 4;
  const Bytes rest = data.subspan(1);
  std::filesystem::path path;
  if (mode == 3) {
    path = Scratch() / "corpus.jsonl.gz";
    gzFile out = gzopen(path.c_str(), "wb");
    if (out == nullptr) return;
    if (!rest.empty()) gzwrite(out, rest.data(), static_cast<unsigned>(rest.size()));
    gzclose(out);
  } else {
    path = WriteFile(mode == 0   ? "corpus.txt"
                     : mode == 1 ? "corpus.jsonl"
                                 : "corpus.jsonl.gz",
                     rest);
  }
  Refusable([&] { CorpusText(path.string()); });
  Refusable([&] {
    const std::vector<int32_t> ids = CorpusTokens(Qwen(), path.string(), 16);
    KVQ_CHECK(ids.size() == 16);
  });
}

// KV dumps (KvDump::Open), then every read an analysis makes and the
// tensor-error measurement of a few strategies.
inline void KvDumpFile(Bytes data) {
  const auto path = WriteFile("dump.safetensors", data);
  Refusable([&] {
    const KvDump dump = KvDump::Open(path);
    const DumpInfo& info = dump.info();
    std::vector<float> q(
        static_cast<size_t>(int64_t{info.num_heads} * info.tokens * info.head_dim));
    std::vector<float> kv(
        static_cast<size_t>(int64_t{info.num_kv_heads} * info.tokens * info.head_dim));
    for (int l = 0; l < info.num_layers; ++l) {
      dump.ReadQ(l, q);
      dump.ReadK(l, kv);
      dump.ReadV(l, kv);
      dump.ReadKBias(l);
    }
    dump.InputIds();
    // The quantization kernels (fused and generic) over whatever the dump
    // holds: bad values are refused by name, never a crash.
    for (const char* spec :
         {"strat1", "strat2", "k=q4_1,v=int4:g16:token", "k=fp8e4m3,v=int8:channel+had",
          "k=q8_0,v=int8:channel", "k=nvfp4,v=iq4_nl:search"}) {
      Refusable([&] { MeasureDump(dump, Strategy::Parse(spec)); });
    }
  });
}

struct Target {
  const char* name;
  void (*run)(Bytes);
  bool uses_qwen = false;  // Loads the shipped tokenizer (the driver does it up front).
};

// Target names: the fuzz executables are fuzz_<name>, their seeds are in
// fuzz/corpus/<name>/ and their regression inputs in
// tests/data/fuzz-regressions/<name>/.
inline constexpr Target kTargets[] = {
    {"safetensors", Safetensors},
    {"tensor_index", TensorIndex},
    {"config", Config},
    {"tokenizer_json", TokenizerJson},
    {"tokenizer_encode", TokenizerEncode, true},
    {"strategy", StrategySpec},
    {"plan", PlanFile},
    {"corpus", Corpus, true},
    {"kv_dump", KvDumpFile},
};

}  // namespace kvq::fuzz
