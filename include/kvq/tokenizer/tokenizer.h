#pragma once
// A Hugging Face tokenizer.json reader and encoder for byte-level BPE (the
// GPT-2 family: Qwen2, Qwen2.5, Qwen3, Llama 3). Encode gives the same ids as
// `tokenizers` (Rust) with add_special_tokens=false:
//
//   1. added tokens are found in the raw text (leftmost match, then longest);
//   2. each stretch between them is normalized (NFC or none);
//   3. split by the pre-tokenizer regexes (Split, behaviour Isolated);
//   4. each piece's UTF-8 bytes are merged by BPE in merge-rank order.
//
// What is implemented and what is refused: docs/tokenizer.md.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvq {

// A token matched in the raw text before anything else (tokenizer.json's
// added_tokens): <|endoftext|>, <|im_start|>, ...
struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;
};

class Tokenizer {
 public:
  // Reads `file_or_model_dir` (a tokenizer.json, or a folder that holds one).
  // Throws InputError naming the file and the field for a malformed file or a
  // configuration kvq does not implement.
  static Tokenizer Load(const std::filesystem::path& file_or_model_dir);
  // Same from the JSON text; `origin` names it in error messages.
  static Tokenizer FromJson(std::string_view json, const std::string& origin);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Text -> ids. Thread-safe (const, no shared mutable state). Throws
  // InputError naming the byte offset when `text` is not valid UTF-8.
  std::vector<int32_t> Encode(std::string_view text) const;
  // Appends the ids of `text` to `ids`; same rules as Encode.
  void EncodeAppend(std::string_view text, std::vector<int32_t>& ids) const;

  // Ids -> text: byte-level tokens give back their bytes, added tokens their
  // content. Byte sequences that are not valid UTF-8 become U+FFFD, one per
  // maximal invalid subpart (Rust's String::from_utf8_lossy, as Hugging Face
  // does). Throws InputError for an id with no token.
  std::string Decode(std::span<const int32_t> ids) const;

  // One more than the largest token id, added tokens included (151,665 for
  // Qwen2.5; the model's embedding table may be larger).
  int32_t vocab_size() const;
  // The id of an added token or a vocabulary entry given as text (added
  // tokens by content; vocabulary entries by the bytes they stand for).
  std::optional<int32_t> TokenId(std::string_view text) const;
  // The added tokens, in file order.
  std::span<const AddedToken> added_tokens() const;
  // Where the tokenizer was read from ("" for FromJson).
  const std::filesystem::path& path() const;

  struct Impl;  // opaque: defined in src/tokenizer/tokenizer_impl.h

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvq
