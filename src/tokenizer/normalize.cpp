#include "tokenizer/normalize.h"

#include <utf8proc.h>

#include <cstdint>
#include <cstdlib>

#include "kvq/common/error.h"

namespace kvq {
namespace {

// True when a boundary character (see the header) starts at text[i].
bool IsBoundaryAt(std::string_view text, size_t i) {
  const auto b0 = static_cast<uint8_t>(text[i]);
  if (b0 < 0x80) return true;
  // U+4E00..U+9FFF is E4 B8 80 .. E9 BF BF: lead byte E4 needs a second
  // byte >= B8, leads E5..E9 cover the rest.
  if (b0 >= 0xE5 && b0 <= 0xE9) return true;
  return b0 == 0xE4 && i + 1 < text.size() && static_cast<uint8_t>(text[i + 1]) >= 0xB8;
}

bool IsLeadByte(uint8_t b) { return (b & 0xC0) != 0x80; }

// Index of the next code point at or after `i` that NFC may change: one at
// U+0300 or above that is not a boundary character (continuation bytes are
// below 0xCC, so only lead bytes can match).
size_t NextCandidate(std::string_view text, size_t i) {
  while (i < text.size() && (static_cast<uint8_t>(text[i]) < 0xCC || IsBoundaryAt(text, i))) {
    ++i;
  }
  return i;
}

void AppendNfc(std::string_view stretch, std::string& out) {
  utf8proc_uint8_t* normalized = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(stretch.data()),
                   static_cast<utf8proc_ssize_t>(stretch.size()), &normalized,
                   static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) {
    std::free(normalized);
    ThrowRuntime("NFC normalization failed: {}", utf8proc_errmsg(n));
  }
  out.append(reinterpret_cast<const char*>(normalized), static_cast<size_t>(n));
  std::free(normalized);
}

}  // namespace

std::string_view Nfc(std::string_view text, std::string& storage) {
  size_t i = NextCandidate(text, 0);
  if (i == text.size()) return text;

  storage.clear();
  storage.reserve(text.size() + 16);
  size_t copied = 0;  // text[0, copied) is already in storage
  while (i < text.size()) {
    // text[i] starts a code point NFC may change. The stretch
    // starts at the last boundary character at or before it ...
    size_t begin = i;
    while (begin > copied &&
           !(IsLeadByte(static_cast<uint8_t>(text[begin])) && IsBoundaryAt(text, begin))) {
      --begin;
    }
    // ... and ends before the first boundary character after it.
    size_t end = i + 1;
    while (end < text.size() &&
           !(IsLeadByte(static_cast<uint8_t>(text[end])) && IsBoundaryAt(text, end))) {
      ++end;
    }
    storage.append(text.substr(copied, begin - copied));
    AppendNfc(text.substr(begin, end - begin), storage);
    copied = end;
    i = NextCandidate(text, end);
  }
  storage.append(text.substr(copied));
  return storage;
}

}  // namespace kvq
