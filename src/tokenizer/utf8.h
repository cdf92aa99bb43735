#pragma once
// UTF-8 helpers for the tokenizer: strict validation (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF), decoding one code point, and
// the lossy conversion Rust's String::from_utf8_lossy performs.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvq::utf8 {

inline constexpr size_t kValid = static_cast<size_t>(-1);

// Length of the valid sequence starting at s[i] (1-4), or 0 when the bytes
// there do not start a valid sequence. Requires i < s.size().
size_t SequenceLength(std::string_view s, size_t i);

// Byte offset of the first byte that does not start a valid sequence, or
// kValid when the whole of `s` is valid UTF-8.
size_t FindInvalid(std::string_view s);

// Decodes the valid sequence of `length` bytes at s[i].
uint32_t DecodeAt(std::string_view s, size_t i, size_t length);

// Appends the UTF-8 encoding of `cp` (a Unicode scalar value).
void Append(std::string& out, uint32_t cp);

// Appends `bytes` to `out`, each maximal invalid subpart replaced by U+FFFD
// (the W3C/Unicode "substitution of maximal subparts" practice).
void AppendLossy(std::string& out, std::string_view bytes);

}  // namespace kvq::utf8
