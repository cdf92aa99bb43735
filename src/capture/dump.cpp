#include "kvq/capture/dump.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include "kvq/common/error.h"
#include "kvq/common/finite.h"
#include "kvq/common/half.h"
#include "kvq/version.h"

namespace kvq {
namespace {

// Integer fields stored as int are bounded so that the narrowing is exact.
int64_t ParseInt(const std::map<std::string, std::string>& metadata, const std::string& key,
                 const std::string& where, int64_t min_value,
                 int64_t max_value = std::numeric_limits<int>::max()) {
  auto it = metadata.find(key);
  if (it == metadata.end()) ThrowInput("{}: dump metadata lacks '{}'", where, key);
  int64_t value = 0;
  const auto& text = it->second;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < min_value ||
      value > max_value) {
    ThrowInput("{}: dump metadata '{}' = '{}' is not an integer in [{}, {}]", where, key, text,
               min_value, max_value);
  }
  return value;
}

std::string Get(const std::map<std::string, std::string>& metadata, const std::string& key,
                const std::string& fallback = "") {
  auto it = metadata.find(key);
  return it == metadata.end() ? fallback : it->second;
}

std::vector<int64_t> Shape3(int64_t a, int64_t b, int64_t c) { return {a, b, c}; }

}  // namespace

std::map<std::string, std::string> DumpInfo::ToMetadata() const {
  return {
      {"format", "pt"},
      {"kvq_version", kVersion},
      {"kind", "kvq.kv_dump"},
      {"model", model},
      {"architecture", architecture},
      {"num_layers", std::to_string(num_layers)},
      {"num_attention_heads", std::to_string(num_heads)},
      {"num_key_value_heads", std::to_string(num_kv_heads)},
      {"head_dim", std::to_string(head_dim)},
      {"tokens", std::to_string(tokens)},
      {"chunk_len", std::to_string(chunk_len)},
      {"rope_theta", fmt::format("{}", rope.theta)},
      {"rope", rope.ToJson()},
      {"dtype", DTypeName(dtype)},
      {"has_k_bias", has_k_bias ? "true" : "false"},
      {"corpus", corpus},
  };
}

DumpInfo DumpInfo::FromMetadata(const std::map<std::string, std::string>& metadata,
                                const std::string& where) {
  if (Get(metadata, "kind") != "kvq.kv_dump") {
    ThrowInput(
        "{}: not a kvq KV dump (metadata 'kind' is not 'kvq.kv_dump'; make one with kvq capture)",
        where);
  }
  DumpInfo info;
  info.model = Get(metadata, "model");
  info.architecture = Get(metadata, "architecture");
  info.corpus = Get(metadata, "corpus");
  info.num_layers = static_cast<int>(ParseInt(metadata, "num_layers", where, 1));
  info.num_heads = static_cast<int>(ParseInt(metadata, "num_attention_heads", where, 1));
  info.num_kv_heads = static_cast<int>(ParseInt(metadata, "num_key_value_heads", where, 1));
  info.head_dim = static_cast<int>(ParseInt(metadata, "head_dim", where, 2));
  info.tokens = ParseInt(metadata, "tokens", where, 1, std::numeric_limits<int64_t>::max());
  info.chunk_len = ParseInt(metadata, "chunk_len", where, 1, std::numeric_limits<int64_t>::max());
  if (info.num_heads % info.num_kv_heads != 0) {
    ThrowInput("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", where,
               info.num_heads, info.num_kv_heads);
  }
  if (info.head_dim % 2 != 0) ThrowInput("{}: head_dim {} is odd", where, info.head_dim);
  if (info.tokens % info.chunk_len != 0) {
    ThrowInput("{}: tokens {} is not a multiple of chunk_len {}", where, info.tokens,
               info.chunk_len);
  }
  info.rope = RopeConfig::FromJson(Get(metadata, "rope", "{\"theta\": 10000}"),
                                   where + ": dump metadata 'rope'");
  const auto dtype = ParseDType(Get(metadata, "dtype", "F16"));
  if (!dtype || (*dtype != DType::kF16 && *dtype != DType::kF32)) {
    ThrowInput("{}: dump dtype '{}' is not F16 or F32", where, Get(metadata, "dtype"));
  }
  info.dtype = *dtype;
  info.has_k_bias = Get(metadata, "has_k_bias") == "true";
  return info;
}

KvDump KvDump::Open(const std::filesystem::path& path) {
  KvDump dump;
  dump.file_ = SafeTensorsFile::Open(path);
  const std::string where = path.string();
  dump.info_ = DumpInfo::FromMetadata(dump.file_.metadata(), where);
  const DumpInfo& info = dump.info_;
  auto expect = [&](const std::string& name, const std::vector<int64_t>& shape) {
    const TensorView& t = dump.file_.Get(name);
    if (t.shape != shape) {
      ThrowInput("{}: tensor '{}' has shape {}, expected [{}] from the metadata", where, name,
                 t.ShapeString(), fmt::join(shape, ", "));
    }
    if (t.dtype != DType::kF16 && t.dtype != DType::kF32) {
      ThrowInput("{}: tensor '{}' has dtype {}, expected F16 or F32", where, name,
                 DTypeName(t.dtype));
    }
  };
  for (int l = 0; l < info.num_layers; ++l) {
    const std::string prefix = fmt::format("layers.{}.", l);
    expect(prefix + "q", Shape3(info.num_heads, info.tokens, info.head_dim));
    expect(prefix + "k", Shape3(info.num_kv_heads, info.tokens, info.head_dim));
    expect(prefix + "v", Shape3(info.num_kv_heads, info.tokens, info.head_dim));
    if (info.has_k_bias) expect(prefix + "k_bias", {info.num_kv_heads, info.head_dim});
  }
  return dump;
}

