#include "kvq/common/io.h"
#include "kvq/common/pending_folder.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>

#include "kvq/common/error.h"

namespace kvq {
namespace {

// Fixed-size, lock-free table so the signal handler can read it safely.
constexpr int kMaxPending = 64;
std::array<std::atomic<const char*>, kMaxPending> g_pending{};

void RegisterPending(const char* path) {
  for (auto& slot : g_pending) {
    const char* expected = nullptr;
    if (slot.compare_exchange_strong(expected, path)) return;
  }
}

void UnregisterPending(const char* path) {
  for (auto& slot : g_pending) {
    const char* expected = path;
    if (slot.compare_exchange_strong(expected, nullptr)) return;
  }
}

// What a path is, in words, for a refusal ("a folder", "a FIFO").
const char* KindOf(mode_t mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

// Opens `path` for reading without blocking (a FIFO with no writer would
// block open() and read() forever) and refuses anything but a regular file.
int OpenRegularForReading(const std::filesystem::path& path, struct stat& st) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) ThrowInput("{}: cannot open: {}", path.string(), std::strerror(errno));
  if (::fstat(fd, &st) != 0) {
    const int saved = errno;
    ::close(fd);
    ThrowInput("{}: cannot open: {}", path.string(), std::strerror(saved));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    ThrowInput("{}: is {}, not a regular file", path.string(), KindOf(st.st_mode));
  }
  return fd;
}

}  // namespace

// A mapping the SIGBUS handler can attribute a fault to. The table holds
// pointers only, read with atomic loads: safe in a signal handler.
struct MappedFile::Region {
  const uint8_t* begin;
  size_t size;
  std::string path;
};

namespace {

constexpr int kMaxMapped = 256;
std::array<std::atomic<const MappedFile::Region*>, kMaxMapped> g_mapped{};

}  // namespace

void RemovePendingTemporaries() noexcept {
  for (auto& slot : g_pending) {
    if (const char* path = slot.load()) ::unlink(path);
  }
}

MappedFile MappedFile::Open(const std::filesystem::path& path) {
  struct stat st {};
  const int fd = OpenRegularForReading(path, st);
  MappedFile file;
  file.path_ = path;
  file.size_ = static_cast<size_t>(st.st_size);
  if (file.size_ > 0) {
    void* data = ::mmap(nullptr, file.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (data == MAP_FAILED) {
      ::close(fd);
      ThrowInput("{}: cannot map: {}", path.string(), std::strerror(errno));
    }
    file.data_ = static_cast<const uint8_t*>(data);
    file.region_ = new Region{file.data_, file.size_, path.string()};
    for (auto& slot : g_mapped) {
      const Region* expected = nullptr;
      if (slot.compare_exchange_strong(expected, file.region_)) break;
    }
  }
  ::close(fd);
  return file;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(other.data_),
      size_(other.size_),
      path_(std::move(other.path_)),
      region_(other.region_) {
  other.data_ = nullptr;
  other.size_ = 0;
  other.region_ = nullptr;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    Unmap();
    data_ = other.data_;
    size_ = other.size_;
    path_ = std::move(other.path_);
    region_ = other.region_;
    other.data_ = nullptr;
    other.size_ = 0;
    other.region_ = nullptr;
  }
  return *this;
}

MappedFile::~MappedFile() { Unmap(); }

void MappedFile::Unmap() noexcept {
  if (region_) {
    for (auto& slot : g_mapped) {
      const Region* expected = region_;
      if (slot.compare_exchange_strong(expected, nullptr)) break;
    }
    delete region_;
    region_ = nullptr;
  }
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
}

void CheckOutputTarget(const std::filesystem::path& path, const std::string& flag) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || S_ISREG(st.st_mode)) return;
  const std::string prefix = flag.empty() ? std::string() : flag + ": ";
  ThrowInput("{}{}: is {}; kvq writes only regular files and does not replace it", prefix,
             path.string(), KindOf(st.st_mode));
}

AtomicFile::AtomicFile(std::filesystem::path target) : target_(std::move(target)) {
  CheckOutputTarget(target_);
  temporary_ = target_;
  temporary_ += fmt::format(".{}.tmp", ::getpid());
  // Registered before it exists: a signal between the open and the
  // registration would otherwise leave the temporary behind.
  RegisterPending(temporary_.c_str());
  fd_ = ::open(temporary_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int saved = errno;
    UnregisterPending(temporary_.c_str());
    ThrowRuntime("{}: cannot write: {}", target_.string(), std::strerror(saved));
  }
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    UnregisterPending(temporary_.c_str());
    ::unlink(temporary_.c_str());
  }
}

