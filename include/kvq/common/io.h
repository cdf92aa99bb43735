#pragma once
// File plumbing: read-only memory maps and atomic writes.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace kvq {

// A read-only, private memory map of a whole file. Move-only.
class MappedFile {
 public:
  // Throws InputError naming the path when the file cannot be opened or mapped.
  static MappedFile Open(const std::filesystem::path& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::filesystem::path path_;
};

// Writes a file under a temporary name beside the target and renames it into
// place on Commit(). Destroyed without Commit(), it removes the temporary, so
// an interrupted or failed write never leaves a half-written target.
class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path target);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  void Write(const void* data, size_t size);
  void Write(std::string_view text) { Write(text.data(), text.size()); }
  // Flushes, fsyncs and renames over the target. Throws RuntimeError on
  // failure (disk full included), after removing the temporary.
  void Commit();

  const std::filesystem::path& target() const { return target_; }

 private:
  void Fail(const char* what);

  std::filesystem::path target_;
  std::filesystem::path temporary_;
  int fd_ = -1;
};

// Whole-file helpers built on the two above.
std::string ReadTextFile(const std::filesystem::path& path);
void WriteTextFileAtomic(const std::filesystem::path& path, std::string_view text);

// Temporaries that AtomicFile instances of this process still own; the CLI's
// signal handler removes them so that SIGINT leaves nothing half-written.
void RemovePendingTemporaries() noexcept;

}  // namespace kvq
