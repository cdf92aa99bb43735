#include "kvq/common/error.h"

#include <cstdio>
#include <cstdlib>

namespace kvq {

namespace {

// Length of the valid UTF-8 sequence at text[i], or 0 when it is not one
// (overlong forms, surrogates and code points past U+10FFFF included).
size_t Utf8Length(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char b = byte(i);
  size_t n = 0;
  unsigned min = 0;
  unsigned cp = 0;
  if (b < 0x80) return 1;
  if ((b & 0xE0) == 0xC0) {
    n = 2, min = 0x80, cp = b & 0x1Fu;
  } else if ((b & 0xF0) == 0xE0) {
    n = 3, min = 0x800, cp = b & 0x0Fu;
  } else if ((b & 0xF8) == 0xF0) {
    n = 4, min = 0x10000, cp = b & 0x07u;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

}  // namespace

std::string Printable(std::string_view text, size_t max_chars) {
  std::string out;
  out.reserve(text.size());
  size_t chars = 0;
  for (size_t i = 0; i < text.size();) {
    if (max_chars > 0 && chars == max_chars) {
      out += "...";
      break;
    }
    const auto b = static_cast<unsigned char>(text[i]);
    const size_t n = Utf8Length(text, i);
    // C1 controls (U+0080..U+009F) are escaped too: some terminals act on them.
    const bool c1 = n == 2 && b == 0xC2 && static_cast<unsigned char>(text[i + 1]) < 0xA0;
    if (n == 0 || (n == 1 && (b < 0x20 || b == 0x7F)) || c1) {
      const size_t len = c1 ? 2 : 1;
      for (size_t k = 0; k < len; ++k)
        out += fmt::format("\\x{:02X}", static_cast<unsigned char>(text[i + k]));
      i += len;
    } else {
      out.append(text, i, n);
      i += n;
    }
    ++chars;
  }
  return out;
}

void CheckFailed(const char* condition, const char* file, int line) {
  std::fprintf(stderr, "kvq: internal error: check failed: %s at %s:%d\n", condition, file, line);
  std::abort();
}

}  // namespace kvq