void AtomicFile::Fail(const char* what) {
  const int saved = errno;
  ::close(fd_);
  fd_ = -1;
  UnregisterPending(temporary_.c_str());
  ::unlink(temporary_.c_str());
  ThrowRuntime("{}: {} failed: {}", target_.string(), what, std::strerror(saved));
}

void AtomicFile::Write(const void* data, size_t size) {
  KVQ_CHECK(fd_ >= 0);
  const auto* bytes = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t written = ::write(fd_, bytes, size);
    if (written < 0) {
      if (errno == EINTR) continue;
      Fail("write");
    }
    bytes += written;
    size -= static_cast<size_t>(written);
  }
}

void AtomicFile::Commit() {
  KVQ_CHECK(fd_ >= 0);
  if (::fsync(fd_) != 0) Fail("fsync");
  if (::close(fd_) != 0) {
    fd_ = -1;
    const int saved = errno;
    UnregisterPending(temporary_.c_str());
    ::unlink(temporary_.c_str());
    ThrowRuntime("{}: close failed: {}", target_.string(), std::strerror(saved));
  }
  fd_ = -1;
  if (::rename(temporary_.c_str(), target_.c_str()) != 0) {
    const int saved = errno;
    UnregisterPending(temporary_.c_str());
    ::unlink(temporary_.c_str());
    ThrowRuntime("{}: rename failed: {}", target_.string(), std::strerror(saved));
  }
  UnregisterPending(temporary_.c_str());
}

std::string ReadTextFile(const std::filesystem::path& path, size_t max_bytes) {
  struct stat st {};
  const int fd = OpenRegularForReading(path, st);
  const auto size = static_cast<size_t>(st.st_size);
  if (size > max_bytes) {
    ::close(fd);
    ThrowInput("{}: {} bytes, more than the {} bytes kvq reads from such a file", path.string(),
               size, max_bytes);
  }
  // Read at most what fstat said (+1 to see growth): bounded even if the
  // file grows while it is read.
  std::string text(size + 1, '\0');
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t got = ::read(fd, text.data() + done, text.size() - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int saved = errno;
      ::close(fd);
      ThrowInput("{}: read failed: {}", path.string(), std::strerror(saved));
    }
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  ::close(fd);
  if (done > size) ThrowInput("{}: the file grew while kvq read it", path.string());
  text.resize(done);
  return text;
}

void WriteTextFileAtomic(const std::filesystem::path& path, std::string_view text) {
  AtomicFile file(path);
  file.Write(text);
  file.Commit();
}

namespace {

std::filesystem::path Canonical(const std::filesystem::path& path) {
  std::error_code ec;
  auto canonical = std::filesystem::weakly_canonical(std::filesystem::absolute(path, ec), ec);
  return ec ? std::filesystem::absolute(path).lexically_normal() : canonical;
}

bool SameFile(const std::filesystem::path& a, const std::filesystem::path& ca,
              const std::filesystem::path& b, const std::filesystem::path& cb) {
  if (ca == cb) return true;
  std::error_code ec;
  return std::filesystem::equivalent(a, b, ec) && !ec;
}

}  // namespace

void CheckOutputs(const std::vector<PathArg>& outputs, const std::vector<PathArg>& inputs) {
  namespace fs = std::filesystem;
  // Every input file: a folder input stands for itself and its entries
  // (a model folder's config.json, tokenizer.json, safetensors, index).
  struct Input {
    const PathArg* arg;
    fs::path path, canonical;
  };
  std::vector<Input> files;
  for (const PathArg& in : inputs) {
    if (in.path.empty()) continue;
    files.push_back({&in, in.path, Canonical(in.path)});
    std::error_code ec;
    if (!fs::is_directory(in.path, ec)) continue;
    size_t entries = 0;
    for (fs::directory_iterator it(in.path, ec), end; !ec && it != end; it.increment(ec)) {
      if (++entries > 100000) break;  // bounded: a folder of junk is not a model
      files.push_back({&in, it->path(), Canonical(it->path())});
    }
  }
  std::vector<std::pair<const PathArg*, fs::path>> seen;
  for (const PathArg& out : outputs) {
    if (out.path.empty()) continue;
    CheckOutputTarget(out.path, out.flag);
    const fs::path canonical = Canonical(out.path);
    for (const auto& [other, other_canonical] : seen) {
      if (SameFile(out.path, canonical, other->path, other_canonical)) {
        ThrowInput("{} and {} name the same file {}; give each output its own path", other->flag,
                   out.flag, out.path.string());
      }
    }
    for (const Input& in : files) {
      if (SameFile(out.path, canonical, in.path, in.canonical)) {
        const std::string what =
            in.path == in.arg->path
                ? fmt::format("the input {}", in.arg->flag)
                : fmt::format("a file of the input {} {}", in.arg->flag, in.arg->path.string());
        ThrowInput("{} {}: is {}; kvq never writes over its input", out.flag, out.path.string(),
                   what);
      }
    }
    seen.emplace_back(&out, canonical);
  }
}