void KvDump::Read(int layer, const char* which, int heads, std::span<float> dst) const {
  KVQ_CHECK(layer >= 0 && layer < info_.num_layers);
  const TensorView& t = file_.Get(fmt::format("layers.{}.{}", layer, which));
  KVQ_CHECK(static_cast<int64_t>(dst.size()) == t.numel());
  t.ToFloat(dst);
  const int64_t per_head = info_.tokens * info_.head_dim;
  for (int h = 0; h < heads; ++h) {
    const float* values = dst.data() + h * per_head;
    for (int64_t i = 0; i < per_head; ++i) {
      if (!std::isfinite(values[i])) {
        ThrowInput("{}: layers.{}.{} head {} token {} holds {}", path().string(), layer, which, h,
                   i / info_.head_dim, values[i]);
      }
    }
  }
}

void KvDump::ReadQ(int layer, std::span<float> dst) const {
  Read(layer, "q", info_.num_heads, dst);
}
void KvDump::ReadK(int layer, std::span<float> dst) const {
  Read(layer, "k", info_.num_kv_heads, dst);
}
void KvDump::ReadV(int layer, std::span<float> dst) const {
  Read(layer, "v", info_.num_kv_heads, dst);
}

std::vector<float> KvDump::ReadKBias(int layer) const {
  if (!info_.has_k_bias) return {};
  const TensorView& t = file_.Get(fmt::format("layers.{}.k_bias", layer));
  std::vector<float> bias(static_cast<size_t>(t.numel()));
  t.ToFloat(bias);
  if (const int64_t bad = FirstNonFinite(bias.data(), t.numel()); bad < t.numel()) {
    ThrowInput("{}: layers.{}.k_bias head {} holds {}", path().string(), layer,
               bad / info_.head_dim, bias[static_cast<size_t>(bad)]);
  }
  return bias;
}

std::vector<int32_t> KvDump::InputIds() const {
  const TensorView* t = file_.Find("input_ids");
  if (!t) return {};
  if (t->dtype != DType::kI32 || t->numel() != info_.tokens) {
    ThrowInput("{}: input_ids must be I32 [{}]", path().string(), info_.tokens);
  }
  std::vector<int32_t> ids(static_cast<size_t>(t->numel()));
  std::memcpy(ids.data(), t->data, t->nbytes);
  return ids;
}

namespace {

std::vector<TensorSpec> DumpSpecs(const DumpInfo& info) {
  std::vector<TensorSpec> specs;
  specs.push_back({"input_ids", DType::kI32, {info.tokens}});
  for (int l = 0; l < info.num_layers; ++l) {
    const std::string prefix = fmt::format("layers.{}.", l);
    specs.push_back({prefix + "q", info.dtype, Shape3(info.num_heads, info.tokens, info.head_dim)});
    specs.push_back(
        {prefix + "k", info.dtype, Shape3(info.num_kv_heads, info.tokens, info.head_dim)});
    specs.push_back(
        {prefix + "v", info.dtype, Shape3(info.num_kv_heads, info.tokens, info.head_dim)});
    if (info.has_k_bias)
      specs.push_back({prefix + "k_bias", DType::kF32, {info.num_kv_heads, info.head_dim}});
  }
  return specs;
}

}  // namespace

DumpWriter::DumpWriter(const std::filesystem::path& path, const DumpInfo& info)
    : info_(info), writer_(path, DumpSpecs(info), info.ToMetadata()) {
  KVQ_CHECK(info.dtype == DType::kF16 || info.dtype == DType::kF32);
}

void DumpWriter::WriteInputIds(std::span<const int32_t> ids) {
  KVQ_CHECK(static_cast<int64_t>(ids.size()) == info_.tokens);
  writer_.Write("input_ids", ids.data(), ids.size_bytes());
}

void DumpWriter::WriteFloats(const std::string& name, std::span<const float> values, DType dtype) {
  if (dtype == DType::kF32) {
    writer_.Write(name, values.data(), values.size_bytes());
    return;
  }
  scratch_.resize(values.size() * 2);
  for (size_t i = 0; i < values.size(); ++i) {
    const uint16_t h = FloatToHalf(values[i]);
    std::memcpy(scratch_.data() + 2 * i, &h, 2);
  }
  writer_.Write(name, scratch_.data(), scratch_.size());
}

void DumpWriter::WriteLayer(int layer, std::span<const float> q, std::span<const float> k,
                            std::span<const float> v, std::span<const float> k_bias) {
  const std::string prefix = fmt::format("layers.{}.", layer);
  WriteFloats(prefix + "q", q, info_.dtype);
  WriteFloats(prefix + "k", k, info_.dtype);
  WriteFloats(prefix + "v", v, info_.dtype);
  if (info_.has_k_bias) {
    KVQ_CHECK(static_cast<int64_t>(k_bias.size()) == int64_t{info_.num_kv_heads} * info_.head_dim);
    WriteFloats(prefix + "k_bias", k_bias, DType::kF32);
  }
}

void DumpWriter::Commit() { writer_.Commit(); }

LayerContext DumpLayerContext(const DumpInfo& info, std::vector<float> k_bias,
                              std::shared_ptr<const RopeTable> rope) {
  if (rope == nullptr)
    rope = std::make_shared<const RopeTable>(info.rope, info.head_dim, info.chunk_len);
  return {info.num_kv_heads, info.head_dim, info.chunk_len, std::move(rope), std::move(k_bias)};
}

}  // namespace kvq
