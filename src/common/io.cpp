#include "kvq/common/io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

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

}  // namespace

void RemovePendingTemporaries() noexcept {
  for (auto& slot : g_pending) {
    if (const char* path = slot.load()) ::unlink(path);
  }
}

MappedFile MappedFile::Open(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) ThrowInput("{}: cannot open: {}", path.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    ThrowInput("{}: not a regular file", path.string());
  }
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
  }
  ::close(fd);
  return file;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(other.data_), size_(other.size_), path_(std::move(other.path_)) {
  other.data_ = nullptr;
  other.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    data_ = other.data_;
    size_ = other.size_;
    path_ = std::move(other.path_);
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

AtomicFile::AtomicFile(std::filesystem::path target) : target_(std::move(target)) {
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

std::string ReadTextFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) ThrowInput("{}: cannot open: {}", path.string(), std::strerror(errno));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) ThrowInput("{}: read failed", path.string());
  return std::move(buffer).str();
}

void WriteTextFileAtomic(const std::filesystem::path& path, std::string_view text) {
  AtomicFile file(path);
  file.Write(text);
  file.Commit();
}

}  // namespace kvq