namespace {

char g_folder[4096];
std::atomic<bool> g_folder_set{false};

// Removes `name` under `parent` and everything in it, with system calls
// only (no allocation): usable in a signal handler. Entries are removed
// in passes until one finds nothing, since removing while reading a
// directory may skip entries; depth is bounded.
void RemoveTree(int parent, const char* name, int depth) noexcept {
  if (::unlinkat(parent, name, 0) == 0 || depth > 32) return;
  const int fd = ::openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  for (int pass = 0; pass < 64; ++pass) {
    alignas(8) char buffer[4096];
    bool removed = false;
    ::lseek(fd, 0, SEEK_SET);
    for (;;) {
      const long n = ::syscall(SYS_getdents64, fd, buffer, sizeof buffer);
      if (n <= 0) break;
      for (long offset = 0; offset < n;) {
        // linux_dirent64: ino (8), off (8), reclen (2), type (1), name.
        unsigned short length = 0;
        std::memcpy(&length, buffer + offset + 16, sizeof length);
        const char* entry = buffer + offset + 19;
        offset += length;
        if (std::strcmp(entry, ".") == 0 || std::strcmp(entry, "..") == 0) continue;
        RemoveTree(fd, entry, depth + 1);
        removed = true;
      }
    }
    if (!removed) break;
  }
  ::close(fd);
  ::unlinkat(parent, name, AT_REMOVEDIR);
}

void RemovePendingFolder() noexcept {
  if (g_folder_set.exchange(false)) RemoveTree(AT_FDCWD, g_folder, 0);
}

void OnTerminatingSignal(int signal) {
  RemovePendingTemporaries();
  RemovePendingFolder();
  struct sigaction action {};
  action.sa_handler = SIG_DFL;
  ::sigaction(signal, &action, nullptr);
  ::raise(signal);
}

void WriteAll(const char* text) {
  size_t n = std::strlen(text);
  while (n > 0) {
    const ssize_t w = ::write(STDERR_FILENO, text, n);
    if (w <= 0) return;
    text += w;
    n -= static_cast<size_t>(w);
  }
}

void OnBusError(int signal, siginfo_t* info, void*) {
  const auto* address = static_cast<const uint8_t*>(info->si_addr);
  for (auto& slot : g_mapped) {
    const MappedFile::Region* region = slot.load();
    if (region && address >= region->begin && address < region->begin + region->size) {
      RemovePendingTemporaries();
      RemovePendingFolder();
      WriteAll("kvq: error: ");
      WriteAll(region->path.c_str());
      WriteAll(": the file was truncated or became unreadable while kvq read it (SIGBUS)\n");
      ::_exit(1);
    }
  }
  OnTerminatingSignal(signal);
}

}  // namespace

void RegisterPendingFolder(const std::filesystem::path& folder) noexcept {
  const std::string& text = folder.native();
  if (text.empty() || text.size() >= sizeof g_folder) return;
  g_folder_set = false;
  std::memcpy(g_folder, text.c_str(), text.size() + 1);
  g_folder_set = true;
}

void UnregisterPendingFolder() noexcept { g_folder_set = false; }

void InstallSignalHandlers() {
  struct sigaction action {};
  sigemptyset(&action.sa_mask);
  action.sa_handler = OnTerminatingSignal;
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE})
    ::sigaction(signal, &action, nullptr);
  struct sigaction bus {};
  sigemptyset(&bus.sa_mask);
  bus.sa_sigaction = OnBusError;
  bus.sa_flags = SA_SIGINFO;
  ::sigaction(SIGBUS, &bus, nullptr);
}

}  // namespace kvq
