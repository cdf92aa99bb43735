#pragma once
// NFC for the tokenizer, done only where it can change something.
#include <string>
#include <string_view>

namespace kvq {

// Returns NFC(text) (Unicode canonical composition, utf8proc): a view of
// `text` itself when it is already NFC for certain, else a view of
// `storage`, which receives the normalized text. `text` must be valid UTF-8.
//
// Only stretches that hold a code point >= U+0300 (lead byte >= 0xCC) go
// through utf8proc. A stretch runs from the last "boundary" character
// before such a code point to the next boundary character after it, where
// a boundary character is one with combining class 0 that never composes
// with the character before it and is its own NFC (ASCII, CJK unified
// ideographs U+4E00-U+9FFF). NFC never looks across such a character, so
// NFC(a + b) = NFC(a) + NFC(b) when b starts with one (UAX #15,
// "stable code points").
std::string_view Nfc(std::string_view text, std::string& storage);

}  // namespace kvq
