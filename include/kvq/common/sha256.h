#pragma once
// SHA-256 (FIPS 180-4), used to verify downloaded files against the
// checksums the Hugging Face Hub publishes for its large (LFS) files.
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace kvq {

// Streaming hasher: Update() any number of times, then Finish() once.
class Sha256 {
 public:
  using Digest = std::array<uint8_t, 32>;

  Sha256();
  void Update(const void* data, size_t size);
  void Update(std::string_view text) { Update(text.data(), text.size()); }
  Digest Finish();

  // Lower-case hexadecimal, the form the Hub uses in its ETags.
  static std::string Hex(const Digest& digest);

 private:
  void Compress(const uint8_t* block);  // one 64-byte block

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

std::string Sha256Hex(std::string_view data);
// Hashes a whole file; throws InputError naming the path if it cannot be read.
std::string Sha256FileHex(const std::filesystem::path& path);

}  // namespace kvq
