#pragma once
// The tables of a Tokenizer, shared by the tokenizer.json loader
// (tokenizer_json.cpp), which fills them, and the encoder and decoder
// (tokenizer.cpp), which read them.
#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kvq/tokenizer/tokenizer.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/regex.h"

namespace kvq {

struct Tokenizer::Impl {
  std::filesystem::path source;
  bool nfc = false;
  bool ignore_merges = false;
  std::vector<PieceRegex> regexes;  // applied in order, each splitting the pieces of the last

  // Token table indexed by id: the bytes each id decodes to.
  std::vector<std::string> token_bytes;
  std::vector<uint8_t> token_present;
  std::array<int32_t, 256> byte_ids{};
  bpe::MergeTable merges;
  std::unordered_map<std::string, int32_t> bytes_to_id;  // byte-level vocabulary entries

  std::vector<AddedToken> added;
  AddedTokenMatcher added_matcher;
};

// A hash of bytes (FNV-1a, 8 bytes at a time), for the encoder's piece cache
// and the loader's vocabulary index.
inline uint64_t HashBytes(std::string_view piece) {
  uint64_t h = 0xCBF29CE484222325ULL ^ piece.size();  // FNV-1a, 8 bytes at a time
  size_t i = 0;
  for (; i + 8 <= piece.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, piece.data() + i, 8);
    h = (h ^ word) * 0x100000001B3ULL;
    h ^= h >> 29;
  }
  for (; i < piece.size(); ++i) h = (h ^ static_cast<uint8_t>(piece[i])) * 0x100000001B3ULL;
  h ^= h >> 32;
  return h * 0x9E3779B97F4A7C15ULL;
}

}  // namespace kvq
