#pragma once
// safetensors: an 8-byte little-endian header length N, N bytes of JSON
// ({"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets"}}),
// then the raw little-endian row-major tensor data. The reader maps the file
// and hands out zero-copy views after bounds-checking every header field;
// the writer streams tensors to a temporary file and renames it into place.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvq/common/io.h"

namespace kvq {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

size_t DTypeSize(DType dtype);
const char* DTypeName(DType dtype);  // The safetensors spelling: "F32", "BF16", ...
std::optional<DType> ParseDType(std::string_view name);

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const;
  // Widens F32/F16/BF16 data to float32 (exact). dst holds numel() values.
  // Throws InputError for other dtypes.
  void ToFloat(std::span<float> dst) const;
  void ToFloat(float* dst, int64_t begin, int64_t count) const;  // A flat range.
  std::string ShapeString() const;                               // "[2, 48, 16]"
};

class SafeTensorsFile {
 public:
  // Throws InputError naming the file (and tensor) for every malformed field.
  static SafeTensorsFile Open(const std::filesystem::path& path);

  const TensorView* Find(std::string_view name) const;
  // Throws InputError "<file>: no tensor '<name>'" when absent.
  const TensorView& Get(std::string_view name) const;
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::filesystem::path& path() const { return file_.path(); }

 private:
  MappedFile file_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

// The tensors of a Hugging Face model folder: model.safetensors, or the
// shards listed by model.safetensors.index.json.
class TensorStore {
 public:
  static TensorStore Open(const std::filesystem::path& model_dir);

  const TensorView* Find(std::string_view name) const;
  const TensorView& Get(std::string_view name) const;  // Throws naming folder and tensor.
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafeTensorsFile>> files_;
  std::map<std::string, const TensorView*, std::less<>> index_;
};

struct TensorSpec {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
};

// Streams tensors in the declared order. Nothing appears at the target path
// until Commit() succeeds.
class SafeTensorsWriter {
 public:
  SafeTensorsWriter(const std::filesystem::path& path, std::vector<TensorSpec> specs,
                    const std::map<std::string, std::string>& metadata);

  // The next declared tensor's bytes; its size must match its spec.
  void Write(std::string_view name, const void* data, size_t nbytes);
  void Commit();

 private:
  AtomicFile file_;
  std::vector<TensorSpec> specs_;
  size_t next_ = 0;
};

// One-shot convenience for small files (fixtures, tests).
struct OwnedTensor {
  TensorSpec spec;
  std::vector<uint8_t> bytes;
};
void WriteSafeTensors(const std::filesystem::path& path, const std::vector<OwnedTensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
OwnedTensor MakeF32Tensor(std::string name, std::vector<int64_t> shape,
                          std::span<const float> values);

}  // namespace kvq
