#include "kvq/model/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "kvq/common/error.h"
#include "kvq/common/half.h"
#include "kvq/common/json.h"

namespace kvq {
namespace {

using Json = nlohmann::json;

// Headers of real checkpoints are a few hundred KiB; anything past this is a
// lie and would make us parse garbage.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kF64, "F64", 8},   {DType::kF32, "F32", 4}, {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kI64, "I64", 8}, {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2},   {DType::kI8, "I8", 1},   {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1},
};

const DTypeInfo& Info(DType dtype) {
  for (const auto& info : kDTypes) {
    if (info.dtype == dtype) return info;
  }
  KVQ_CHECK(false);
}

std::string HeaderJson(const std::vector<TensorSpec>& specs,
                       const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  for (const auto& spec : specs) {
    int64_t numel = 1;
    for (int64_t d : spec.shape) numel *= d;
    const size_t bytes = static_cast<size_t>(numel) * DTypeSize(spec.dtype);
    header[spec.name] = {{"dtype", DTypeName(spec.dtype)},
                         {"shape", spec.shape},
                         {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned.
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');
  return text;
}

}  // namespace

size_t DTypeSize(DType dtype) { return Info(dtype).size; }
const char* DTypeName(DType dtype) { return Info(dtype).name; }

std::optional<DType> ParseDType(std::string_view name) {
  for (const auto& info : kDTypes) {
    if (name == info.name) return info.dtype;
  }
  return std::nullopt;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::ShapeString() const { return fmt::format("[{}]", fmt::join(shape, ", ")); }

void TensorView::ToFloat(std::span<float> dst) const {
  KVQ_CHECK(static_cast<int64_t>(dst.size()) == numel());
  ToFloat(dst.data(), 0, numel());
}

void TensorView::ToFloat(float* dst, int64_t begin, int64_t count) const {
  KVQ_CHECK(begin >= 0 && count >= 0 && begin + count <= numel());
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, data + begin * 4, static_cast<size_t>(count) * 4);
      return;
    case DType::kF16: {
      HalfToFloatArray(data + begin * 2, dst, count);
      return;
    }
    case DType::kBF16: {
      const uint8_t* src = data + begin * 2;
      for (int64_t i = 0; i < count; ++i) {
        uint16_t b;
        std::memcpy(&b, src + 2 * i, 2);
        dst[i] = Bf16ToFloat(b);
      }
      return;
    }
    default:
      ThrowInput("tensor '{}': dtype {} is not a float type (need F32, F16 or BF16)", name,
                 DTypeName(dtype));
  }
}

SafeTensorsFile SafeTensorsFile::Open(const std::filesystem::path& path) {
  SafeTensorsFile st;
  st.file_ = MappedFile::Open(path);
  const std::string where = path.string();
  const size_t file_size = st.file_.size();
  if (file_size < 8)
    ThrowInput("{}: truncated safetensors file ({} bytes, need at least 8)", where, file_size);
  uint64_t header_len = 0;
  std::memcpy(&header_len, st.file_.data(), 8);
  if (header_len > kMaxHeaderBytes) {
    ThrowInput("{}: header length {} is over kvq's limit of {} bytes (100 MiB)", where, header_len,
               kMaxHeaderBytes);
  }
  if (header_len > file_size - 8) {
    ThrowInput("{}: header length {} runs past the end of the file ({} bytes)", where, header_len,
               file_size);
  }
  const char* header_begin = reinterpret_cast<const char*>(st.file_.data() + 8);
  Json header;
  try {
    header = ParseJson(std::string_view(header_begin, header_len), where + ": header");
  } catch (const Json::exception& e) {
    ThrowInput("{}: header is not valid JSON: {}", where, e.what());
  }
  if (!header.is_object()) ThrowInput("{}: header is not a JSON object", where);

  const uint8_t* data_section = st.file_.data() + 8 + header_len;
  const size_t data_size = file_size - 8 - static_cast<size_t>(header_len);
  struct Extent {
    size_t begin, end;
    const std::string* name;
  };
  std::vector<Extent> extents;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const Json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) ThrowInput("{}: __metadata__ is not an object", where);
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) {
          ThrowInput("{}: __metadata__ value '{}' is not a string", where, m.key());
        }
        st.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets")) {
      ThrowInput("{}: tensor '{}': entry needs dtype, shape and data_offsets", where, name);
    }
    TensorView view;
    view.name = name;
    const Json& dtype = entry["dtype"];
    const auto parsed = dtype.is_string() ? ParseDType(dtype.get<std::string>()) : std::nullopt;
    if (!parsed) ThrowInput("{}: tensor '{}': unknown dtype {}", where, name, dtype.dump());
    view.dtype = *parsed;
    const Json& shape = entry["shape"];
    if (!shape.is_array()) ThrowInput("{}: tensor '{}': shape is not an array", where, name);
    uint64_t numel = 1;
    for (const Json& d : shape) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) {
        ThrowInput("{}: tensor '{}': bad dimension {} in shape", where, name, d.dump());
      }
      const auto dim = d.get<uint64_t>();
      if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / 16 / dim) {
        ThrowInput("{}: tensor '{}': shape is too large", where, name);
      }
      numel *= dim;
      view.shape.push_back(static_cast<int64_t>(dim));
    }
    const Json& offsets = entry["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned()) {
      ThrowInput("{}: tensor '{}': data_offsets must be two non-negative integers", where, name);
    }
    const auto begin = offsets[0].get<uint64_t>();
    const auto end = offsets[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      ThrowInput("{}: tensor '{}': data_offsets [{}, {}] outside the data section ({} bytes)",
                 where, name, begin, end, data_size);
    }
    const uint64_t expected = numel * DTypeSize(view.dtype);
    if (end - begin != expected) {
      ThrowInput("{}: tensor '{}': shape {} of {} needs {} bytes, data_offsets give {}", where,
                 name, view.ShapeString(), DTypeName(view.dtype), expected, end - begin);
    }
    view.data = data_section + begin;
    view.nbytes = static_cast<size_t>(end - begin);
    st.tensors_.push_back(std::move(view));
    extents.push_back({static_cast<size_t>(begin), static_cast<size_t>(end), nullptr});
  }
  for (size_t i = 0; i < st.tensors_.size(); ++i) extents[i].name = &st.tensors_[i].name;
  // Empty tensors take no bytes and overlap nothing (left in, one inside an
  // earlier tensor would hide an overlap of its neighbours). The others,
  // sorted by start, must each begin at or after the previous one's end.
  std::erase_if(extents, [](const Extent& e) { return e.begin == e.end; });
  std::sort(extents.begin(), extents.end(),
            [](const Extent& a, const Extent& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < extents.size(); ++i) {
    if (extents[i].begin < extents[i - 1].end) {
      ThrowInput("{}: tensors '{}' and '{}' overlap in the data section", where,
                 *extents[i - 1].name, *extents[i].name);
    }
  }
  for (size_t i = 0; i < st.tensors_.size(); ++i) st.index_[st.tensors_[i].name] = i;
  return st;
}

