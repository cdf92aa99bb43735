#pragma once
// File plumbing: read-only memory maps and atomic writes.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

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

  struct Region;  // registered for the SIGBUS handler while mapped

 private:
  void Unmap() noexcept;

  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::filesystem::path path_;
  Region* region_ = nullptr;
};

// Writes a file under a temporary name beside the target and renames it into
// place on Commit(). Destroyed without Commit(), it removes the temporary, so
// an interrupted or failed write never leaves a half-written target.
//
// The target, when it exists, must be a regular file: a symbolic link, a
// folder, a device node, a FIFO or a socket is refused with InputError
// (replacing it would silently change what the path is).
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

// The largest text file kvq reads whole (config, tokenizer, plan, ids).
inline constexpr size_t kMaxTextFileBytes = size_t{1} << 30;

// Whole-file helpers built on the two above. ReadTextFile reads regular
// files only (a folder, FIFO, device or socket is refused by name without
// blocking on it) of at most `max_bytes` (InputError beyond).
std::string ReadTextFile(const std::filesystem::path& path, size_t max_bytes = kMaxTextFileBytes);
void WriteTextFileAtomic(const std::filesystem::path& path, std::string_view text);

// Refuses (InputError) a path that exists and is not a regular file, naming
// what it is; `flag` prefixes the message when given. Used for outputs.
void CheckOutputTarget(const std::filesystem::path& path, const std::string& flag = {});

// A path a command reads or writes, with the flag that named it.
struct PathArg {
  std::string flag;
  std::filesystem::path path;  // empty: not given, skipped
};

// Checked by every command before any work: no output is any input (after
// resolving links and "..", hard links included; an input folder covers the
// files in it), no two outputs name the same file, and no output is an
// existing non-regular file. Throws InputError naming both flags.
void CheckOutputs(const std::vector<PathArg>& outputs, const std::vector<PathArg>& inputs);

// Temporaries that AtomicFile instances of this process still own; the CLI's
// signal handler removes them so that SIGINT leaves nothing half-written.
void RemovePendingTemporaries() noexcept;

// Installs the CLI's handlers: SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGPIPE
// remove the pending temporaries and end the process with that signal;
// SIGBUS inside a MappedFile (the file shrank while mapped) removes them,
// prints one line naming the file and exits 1.
void InstallSignalHandlers();

}  // namespace kvq
