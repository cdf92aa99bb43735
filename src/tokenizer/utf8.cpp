#include "tokenizer/utf8.h"

#include <cstring>

namespace kvq::utf8 {
namespace {

// The second byte's range depends on the lead byte (Unicode Table 3-7):
// E0 needs A0..BF (no overlongs), ED needs 80..9F (no surrogates), F0 needs
// 90..BF, F4 needs 80..8F (nothing above U+10FFFF).
bool SecondByteOk(uint8_t lead, uint8_t b) {
  switch (lead) {
    case 0xE0:
      return b >= 0xA0 && b <= 0xBF;
    case 0xED:
      return b >= 0x80 && b <= 0x9F;
    case 0xF0:
      return b >= 0x90 && b <= 0xBF;
    case 0xF4:
      return b >= 0x80 && b <= 0x8F;
    default:
      return b >= 0x80 && b <= 0xBF;
  }
}

bool IsContinuation(uint8_t b) { return (b & 0xC0) == 0x80; }

// Expected length from the lead byte; 0 for bytes that never lead.
size_t LeadLength(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// How many bytes from s[i] form the longest prefix of a valid sequence
// (at least 1): the span one U+FFFD replaces.
size_t MaximalSubpart(std::string_view s, size_t i) {
  const auto lead = static_cast<uint8_t>(s[i]);
  const size_t want = LeadLength(lead);
  if (want <= 1) return 1;
  size_t n = 1;
  if (i + 1 < s.size() && SecondByteOk(lead, static_cast<uint8_t>(s[i + 1]))) {
    n = 2;
    while (n < want && i + n < s.size() && IsContinuation(static_cast<uint8_t>(s[i + n]))) ++n;
  }
  return n;
}

}  // namespace

size_t SequenceLength(std::string_view s, size_t i) {
  const auto lead = static_cast<uint8_t>(s[i]);
  const size_t want = LeadLength(lead);
  if (want <= 1) return want;
  if (i + want > s.size()) return 0;
  if (!SecondByteOk(lead, static_cast<uint8_t>(s[i + 1]))) return 0;
  for (size_t k = 2; k < want; ++k) {
    if (!IsContinuation(static_cast<uint8_t>(s[i + k]))) return 0;
  }
  return want;
}

size_t FindInvalid(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    // ASCII runs dominate real text: test eight bytes at a time.
    if (i + 8 <= n) {
      uint64_t word;
      std::memcpy(&word, s.data() + i, 8);
      if ((word & 0x8080808080808080ULL) == 0) {
        i += 8;
        continue;
      }
    }
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t length = SequenceLength(s, i);
    if (length == 0) return i;
    i += length;
  }
  return kValid;
}

uint32_t DecodeAt(std::string_view s, size_t i, size_t length) {
  const auto b = [&](size_t k) { return static_cast<uint32_t>(static_cast<uint8_t>(s[i + k])); };
  switch (length) {
    case 1:
      return b(0);
    case 2:
      return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3:
      return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default:
      return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

void Append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

void AppendLossy(std::string& out, std::string_view bytes) {
  size_t i = 0;
  while (i < bytes.size()) {
    const size_t length = SequenceLength(bytes, i);
    if (length > 0) {
      out.append(bytes.data() + i, length);
      i += length;
    } else {
      out.append("\xEF\xBF\xBD");
      i += MaximalSubpart(bytes, i);
    }
  }
}

}  // namespace kvq::utf8