const TensorView* SafeTensorsFile::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorView& SafeTensorsFile::Get(std::string_view name) const {
  const TensorView* view = Find(name);
  if (!view) ThrowInput("{}: no tensor '{}'", path().string(), name);
  return *view;
}

TensorStore TensorStore::Open(const std::filesystem::path& model_dir) {
  TensorStore store;
  store.dir_ = model_dir;
  const auto single = model_dir / "model.safetensors";
  const auto index_path = model_dir / "model.safetensors.index.json";
  std::vector<std::string> shard_names;
  if (std::filesystem::exists(index_path)) {
    Json index;
    try {
      index = ParseJson(ReadTextFile(index_path), index_path.string());
    } catch (const Json::exception& e) {
      ThrowInput("{}: not valid JSON: {}", index_path.string(), e.what());
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      ThrowInput("{}: no weight_map object", index_path.string());
    }
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it.value().is_string()) {
        ThrowInput("{}: weight_map entry '{}' is not a file name", index_path.string(), it.key());
      }
      const std::string shard = it.value().get<std::string>();
      const std::filesystem::path shard_path(shard);
      // A shard must be a plain file name inside the model folder.
      if (shard.empty() || shard_path.has_parent_path() || shard_path.is_absolute() ||
          shard == "." || shard == "..") {
        ThrowInput("{}: weight_map entry '{}' names '{}', which leaves the model folder",
                   index_path.string(), it.key(), shard);
      }
      if (std::find(shard_names.begin(), shard_names.end(), shard) == shard_names.end()) {
        shard_names.push_back(shard);
      }
    }
  } else if (std::filesystem::exists(single)) {
    shard_names.push_back("model.safetensors");
  } else {
    ThrowInput("{}: no model.safetensors or model.safetensors.index.json", model_dir.string());
  }
  for (const auto& shard : shard_names) {
    store.files_.push_back(
        std::make_unique<SafeTensorsFile>(SafeTensorsFile::Open(model_dir / shard)));
    for (const auto& view : store.files_.back()->tensors()) {
      if (!store.index_.emplace(view.name, &view).second) {
        ThrowInput("{}: tensor '{}' appears in more than one shard", model_dir.string(), view.name);
      }
    }
  }
  return store;
}

const TensorView* TensorStore::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorView& TensorStore::Get(std::string_view name) const {
  const TensorView* view = Find(name);
  if (!view) ThrowInput("{}: model has no tensor '{}'", dir_.string(), name);
  return *view;
}

SafeTensorsWriter::SafeTensorsWriter(const std::filesystem::path& path,
                                     std::vector<TensorSpec> specs,
                                     const std::map<std::string, std::string>& metadata)
    : file_(path), specs_(std::move(specs)) {
  const std::string header = HeaderJson(specs_, metadata);
  const uint64_t header_len = header.size();
  file_.Write(&header_len, 8);
  file_.Write(header);
}

void SafeTensorsWriter::Write(std::string_view name, const void* data, size_t nbytes) {
  KVQ_CHECK(next_ < specs_.size());
  const TensorSpec& spec = specs_[next_];
  KVQ_CHECK(spec.name == name);
  int64_t numel = 1;
  for (int64_t d : spec.shape) numel *= d;
  KVQ_CHECK(static_cast<size_t>(numel) * DTypeSize(spec.dtype) == nbytes);
  file_.Write(data, nbytes);
  ++next_;
}

void SafeTensorsWriter::Commit() {
  KVQ_CHECK(next_ == specs_.size());
  file_.Commit();
}

void WriteSafeTensors(const std::filesystem::path& path, const std::vector<OwnedTensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const auto& t : tensors) specs.push_back(t.spec);
  SafeTensorsWriter writer(path, specs, metadata);
  for (const auto& t : tensors) writer.Write(t.spec.name, t.bytes.data(), t.bytes.size());
  writer.Commit();
}

OwnedTensor MakeF32Tensor(std::string name, std::vector<int64_t> shape,
                          std::span<const float> values) {
  OwnedTensor t;
  t.spec = {std::move(name), DType::kF32, std::move(shape)};
  t.bytes.resize(values.size() * 4);
  std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
  return t;
}

}  // namespace kvq
